"""TensorBoard: event files read back and checked against fit, Keras's options,
profiling with JAX's profiler."""

import glob
import os
import pathlib
import sys

import jax
import keras
import nengo
import numpy as np
import pytest

import nengo_jax
from nengo_jax.callbacks import TensorBoard
from nengo_jax.callbacks.tensorboard import INVALID_TAG_CHARACTERS
from tests.callbacks.events import (
    buckets,
    event_files,
    f32,
    histograms,
    read_events,
    scalars,
)

N_SAMPLES, BATCH_SIZE = 20, 8  # 3 batches per epoch (8, 8, 4)
BATCHES_PER_EPOCH = 3


class RecordBatches(keras.callbacks.Callback):
    """Keep each training batch's logs and the kernel at each epoch end."""

    def __init__(self):
        super().__init__()
        self.batch_logs = []
        self.kernels = []

    def on_train_batch_end(self, batch, logs=None):
        self.batch_logs.append(dict(logs))

    def on_epoch_end(self, epoch, logs=None):
        # np.array(Variable) warns under NumPy 2; asarray does not.
        self.kernels.append(np.asarray(self.model.layers[0].kernel).copy())


def make_model(seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse", metrics=["mae"])
    return model


def make_data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N_SAMPLES, 3)).astype(np.float32)
    y = rng.standard_normal((N_SAMPLES, 2)).astype(np.float32)
    return x, y


def fit(model, callbacks, epochs=3, validation=True):
    x, y = make_data()
    return model.fit(
        x,
        y,
        batch_size=BATCH_SIZE,
        epochs=epochs,
        validation_data=(x[:10], y[:10]) if validation else None,
        shuffle=False,
        verbose=0,
        callbacks=callbacks,
    )


def test_epoch_scalars(tmp_path):
    history = fit(make_model(), [TensorBoard(tmp_path)]).history
    assert set(history) == {"loss", "mae", "val_loss", "val_mae"}

    (train_file,) = event_files(tmp_path / "train")
    train = scalars(read_events(train_file))
    assert set(train) == {"epoch_loss", "epoch_mae"}
    for name in ("loss", "mae"):
        steps, values = zip(*train[f"epoch_{name}"], strict=True)
        assert steps == (0, 1, 2)
        assert list(values) == f32(history[name])

    (val_file,) = event_files(tmp_path / "validation")
    val = scalars(read_events(val_file))
    assert set(val) == {
        "epoch_loss",
        "epoch_mae",
        "evaluation_loss_vs_iterations",
        "evaluation_mae_vs_iterations",
    }
    for name in ("loss", "mae"):
        steps, values = zip(*val[f"epoch_{name}"], strict=True)
        assert steps == (0, 1, 2)
        assert list(values) == f32(history[f"val_{name}"])
    # The validation losses differ from the training ones, so nothing was mixed up.
    assert val["epoch_loss"] != train["epoch_loss"]


def test_no_validation_dir_without_validation_data(tmp_path):
    history = fit(make_model(), [TensorBoard(tmp_path)], validation=False).history
    assert not (tmp_path / "validation").exists()
    (train_file,) = event_files(tmp_path / "train")
    _, values = zip(*scalars(read_events(train_file))["epoch_loss"], strict=True)
    assert list(values) == f32(history["loss"])


@pytest.mark.parametrize("update_freq", ["batch", 2])
def test_batch_scalars(tmp_path, update_freq):
    recorder = RecordBatches()
    epochs = 3
    history = fit(
        make_model(), [recorder, TensorBoard(tmp_path, update_freq=update_freq)]
    ).history
    total = epochs * BATCHES_PER_EPOCH
    assert len(recorder.batch_logs) == total

    every = 1 if update_freq == "batch" else update_freq
    expected_steps = list(range(every, total + 1, every))
    (train_file,) = event_files(tmp_path / "train")
    train = scalars(read_events(train_file))
    assert set(train) == {"epoch_loss", "epoch_mae", "batch_loss", "batch_mae"}
    for name in ("loss", "mae"):
        steps, values = zip(*train[f"batch_{name}"], strict=True)
        assert list(steps) == expected_steps
        assert list(values) == f32(
            recorder.batch_logs[step - 1][name] for step in expected_steps
        )
        _, values = zip(*train[f"epoch_{name}"], strict=True)
        assert list(values) == f32(history[name])

    (val_file,) = event_files(tmp_path / "validation")
    val = scalars(read_events(val_file))
    assert {tag for tag in val if not tag.startswith("evaluation_")} == {
        "epoch_loss",
        "epoch_mae",
    }


def test_epoch_update_freq_writes_no_batch_scalars(tmp_path):
    fit(make_model(), [TensorBoard(tmp_path, update_freq="epoch")])
    (train_file,) = event_files(tmp_path / "train")
    assert not any(tag.startswith("batch_") for tag in scalars(read_events(train_file)))


def test_histograms(tmp_path):
    model = make_model()
    recorder = RecordBatches()
    calls = []

    def kernel():
        calls.append(None)
        return model.layers[0].kernel

    tb = TensorBoard(
        tmp_path,
        histograms={"Dense.kernel": kernel, "const": lambda: np.arange(6.0)},
        histogram_freq=2,
    )
    fit(model, [recorder, tb], epochs=5)

    (train_file,) = event_files(tmp_path / "train")
    hists = histograms(read_events(train_file))
    assert set(hists) == {"Dense.kernel", "const"}
    assert len(calls) == 3
    steps, protos = zip(*hists["Dense.kernel"], strict=True)
    assert steps == (0, 2, 4)
    for epoch, proto in zip(steps, protos, strict=True):
        expected = recorder.kernels[epoch]
        assert proto.num == expected.size == 6
        assert proto.min == expected.min()
        assert proto.max == expected.max()
        assert np.isclose(proto.sum, expected.astype(float).sum(), rtol=1e-12)
        assert sum(proto.bucket) == expected.size
    # Training changed the kernel, so each epoch's histogram is its own.
    assert protos[0].sum != protos[2].sum

    steps, protos = zip(*hists["const"], strict=True)
    assert steps == (0, 2, 4)
    assert all((p.num, p.min, p.max, p.sum) == (6, 0, 5, 15) for p in protos)

    assert not histograms(read_events(event_files(tmp_path / "validation")[0]))


def test_reuse_in_second_fit(tmp_path):
    model = make_model()
    tb = TensorBoard(tmp_path, update_freq="batch", histograms={"b": lambda: [1.0]})
    first = fit(model, [tb], epochs=2).history
    second = fit(model, [tb], epochs=3).history
    assert first["loss"] != second["loss"][:2]

    for subdir, prefix in (("train", ""), ("validation", "val_")):
        files = event_files(tmp_path / subdir)
        assert len(files) == 2
        for file, history in zip(files, (first, second), strict=True):
            events = read_events(file)
            found = scalars(events)
            steps, values = zip(*found["epoch_loss"], strict=True)
            assert list(steps) == list(range(len(history["loss"])))
            assert list(values) == f32(history[f"{prefix}loss"])
            if subdir == "train":
                # The batch count starts again at each fit.
                steps, _ = zip(*found["batch_loss"], strict=True)
                n_batches = len(history["loss"]) * BATCHES_PER_EPOCH
                assert list(steps) == list(range(1, n_batches + 1))
                assert len(histograms(events)["b"]) == len(history["loss"])


def test_histogram_error_propagates_and_callback_recovers(tmp_path):
    model = make_model()
    fail = [True]

    def flaky():
        if fail[0]:
            raise RuntimeError("cannot read encoders")
        return np.ones(4)

    tb = TensorBoard(tmp_path, histograms={"flaky": flaky})
    with pytest.raises(RuntimeError, match="cannot read encoders"):
        fit(model, [tb], epochs=2)

    # fit raised before on_train_end; a second fit still writes a complete run.
    fail[0] = False
    history = fit(model, [tb], epochs=2).history
    files = event_files(tmp_path / "train")
    assert len(files) == 2
    events = read_events(files[1])
    _, values = zip(*scalars(events)["epoch_loss"], strict=True)
    assert list(values) == f32(history["loss"])
    assert [step for step, _ in histograms(events)["flaky"]] == [0, 1]


@pytest.mark.parametrize("histogram_freq", [-1, 1.5, True, "1"])
def test_bad_histogram_freq(tmp_path, histogram_freq):
    with pytest.raises(
        ValueError, match=r"histogram_freq: must be a non-negative int"
    ) as e:
        TensorBoard(tmp_path, histogram_freq=histogram_freq)
    assert f"got {histogram_freq!r}" in str(e.value)


@pytest.mark.parametrize("update_freq", ["epochs", 0, -2, 1.0, True, None])
def test_bad_update_freq(tmp_path, update_freq):
    with pytest.raises(ValueError, match=r"update_freq: must be 'epoch', 'batch'") as e:
        TensorBoard(tmp_path, update_freq=update_freq)
    assert f"got {update_freq!r}" in str(e.value)


def test_bad_histograms(tmp_path):
    with pytest.raises(
        ValueError, match=r"histograms: value for tag 'w' must be a call"
    ):
        TensorBoard(tmp_path, histograms={"w": np.zeros(3)})
    with pytest.raises(ValueError, match=r"histograms: must be a dict.*got list"):
        TensorBoard(tmp_path, histograms=[lambda: 1.0])


def test_valid_arguments(tmp_path):
    tb = TensorBoard(tmp_path, update_freq=np.int64(3), histogram_freq=np.int32(2))
    assert (tb.update_freq, tb.histogram_freq) == (3, 2)
    assert TensorBoard(tmp_path, update_freq="batch").update_freq == 1
    # Keras's order of arguments: log_dir, histogram_freq, ...
    assert TensorBoard(tmp_path, 4).histogram_freq == 4
    # histogram_freq defaults to Keras's 0, or to 1 given histograms to write.
    assert TensorBoard(tmp_path).histogram_freq == 0
    assert TensorBoard(tmp_path, histograms={"a": lambda: 1}).histogram_freq == 1
    assert TensorBoard(tmp_path, histogram_freq=0, histograms={}).histogram_freq == 0
    # Keras 2's arguments that it ignored are accepted when not set.
    TensorBoard(tmp_path, write_grads=False, batch_size=None, embeddings_data=None)
    # Nothing is written before training begins.
    assert not any(tmp_path.iterdir())


def test_missing_tensorboardx(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    with pytest.raises(ImportError, match=r"pip install tensorboardX"):
        TensorBoard(tmp_path)


# -- Keras's options ------------------------------------------------------------------


def expected_buckets(values):
    """30 buckets of equal width from the smallest value to the largest."""
    counts, edges = np.histogram(np.asarray(values, dtype=np.float64), bins=30)
    return edges[0], edges[-1], counts.tolist()


def test_weight_histograms(tmp_path):
    """Without `histograms`, histogram_freq writes the model's weights, as Keras."""
    model = make_model()
    recorder = RecordBatches()
    fit(model, [recorder, TensorBoard(tmp_path, histogram_freq=2)], epochs=3)

    (train_file,) = event_files(tmp_path / "train")
    hists = histograms(read_events(train_file))
    dense = model.layers[0]
    assert set(hists) == {f"{w.path}/histogram" for w in (dense.kernel, dense.bias)}
    steps, protos = zip(*hists[f"{dense.kernel.path}/histogram"], strict=True)
    assert steps == (0, 2)
    for epoch, proto in zip(steps, protos, strict=True):
        assert buckets(proto) == pytest.approx(
            expected_buckets(recorder.kernels[epoch])
        )
    assert protos[0].sum != protos[1].sum


def test_no_histograms_by_default(tmp_path):
    fit(make_model(), [TensorBoard(tmp_path)], epochs=2)
    (train_file,) = event_files(tmp_path / "train")
    assert not histograms(read_events(train_file))


def test_evaluation_scalars(tmp_path):
    """After each evaluation, its results at the optimizer's iteration count."""
    model = make_model()
    history = fit(model, [TensorBoard(tmp_path)], epochs=3).history
    (val_file,) = event_files(tmp_path / "validation")
    found = scalars(read_events(val_file))
    for name in ("loss", "mae"):
        steps, values = zip(*found[f"evaluation_{name}_vs_iterations"], strict=True)
        assert list(steps) == [3, 6, 9]  # (3 batches per epoch)
        assert list(values) == f32(history[f"val_{name}"])

    # evaluate alone writes (and closes) a validation file of its own
    x, y = make_data()
    result = model.evaluate(
        x, y, batch_size=BATCH_SIZE, verbose=0, return_dict=True,
        callbacks=[TensorBoard(tmp_path / "eval")],
    )  # fmt: skip
    assert not (tmp_path / "eval" / "train").exists()
    (val_file,) = event_files(tmp_path / "eval" / "validation")
    found = scalars(read_events(val_file))
    assert found["evaluation_loss_vs_iterations"] == [(9, f32([result["loss"]])[0])]
    assert found["evaluation_mae_vs_iterations"] == [(9, f32([result["mae"]])[0])]


def test_steps_per_second(tmp_path):
    tb = TensorBoard(tmp_path, write_steps_per_second=True, update_freq=2)
    fit(make_model(), [tb], epochs=3, validation=False)
    (train_file,) = event_files(tmp_path / "train")
    found = scalars(read_events(train_file))
    steps, values = zip(*found["epoch_steps_per_second"], strict=True)
    assert steps == (0, 1, 2)
    assert all(v > 0 for v in values)
    steps, values = zip(*found["batch_steps_per_second"], strict=True)
    assert steps == (2, 4, 6, 8)
    assert all(v > 0 for v in values)


def test_simulator(tmp_path):
    """A NengoDL user's TensorBoard on a Simulator: NengoDL's tags."""
    with nengo.Network(seed=0) as net:
        a = nengo.Node([0.0], label="a")
        e = nengo.Ensemble(4, 1, label="e")
        nengo.Connection(a, e)
        nengo.Probe(e, label="p")
    x, y = np.zeros((4, 5, 1)), np.ones((4, 5, 1))
    with nengo_jax.Simulator(net, minibatch_size=2, progress_bar=False) as sim:
        sim.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        tb = nengo_jax.callbacks.TensorBoard(log_dir=tmp_path, histogram_freq=1)
        sim.fit(x, y, epochs=2, callbacks=[tb], validation_data=(x, y), verbose=0)
        weights = sim.keras_model.trainable_weights
        final = {
            INVALID_TAG_CHARACTERS.sub("_", w.path) + "/histogram": np.asarray(w.value)
            for w in weights
        }

    (train_file,) = event_files(tmp_path / "train")
    events = read_events(train_file)
    assert set(scalars(events)) == {"epoch_loss", "epoch_p_loss"}  # (as NengoDL)
    hists = histograms(events)
    assert set(hists) == set(final) and final
    assert not any("[" in tag for tag in hists)  # (weight paths have some)
    for tag, values in final.items():
        assert [step for step, _ in hists[tag]] == [0, 1]
        assert buckets(hists[tag][1][1]) == pytest.approx(expected_buckets(values))
    (val_file,) = event_files(tmp_path / "validation")
    assert set(scalars(read_events(val_file))) == {
        "epoch_loss",
        "epoch_p_loss",
        "evaluation_loss_vs_iterations",
        "evaluation_p_loss_vs_iterations",
    }


@pytest.mark.parametrize(
    "kwargs, what",
    [
        ({"write_graph": True}, "write_graph=True"),
        ({"write_images": True}, "write_images=True"),
        ({"embeddings_freq": 1}, "embeddings_freq/embeddings_metadata"),
        ({"embeddings_metadata": "meta.tsv"}, "embeddings_freq/embeddings_metadata"),
        ({"write_grads": True}, "write_grads: ignored, as Keras 2"),
        ({"batch_size": 32}, "batch_size: ignored, as Keras 2"),
    ],
)
def test_unsupported_options_warn(tmp_path, kwargs, what):
    with pytest.warns(UserWarning, match=f"TensorBoard ignores {what}") as record:
        TensorBoard(tmp_path, **kwargs)
    assert record[0].filename == __file__


def test_unknown_argument(tmp_path):
    with pytest.raises(TypeError, match=r"unexpected keyword arguments \['profile'\]"):
        TensorBoard(tmp_path, profile=2)


@pytest.mark.parametrize(
    "profile_batch, expected",
    [(0, None), ("0", None), (3, (3, 3)), (np.int64(2), (2, 2)), ((2, 5), (2, 5)),
     ([2, 5], (2, 5)), ("2,5", (2, 5)), ("3", (3, 3)), ((4, 4), (4, 4))],
)  # fmt: skip
def test_profile_batch_values(tmp_path, profile_batch, expected):
    assert TensorBoard(tmp_path, profile_batch=profile_batch).profile_batches == (
        expected
    )


@pytest.mark.parametrize(
    "profile_batch",
    [-1, (0, 2), (3, 2), (1, 2, 3), "a,b", "1,2,3", 1.5, True, (1.0, 2), None],
)
def test_bad_profile_batch(tmp_path, profile_batch):
    with pytest.raises(ValueError, match=r"profile_batch: must be a non-negative int"):
        TensorBoard(tmp_path, profile_batch=profile_batch)


# -- profiling ------------------------------------------------------------------------


class FakeProfiler:
    """Records jax.profiler's calls, between the batches of a Keras call."""

    def __init__(self, monkeypatch, fail=False):
        self.calls = []
        self.fail = fail
        monkeypatch.setattr(jax.profiler, "start_trace", self.start_trace)
        monkeypatch.setattr(jax.profiler, "stop_trace", self.stop_trace)
        monkeypatch.setattr(jax.profiler, "TraceAnnotation", self.annotation)

    def start_trace(self, log_dir):
        if self.fail:
            raise RuntimeError("Profile has already been started.")
        self.calls.append(("start", log_dir))

    def stop_trace(self):
        self.calls.append("stop")

    def annotation(self, name):
        calls = self.calls

        class Annotation:
            def __enter__(self):
                calls.append(("enter", name))

            def __exit__(self, *exc):
                calls.append(("exit", name))

        return Annotation()

    def batches(self):
        """A callback noting the start of each batch (before TensorBoard's)."""
        calls = self.calls

        class Batches(keras.callbacks.Callback):
            def on_train_batch_begin(self, batch, logs=None):
                calls.append(batch)

            on_predict_batch_begin = on_train_batch_begin

        return Batches()


def profiled(log_dir, first, last):
    """The calls of a trace of batches ``first`` to ``last``."""
    calls = [("start", str(log_dir))]
    for n in range(first, last + 1):
        calls += [("enter", f"Profiled batch {n}"), ("exit", f"Profiled batch {n}")]
    return calls + ["stop"]


@pytest.mark.parametrize(
    "profile_batch, first, last",
    [(2, 2, 2), ((2, 4), 2, 4), ("2,4", 2, 4), ((5, 6), 5, 6)],
)
def test_profile_batches(tmp_path, monkeypatch, profile_batch, first, last):
    """Batches counted from 1 across epochs (3 per epoch; 2 epochs)."""
    profiler = FakeProfiler(monkeypatch)
    tb = TensorBoard(tmp_path, profile_batch=profile_batch)
    fit(make_model(), [profiler.batches(), tb], epochs=2)
    expected = []
    for n in range(1, 7):
        expected.append((n - 1) % BATCHES_PER_EPOCH)  # (Keras's index in the epoch)
        if n == first:
            expected.append(("start", str(tmp_path)))
        if first <= n <= last:
            name = f"Profiled batch {n}"
            expected += [("enter", name), ("exit", name)]
        if n == last:
            expected.append("stop")
    assert profiler.calls == expected


def test_profile_stops_at_train_end(tmp_path, monkeypatch):
    profiler = FakeProfiler(monkeypatch)
    fit(make_model(), [TensorBoard(tmp_path, profile_batch=(5, 100))], epochs=2)
    assert profiler.calls == profiled(tmp_path, 5, 6)
    # a second fit counts its batches from 1 again
    profiler.calls.clear()
    fit(make_model(), [TensorBoard(tmp_path, profile_batch=1)], epochs=1)
    assert profiler.calls == profiled(tmp_path, 1, 1)


def test_profile_predict(tmp_path, monkeypatch):
    profiler = FakeProfiler(monkeypatch)
    tb = TensorBoard(tmp_path, profile_batch=(2, 3))
    x, _ = make_data()
    make_model().predict(x, batch_size=8, callbacks=[tb], verbose=0)
    assert profiler.calls == profiled(tmp_path, 2, 3)
    assert not (tmp_path / "train").exists()  # (predict writes no event files)


def test_profile_after_failed_fit(tmp_path, monkeypatch):
    profiler = FakeProfiler(monkeypatch)

    class Fail(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 1:
                raise RuntimeError("failed in batch 2")

    tb = TensorBoard(tmp_path, profile_batch=(2, 3))
    with pytest.raises(RuntimeError, match="failed in batch 2"):
        fit(make_model(), [tb, Fail()], epochs=1)
    assert profiler.calls == profiled(tmp_path, 2, 2)[:-1]  # (still tracing)
    profiler.calls.clear()
    fit(make_model(), [tb], epochs=1)
    # the stale trace is stopped before the new one starts
    assert profiler.calls == ["stop"] + profiled(tmp_path, 2, 3)


def test_profiler_error_warns(tmp_path, monkeypatch):
    profiler = FakeProfiler(monkeypatch, fail=True)
    tb = TensorBoard(tmp_path, profile_batch=2)
    with pytest.warns(UserWarning, match=r"could not profile batches 2-2: Profile"):
        history = fit(make_model(), [tb], epochs=2).history
    assert len(history["loss"]) == 2
    assert profiler.calls == []


def test_profile_written(tmp_path):
    """A real trace, where TensorBoard's profile plugin reads it (as NengoDL)."""
    fit(make_model(), [TensorBoard(tmp_path, profile_batch=2)], epochs=1)
    (trace,) = glob.glob(str(tmp_path / "plugins" / "profile" / "*" / "*.xplane.pb"))
    data = pathlib.Path(trace).read_bytes()
    assert b"Profiled batch 2" in data
    assert b"Profiled batch 1" not in data and b"Profiled batch 3" not in data
    assert os.path.getsize(trace) > 1000
