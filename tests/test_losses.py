"""nan_mse and Regularize: NengoDL 3.6's values (measured on it, as noted), their
gradients, and their use as Keras losses in the Simulator."""

import jax
import jax.numpy as jnp
import keras
import nengo
import numpy as np
import pytest
from nengo.exceptions import ValidationError

import nengo_jax
from nengo_jax.losses import Regularize, nan_mse
from tests.helpers import MB, ramp_net


def sparse_targets():
    """Predictions 0..9 with targets 0 at predictions 3 and 4, NaN elsewhere."""
    y_pred = np.arange(10, dtype=np.float32).reshape(1, 1, 10)
    y_true = np.full((1, 1, 10), np.nan, np.float32)
    y_true[..., 3:5] = 0
    return y_true, y_pred


def test_nan_mse_counts_nan_targets_as_zero_error():
    y_true, y_pred = sparse_targets()
    # Measured on NengoDL 3.6: 2.5, i.e. (3**2 + 4**2) / 10, not / 2.
    assert float(nan_mse(y_true, y_pred)) == pytest.approx(2.5)
    assert float(nan_mse(y_true[0], y_pred[0])) == pytest.approx(2.5)
    t = np.array([[1.0, np.nan], [3.0, 4.0]], np.float32)
    p = np.array([[2.0, 100.0], [3.0, 2.0]], np.float32)
    # Measured on NengoDL 3.6: 1.25, gradient [[0.5, 0], [0, -1]].
    value, grad = jax.value_and_grad(lambda p: nan_mse(t, p))(jnp.asarray(p))
    assert float(value) == pytest.approx(1.25)
    np.testing.assert_allclose(np.asarray(grad), [[0.5, 0.0], [0.0, -1.0]])
    # No NaN targets: the plain mean squared error.
    assert float(nan_mse(np.zeros(4), np.arange(4.0))) == pytest.approx(14 / 4)


def test_nan_mse_gradient_is_finite():
    y_true, y_pred = sparse_targets()
    grad = np.asarray(jax.grad(lambda p: nan_mse(y_true, p))(jnp.asarray(y_pred)))
    expected = np.zeros((1, 1, 10), np.float32)
    expected[..., 3:5] = 2 * np.array([3.0, 4.0]) / 10
    np.testing.assert_allclose(grad, expected, rtol=1e-6)
    # All targets NaN: no error, and a zero gradient.
    none = np.full_like(y_true, np.nan)
    value, grad = jax.value_and_grad(lambda p: nan_mse(none, p))(jnp.asarray(y_pred))
    assert float(value) == 0
    np.testing.assert_array_equal(np.asarray(grad), 0)


#: Regularize(**kwargs)(None, ones((2, 4, 3))), measured on NengoDL 3.6.
ONES_MEASURED = [
    ({}, 1.7320507764816284),
    ({"order": 1}, 3.0),
    ({"order": 2}, 1.7320507764816284),
    ({"order": "euclidean"}, 1.7320507764816284),
    ({"order": np.inf}, 1.0),
    ({"order": 3}, 1.4422495365142822),
    ({"order": 0.5}, 9.0),
    ({"axis": 0}, 1.7320507764816284),
    # axis + 2 is the axis of the norm: -1 is time, -2 batch, -3 features.
    ({"axis": -1}, 2.0),
    ({"axis": -2}, 1.4142135381698608),
    ({"axis": -3}, 1.7320507764816284),
    ({"axis": -4}, 2.0),
]


@pytest.mark.parametrize(("kwargs", "measured"), ONES_MEASURED)
def test_regularize_ones(kwargs, measured):
    x = np.ones((2, 4, 3), np.float32)
    assert float(Regularize(**kwargs)(None, x)) == pytest.approx(measured, rel=1e-6)


def random_data():
    return np.random.RandomState(0).randn(2, 3, 4, 5).astype(np.float32)


#: Regularize(**kwargs)(None, random_data()), measured on NengoDL 3.6 (the
#: "3d" cases on random_data()[..., 0]).
RANDOM_MEASURED = [
    ({}, 4.667795658111572),
    ({"order": 1}, 17.22942543029785),
    ({"order": np.inf}, 2.0517418384552),
    ({"order": 3}, 3.201488494873047),
    ({"order": 0.5}, 298.5965576171875),
    ({"axis": 0}, 2.009159564971924),
    ({"axis": 1}, 2.2410192489624023),
    ({"axis": 0, "order": 1}, 3.445885181427002),
    ({"axis": 1, "order": "euclidean"}, 2.2410192489624023),
    ({"axis": -1}, 1.682600975036621),
    ("3d", {}, 2.254817485809326),
    ("3d", {"order": 1}, 3.9173076152801514),
    ("3d", {"axis": 0}, 2.254817485809326),
    ("3d", {"axis": -1}, 1.8675651550292969),
]


@pytest.mark.parametrize("case", RANDOM_MEASURED)
def test_regularize_random(case):
    x = random_data()
    if case[0] == "3d":
        case, x = case[1:], x[..., 0]
    kwargs, measured = case
    assert float(Regularize(**kwargs)(None, x)) == pytest.approx(measured, rel=1e-5)


def test_regularize_is_the_mean_of_per_item_per_step_norms():
    x = random_data().astype(np.float64)
    norms = np.linalg.norm(x.reshape(2, 3, -1), axis=-1)
    assert float(Regularize()(None, x)) == pytest.approx(norms.mean(), rel=1e-5)
    norms = np.linalg.norm(x, ord=1, axis=3)
    got = float(Regularize(order=1, axis=1)(None, x))
    assert got == pytest.approx(norms.mean(), rel=1e-5)
    # The targets play no part.
    assert float(Regularize()(np.zeros_like(x), x)) == float(Regularize()(None, x))


def test_regularize_gradient():
    """As NengoDL's (measured on 3.6), but zero, not NaN, at an all-zero item."""
    z = jnp.array([[[0.0, 0.0, 0.0], [1.0, -2.0, 0.0]]])
    measured = {
        1: (1.5, [0, 0, 0, 0.5, -0.5, 0]),
        # NengoDL's gradient is NaN on the first (all-zero) step.
        2: (1.1180340051651, [0, 0, 0, 0.22360679507255554, -0.4472135901451111, 0]),
        np.inf: (1.0, [0, 0, 0, 0, -0.5, 0]),
    }
    for order, (value, grad) in measured.items():
        got, got_grad = jax.value_and_grad(lambda z, o=order: Regularize(o)(None, z))(z)
        assert float(got) == pytest.approx(value, rel=1e-6), order
        np.testing.assert_allclose(np.ravel(got_grad), grad, rtol=1e-6, err_msg=order)
    got_grad = jax.grad(lambda z: Regularize(0.5)(None, z))(z)
    assert np.all(np.isfinite(np.asarray(got_grad)))
    np.testing.assert_array_equal(np.asarray(got_grad)[0, 0], 0)


def test_regularize_invalid():
    for order in (0, -1, True, "nuc"):
        with pytest.raises(ValidationError, match="positive number"):
            Regularize(order=order)
    with pytest.raises(ValueError, match=r"\(batch, time, ...\)"):
        Regularize()(None, np.ones((2, 3)))


def test_regularize_config():
    config = Regularize(order="euclidean", axis=0).get_config()
    assert config["order"] == 2 and config["axis"] == 0
    again = Regularize.from_config(config)
    x = random_data()
    assert float(again(None, x)) == float(Regularize(axis=0)(None, x))


def test_losses_in_simulator():
    """evaluate's losses are nan_mse's and Regularize's of predict's outputs."""
    net = ramp_net(neuron_type=nengo.RectifiedLinear())
    rng = np.random.RandomState(0)
    x = rng.uniform(-1, 1, size=(MB, 5, 1))
    y = np.where(rng.uniform(size=(MB, 5, 1)) < 0.5, np.nan, x**2)
    zeros = np.zeros((MB, 5, 30))
    with nengo_jax.Simulator(net, minibatch_size=MB, progress_bar=False) as sim:
        sim.compile(
            keras.optimizers.SGD(1e-7),
            loss={net.p: nan_mse, net.p_neurons: Regularize(order=1)},
        )
        out = sim.predict({net.inp: x}, verbose=0)
        result = sim.evaluate({net.inp: x}, {net.p: y, net.p_neurons: zeros}, verbose=0)
        expected_mse = np.sum(np.where(np.isnan(y), 0, out[net.p] - y) ** 2) / y.size
        assert result["p_loss"] == pytest.approx(expected_mse, rel=1e-4)
        rates = np.abs(out[net.p_neurons]).sum(axis=-1).mean()
        assert result["p_neurons_loss"] == pytest.approx(rates, rel=1e-4)
        history = sim.fit(
            {net.inp: x}, {net.p: y, net.p_neurons: zeros}, epochs=3, verbose=0
        )
        # NaN targets reach nan_mse (they are no target, not bad data), and
        # both losses go down.
        for name in ("p_loss", "p_neurons_loss"):
            assert np.all(np.diff(history.history[name]) < 0), name
