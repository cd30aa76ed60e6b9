"""fit, evaluate and predict on streams of minibatches (generators, PyDataset)."""

import keras
import nengo
import numpy as np
import pytest
from nengo.exceptions import ValidationError

import nengo_jax
from nengo_jax.testing import assert_allclose

MB = 2


def relu_net():
    with nengo.Network(seed=0) as net:
        net.a = nengo.Node([0.0], label="a")
        ens = nengo.Ensemble(10, 1, neuron_type=nengo.RectifiedLinear())
        nengo.Connection(net.a, ens)
        net.p = nengo.Probe(ens, label="p")
    return net


X = np.linspace(0, 1, 4 * 5).reshape(4, 5, 1)
Y = 2 * X


def batches(with_steps=True, targets=True):
    for i in range(2):
        x = {"a": X[MB * i : MB * (i + 1)]}
        if with_steps:  # NengoDL's generators must give the number of steps
            x["n_steps"] = np.full((MB, 1), 5)
        yield (x, {"p": Y[MB * i : MB * (i + 1)]}) if targets else x


class Batches(keras.utils.PyDataset):
    def __len__(self):
        return 2

    def __getitem__(self, i):
        return {"a": X[MB * i : MB * (i + 1)]}, Y[MB * i : MB * (i + 1)]


# Keras warns when a finite generator of unknown length ends (as it does for any
# Keras model)
@pytest.mark.filterwarnings("ignore:Your input ran out of data")
def test_predict_and_evaluate_streams():
    net = relu_net()
    with nengo_jax.Simulator(net, minibatch_size=MB, progress_bar=False) as sim:
        expected = sim.predict(X)[net.p]
        for stream in (
            batches(targets=False),
            batches(with_steps=False, targets=False),
            (X[MB * i : MB * (i + 1)] for i in range(2)),  # one input: arrays
            batches(),  # (targets are not used)
            Batches(),
        ):
            assert_allclose(sim.predict(stream)[net.p], expected)
        sim.compile(loss="mse")
        expected = sim.evaluate(X, Y)
        assert sim.evaluate(batches()) == pytest.approx(expected)
        assert sim.evaluate(Batches()) == pytest.approx(expected)


def test_fit_streams():
    net = relu_net()
    histories, outputs = [], []
    for data in ("arrays", "generator", "pydataset"):
        with nengo_jax.Simulator(net, minibatch_size=MB, progress_bar=False) as sim:
            sim.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
            if data == "arrays":
                history = sim.fit(X, Y, epochs=2, shuffle=False)
            elif data == "generator":

                def forever():
                    while True:
                        yield from batches()

                history = sim.fit(forever(), steps_per_epoch=2, epochs=2)
            else:
                history = sim.fit(Batches(), epochs=2, shuffle=False)
            histories.append(history.history)
            outputs.append(sim.predict(X)[net.p])
    # NengoDL 3.6, the same generator and SGD(0.1): first epoch's loss 0.98029119
    assert histories[1]["loss"][0] == pytest.approx(0.98029119, rel=1e-5)
    for history, output in zip(histories[1:], outputs[1:], strict=True):
        assert history["loss"] == pytest.approx(histories[0]["loss"], rel=1e-6)
        assert_allclose(output, outputs[0])

    # validation data as a stream
    with nengo_jax.Simulator(net, minibatch_size=MB, progress_bar=False) as sim:
        sim.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        history = sim.fit(X, Y, epochs=1, validation_data=Batches())
        assert history.history["val_loss"][0] > 0


@pytest.mark.parametrize(
    "stream, y, match",
    [
        ((({"a": X[:3]}, Y[:3]) for _ in range(1)), None, "minibatch_size=2 items"),
        (
            (({"a": X[:2], "n_steps": np.full((2, 1), 4)}, Y[:2]) for _ in range(1)),
            None,
            "gives \\[4\\] steps; the inputs have 5",
        ),
        ((({"a": X[:2]},) for _ in range(1)), None, "needs targets y"),
        (((X[:2], Y[:2], None, 1) for _ in range(1)), None, "got a tuple of 4"),
        (Batches(), Y, "give y=None"),
    ],
)
def test_bad_streams(stream, y, match):
    net = relu_net()
    with nengo_jax.Simulator(net, minibatch_size=MB, progress_bar=False) as sim:
        sim.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        before = sim.predict(X)[net.p]
        with pytest.raises(ValidationError, match=match):
            sim.fit(stream, y, epochs=1)
        # nothing trained, and the simulator stays usable
        assert_allclose(sim.predict(X)[net.p], before)


def test_streams_only_where_keras_takes_them():
    net = relu_net()
    with nengo_jax.Simulator(net, minibatch_size=MB, progress_bar=False) as sim:
        with pytest.raises(ValidationError, match="takes x as arrays"):
            sim.predict_on_batch(batches(targets=False))
        with pytest.raises(ValidationError, match="takes x as arrays"):
            sim.check_gradients(batches(targets=False))
