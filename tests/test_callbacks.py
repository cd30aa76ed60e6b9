"""Tests for nengo_jax.callbacks: event files read back and checked against fit."""

import pathlib
import struct
import sys

import keras
import numpy as np
import pytest
from tensorboardX.proto.event_pb2 import Event  # noqa: E402
from tensorboardX.record_writer import masked_crc32c  # noqa: E402

from nengo_jax.callbacks import TensorBoard  # noqa: E402

N_SAMPLES, BATCH_SIZE = 20, 8  # 3 batches per epoch (8, 8, 4)
BATCHES_PER_EPOCH = 3


def read_events(path):
    """Read the ``Event`` records of one event file (TFRecord framing)."""
    data = pathlib.Path(path).read_bytes()
    events, pos = [], 0
    while pos < len(data):
        header = data[pos : pos + 8]
        (length,) = struct.unpack("<Q", header)
        (header_crc,) = struct.unpack("<I", data[pos + 8 : pos + 12])
        assert header_crc == masked_crc32c(header)
        body = data[pos + 12 : pos + 12 + length]
        (body_crc,) = struct.unpack("<I", data[pos + 12 + length : pos + 16 + length])
        assert body_crc == masked_crc32c(body)
        events.append(Event.FromString(body))
        pos += 16 + length
    return events


def event_files(directory):
    """Event files in ``directory``, oldest first."""
    files = [p for p in pathlib.Path(directory).iterdir() if "tfevents" in p.name]
    return sorted(files, key=lambda p: read_events(p)[0].wall_time)


def scalars(events):
    """``{tag: [(step, value), ...]}`` of the scalar summaries in ``events``."""
    out = {}
    for event in events:
        for value in event.summary.value:
            if value.HasField("simple_value"):
                out.setdefault(value.tag, []).append((event.step, value.simple_value))
    return out


def histograms(events):
    """``{tag: [(step, HistogramProto), ...]}`` of the histograms in ``events``."""
    out = {}
    for event in events:
        for value in event.summary.value:
            if value.HasField("histo"):
                out.setdefault(value.tag, []).append((event.step, value.histo))
    return out


def f32(values):
    """The values TensorBoard stores: ``simple_value`` is a float32."""
    return [float(np.float32(v)) for v in values]


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
    assert set(val) == {"epoch_loss", "epoch_mae"}
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
    assert set(scalars(read_events(val_file))) == {"epoch_loss", "epoch_mae"}


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


@pytest.mark.parametrize("histogram_freq", [0, -1, 1.5, True, None])
def test_bad_histogram_freq(tmp_path, histogram_freq):
    with pytest.raises(
        ValueError, match=r"histogram_freq: must be a positive int"
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
    # Nothing is written before training begins.
    assert not any(tmp_path.iterdir())


def test_missing_tensorboardx(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    with pytest.raises(ImportError, match=r"pip install tensorboardX"):
        TensorBoard(tmp_path)
