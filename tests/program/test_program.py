"""The program stage's entry, `compile_program`, and the XLA options it uses."""

import jax
import nengo
import numpy as np
import pytest

import nengo_jax  # noqa: F401  (registers the operator builders)
from nengo_jax.config import Settings
from nengo_jax.optimizer import plan_operators
from nengo_jax.program import program

#: Whether this jaxlib's XLA has YNNPACK fusions, which `CPU_OPTIONS` turns off
#: (older XLA, e.g. jaxlib 0.4.36, has neither: the options are then dropped).
HAS_YNN = program._known(tuple(program.CPU_OPTIONS.items()))


def compiled(net, minibatch_size=1, device=None):
    """``net`` through Nengo's builder, the optimizer and `compile_program`."""
    model = nengo.builder.Model()
    model.build(net)
    settings = Settings.from_network(net).resolved(model)
    plan = plan_operators(model, settings)
    prog, probe_keys = program.compile_program(
        model, plan, settings, minibatch_size=minibatch_size, device=device
    )
    params = prog.layout.initial_params()
    state = prog.layout.initial_state(minibatch_size)
    state[program.RNG_KEY] = program.new_rng_state(0)
    return prog, probe_keys, params, state


def test_compile_program_runs_like_nengo():
    with nengo.Network(seed=0) as net:
        stim = nengo.Node([0.5])
        ens = nengo.Ensemble(20, 1, neuron_type=nengo.LIFRate())
        nengo.Connection(stim, ens, synapse=None)
        p = nengo.Probe(ens, synapse=0.01)
    prog, probe_keys, params, state = compiled(net, minibatch_size=2)
    _, outputs = prog.run(params, state, {}, n_steps=20)
    ours = np.asarray(prog.unpack(outputs)[probe_keys[p]])
    assert ours.shape == (20, 2, 1)  # (steps, batch) + probe shape
    with nengo.Simulator(net, progress_bar=False) as ref:
        ref.run_steps(20)
    np.testing.assert_allclose(ours[:, 0], ref.data[p], atol=1e-4)
    np.testing.assert_array_equal(ours[:, 0], ours[:, 1])


@pytest.mark.parametrize("options", [None, {}])
def test_cpu_options_are_used(monkeypatch, options):
    """The decoders of 128 ensembles are a YNNPACK fusion only without them."""
    if options is not None:
        monkeypatch.setattr(program, "CPU_OPTIONS", options)
    cpu = jax.devices("cpu")[0]
    assert program.compiler_options(cpu) == (program.CPU_OPTIONS if HAS_YNN else {})

    with nengo.Network(seed=0) as net:
        array = nengo.networks.EnsembleArray(64, 128)
        p = nengo.Probe(array.output)
    prog, probe_keys, params, state = compiled(net, device=cpu)
    hlo = prog.run.lower(params, state, {}, n_steps=5)
    assert ("ynn_fusion" in hlo.compile().as_text()) == (HAS_YNN and options == {})
    _, outputs = prog.run(params, state, {}, n_steps=5)
    assert prog.unpack(outputs)[probe_keys[p]].shape == (5, 1, 128)


def test_unknown_options_are_dropped(monkeypatch):
    assert not program._known((("xla_cpu_no_such_option", ""),))
    monkeypatch.setattr(program, "CPU_OPTIONS", {"xla_cpu_no_such_option": ""})
    assert program.compiler_options(jax.devices("cpu")[0]) == {}


@pytest.mark.skipif(jax.devices()[0].platform != "cpu", reason="CPU only")
def test_default_device():
    assert program.compiler_options() == (program.CPU_OPTIONS if HAS_YNN else {})
