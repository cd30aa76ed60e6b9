"""The XLA options of the simulation program."""

import jax
import nengo
import pytest

import nengo_jax
from nengo_jax.program import program


@pytest.mark.parametrize("options", [None, {}])
def test_cpu_options_are_used(monkeypatch, options):
    """The decoders of 128 ensembles are a YNNPACK fusion only without them."""
    if options is not None:
        monkeypatch.setattr(program, "CPU_OPTIONS", options)
    cpu = jax.devices("cpu")[0]
    assert program.compiler_options(cpu) == program.CPU_OPTIONS

    with nengo.Network(seed=0) as net:
        array = nengo.networks.EnsembleArray(64, 128)
        p = nengo.Probe(array.output)
    with nengo_jax.Simulator(net, device="/cpu:0", progress_bar=False) as sim:
        sim.run_steps(5)
        hlo = sim._program.run.lower(sim._params, sim._state, {}, n_steps=5)
    assert ("ynn_fusion" in hlo.compile().as_text()) == (options == {})
    assert sim.data[p].shape == (5, 128)


def test_unknown_options_are_dropped(monkeypatch):
    assert not program._known((("xla_cpu_no_such_option", ""),))
    monkeypatch.setattr(program, "CPU_OPTIONS", {"xla_cpu_no_such_option": ""})
    assert program.compiler_options(jax.devices("cpu")[0]) == {}


@pytest.mark.skipif(jax.devices()[0].platform != "cpu", reason="CPU only")
def test_default_device():
    assert program.compiler_options() == program.CPU_OPTIONS
