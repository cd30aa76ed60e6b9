"""configure_settings and the Settings the Simulator resolves from it."""

import nengo
import numpy as np
import pytest
from nengo.exceptions import ConfigError, NetworkContextError, ValidationError

import nengo_jax
from nengo_jax.config import Settings
from nengo_jax.testing import assert_allclose


def test_each_call_sets_only_its_options():
    with nengo.Network() as net:
        nengo_jax.configure_settings(stateful=False)
        nengo_jax.configure_settings(keep_history=False, dtype="float64")
    settings = Settings.from_network(net)
    assert settings.stateful is False and settings.keep_history is False
    assert settings.dtype == "float64"
    assert settings.use_loop is True  # untouched options keep their defaults
    assert Settings.from_network(nengo.Network()) == Settings()


def test_errors():
    with pytest.raises(NetworkContextError, match="within a Network context"):
        nengo_jax.configure_settings(stateful=False)
    with nengo.Network():
        with pytest.raises(ConfigError, match="'bogus'.*valid settings are: trainable"):
            nengo_jax.configure_settings(bogus=1)
    with nengo.Network() as net:
        nengo_jax.configure_settings(dtype="float16")
    with pytest.raises(ValidationError, match="dtype must be 'float32' or 'float64'"):
        nengo_jax.Simulator(net, progress_bar=False)


@pytest.mark.parametrize("dtype, atol", [("float32", 2e-3), ("float64", 1e-12)])
def test_dtype_matches_nengo(dtype, atol):
    with nengo.Network(seed=0) as net:
        nengo_jax.configure_settings(dtype=dtype)
        stim = nengo.Node(lambda t: np.sin(10 * t))
        ens = nengo.Ensemble(20, 1)
        nengo.Connection(stim, ens)
        probe = nengo.Probe(ens, synapse=0.01)
    with nengo.Simulator(net, progress_bar=False) as ref:
        ref.run(0.2)
    with nengo_jax.Simulator(net, progress_bar=False) as sim:
        sim.run(0.2)
        assert sim.data[probe].dtype == np.dtype(dtype)
        assert sim.signals[sim.model.step].dtype == (
            np.int64 if dtype == "float64" else np.int32
        )
    assert_allclose(sim.data[probe], ref.data[probe], dtype=dtype, atol=atol)


def test_matmul_precision_reaches_builders():
    with nengo.Network() as net:
        nengo_jax.configure_settings(matmul_precision="default")
        nengo.Node([1])
    with nengo_jax.Simulator(net, progress_bar=False) as sim:
        assert sim.settings.matmul_precision == "default"
        assert all(b.ctx.precision == "default" for b in sim._program.builders)
