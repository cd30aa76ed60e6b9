"""The runtime: one owner of parameters and state, all-or-nothing calls, one
training flag, host errors that keep their type, one call at a time."""

import logging
import os
import signal
import subprocess
import sys
import threading
import time

import keras
import nengo
import numpy as np
import pytest
from nengo.exceptions import SimulationError

import nengo_jax
import nengo_jax.simulator.runtime as runtime_module
from nengo_jax.testing import assert_allclose
from tests.helpers import assert_same, committed

MB = 2


def lif_net(learning_phase=None, node=None):
    """stim (or a Node of its input) -> LIF ensemble -> probes."""
    with nengo.Network(seed=0) as net:
        if learning_phase is not None:
            nengo_jax.configure_settings(learning_phase=learning_phase)
        net.stim = nengo.Node(lambda t: np.sin(20 * t), label="stim")
        net.ens = nengo.Ensemble(20, 1, neuron_type=nengo.LIF())
        source = net.stim
        if node is not None:
            net.node = nengo.Node(node, size_in=1, label="node")
            nengo.Connection(net.stim, net.node, synapse=None)
            source = net.node
        nengo.Connection(source, net.ens, synapse=None)
        net.out = nengo.Node(size_in=1)
        nengo.Connection(net.ens, net.out, synapse=0.01)
        net.p = nengo.Probe(net.out, label="p")
        net.p_neurons = nengo.Probe(net.ens.neurons, label="p_neurons")
    return net


# -- one training flag -----------------------------------------------------------------


@pytest.mark.parametrize("phase", [True, False])
def test_learning_phase_applies_to_run_steps_and_predict(phase):
    """learning_phase=True: rates everywhere; False: spikes everywhere."""
    net = lif_net(learning_phase=phase)
    with nengo_jax.Simulator(net, minibatch_size=MB, progress_bar=False) as sim:
        sim.run_steps(30)
        ran = sim.data[net.p_neurons]
        sim.reset()
        predicted = sim.predict(n_steps=30)[net.p_neurons]
    np.testing.assert_allclose(ran, predicted, atol=1e-4)
    # spikes are 0 or 1/dt; rates lie in between
    between = np.sum((ran > 1) & (ran < 999))
    assert (between > 100) if phase else (between == 0)
    assert np.sum(ran >= 999) == 0 if phase else np.sum(ran >= 999) > 10


# -- host errors keep their type ------------------------------------------------------


def raising(error, after=0.0045):
    def node(t, x):
        if t > after:
            raise error
        return x

    return node


@pytest.mark.parametrize("call", ["run_steps", "predict"])
def test_node_error_is_a_simulation_error_from_every_entry_point(call, caplog):
    net = lif_net(node=raising(ValueError("broken node")))
    with nengo_jax.Simulator(net, minibatch_size=MB, progress_bar=False) as sim:
        sim.run_steps(3)
        before = committed(sim)
        with caplog.at_level(logging.ERROR):
            with pytest.raises(SimulationError, match="broken node") as info:
                getattr(sim, call)(n_steps=5) if call == "predict" else sim.run_steps(5)
        assert isinstance(info.value.__cause__, ValueError)
        assert "node" in str(info.value)
        # JAX's own log of the callback's exception does not reach the user
        assert not [r for r in caplog.records if "io_callback" in r.getMessage()]
        assert_same(committed(sim), before)


class UserProcess(nengo.Process):
    """A process with an input, run by its NumPy step function on the host."""

    def make_step(self, shape_in, shape_out, dt, rng, state):
        def step(t, x):
            if t > 0.0035:
                raise RuntimeError("process failed")
            return x

        return step


@pytest.mark.parametrize("call", ["run_steps", "predict"])
def test_process_error_is_a_simulation_error(call):
    with nengo.Network(seed=0) as net:
        stim = nengo.Node(np.sin)
        node = nengo.Node(UserProcess(), size_in=1, size_out=1)
        nengo.Connection(stim, node, synapse=None)
        nengo.Probe(node)
    with pytest.warns(UserWarning, match="runs on the host"):
        sim = nengo_jax.Simulator(net, progress_bar=False)
    with sim:
        with pytest.raises(SimulationError, match="process failed") as info:
            sim.predict(n_steps=5) if call == "predict" else sim.run_steps(5)
        assert isinstance(info.value.__cause__, RuntimeError)
        assert sim.n_steps == 0


def raiser(error):
    def fault():
        raise error

    return fault


def assert_failure_changes_nothing(fail, expected, fault=None, patch=None):
    """``fail(sim)`` raises ``expected`` and changes nothing: ``sim`` then runs as a
    twin that never failed. While ``fail`` runs, the network's Node calls
    ``fault()`` after 4 ms, and ``patch(sim, monkeypatch)`` is in force."""
    failing = {"now": False}

    def node(t, x):
        if failing["now"] and fault is not None and t > 0.0045:
            fault()
        return x

    net = lif_net(node=node)
    with nengo_jax.Simulator(net, minibatch_size=MB, progress_bar=False) as sim:
        with nengo_jax.Simulator(net, minibatch_size=MB, progress_bar=False) as twin:
            sim.run_steps(3)
            twin.run_steps(3)
            before = committed(sim)
            failing["now"] = True
            with pytest.MonkeyPatch.context() as m:
                if patch is not None:
                    patch(sim, m)
                with pytest.raises(expected):
                    fail(sim)
            failing["now"] = False
            assert_same(committed(sim), before)
            step = sim._layout.key(sim.model.step)
            assert int(np.asarray(sim._state[step]).ravel()[0]) == sim.n_steps == 3
            # usable afterwards, and still the twin of one that never failed
            sim.run_steps(5)
            twin.run_steps(5)
            assert_same(committed(sim), committed(twin))


@pytest.mark.parametrize("error", [KeyboardInterrupt, SystemExit])
@pytest.mark.parametrize("call", ["run_steps", "predict"])
def test_interrupts_keep_their_type_and_lose_nothing(error, call):
    def fail(sim):
        sim.predict(n_steps=5) if call == "predict" else sim.run_steps(5)

    assert_failure_changes_nothing(fail, error, fault=raiser(error()))


# -- all or nothing ------------------------------------------------------------------


def interrupt(*args):
    raise KeyboardInterrupt


def no_memory(*args):
    raise MemoryError("recording")


@pytest.mark.parametrize(
    "fault, patch, expected",
    [
        (raiser(MemoryError("no memory in the Node")), None, SimulationError),
        (
            None,
            lambda sim, m: m.setattr(sim._runtime.placement, "to_host", interrupt),
            KeyboardInterrupt,
        ),
        (
            None,
            lambda sim, m: m.setattr(sim._runtime, "_recorded", no_memory),
            MemoryError,
        ),
    ],
    ids=["callback", "transfer", "recording"],
)
def test_failure_at_any_stage_of_a_run_changes_nothing(fault, patch, expected):
    assert_failure_changes_nothing(
        lambda sim: sim.run_steps(6), expected, fault=fault, patch=patch
    )


def ramp_net():
    with nengo.Network(seed=0) as net:
        net.inp = nengo.Node(np.zeros(1), label="inp")
        net.ens = nengo.Ensemble(20, 1)
        net.out = nengo.Node(size_in=1)
        nengo.Connection(net.inp, net.ens, synapse=None)
        nengo.Connection(net.ens, net.out, synapse=None)
        net.p = nengo.Probe(net.out, label="p")
    return net


class InterruptAt(keras.callbacks.Callback):
    def __init__(self, batch):
        super().__init__()
        self.at = batch

    def on_train_batch_end(self, batch, logs=None):
        if batch == self.at:
            raise KeyboardInterrupt


def test_interrupted_fit_then_fit_equals_uninterrupted_twin():
    rng = np.random.RandomState(0)
    x = rng.uniform(-1, 1, size=(16, 1, 1))
    y = x**2
    kw = dict(verbose=0, shuffle=False)  # (shuffling draws from a global generator)

    def trained(interrupt):
        with nengo_jax.Simulator(
            ramp_net(), minibatch_size=4, progress_bar=False
        ) as sim:
            sim.compile(keras.optimizers.Adam(0.01), loss={"p": "mse"})
            if interrupt:
                sim.fit(x, y, epochs=1, **kw)  # builds and moves the optimizer
                before = committed(sim)
                iterations = int(np.asarray(sim.keras_model.optimizer.iterations.value))
                with pytest.raises(KeyboardInterrupt):
                    sim.fit(x, y, epochs=2, callbacks=[InterruptAt(2)], **kw)
                assert_same(committed(sim), before)
                assert (
                    int(np.asarray(sim.keras_model.optimizer.iterations.value))
                    == iterations
                )
            else:
                sim.fit(x, y, epochs=1, **kw)
            sim.fit(x, y, epochs=2, **kw)
            moments = [np.array(v.value) for v in sim.keras_model.optimizer.variables]
            return committed(sim), moments

    (interrupted, moments_i), (twin, moments_t) = trained(True), trained(False)
    assert_same(interrupted, twin)
    for a, b in zip(moments_i, moments_t, strict=True):
        np.testing.assert_array_equal(a, b)


def test_interrupted_first_fit_leaves_a_fresh_optimizer():
    """A fit that fails before its optimizer ever stepped leaves it unstepped."""
    x = np.ones((4, 1, 1))
    with nengo_jax.Simulator(ramp_net(), minibatch_size=4, progress_bar=False) as sim:
        sim.compile(keras.optimizers.Adam(0.01), loss={"p": "mse"})
        before = committed(sim)
        with pytest.raises(KeyboardInterrupt):
            sim.fit(x, x, epochs=1, verbose=0, callbacks=[InterruptAt(0)])
        assert_same(committed(sim), before)
        optimizer = sim.keras_model.optimizer
        assert int(np.asarray(optimizer.iterations.value)) == 0
        moments = [v for v in optimizer.variables if "momentum" in v.path]
        velocities = [v for v in optimizer.variables if "velocity" in v.path]
        assert len(moments) == len(velocities) == 3
        assert all(not np.any(np.asarray(v.value)) for v in moments + velocities)


class InterruptInLoop(keras.callbacks.Callback):
    """Interrupts predict or evaluate after their second minibatch."""

    def on_predict_batch_end(self, batch, logs=None):
        if batch == 1:
            raise KeyboardInterrupt

    on_test_batch_end = on_predict_batch_end


@pytest.mark.parametrize("method", ["predict", "evaluate"])
def test_interrupted_predict_or_evaluate_then_fit_equals_twin(method):
    """Keras empties the model's variables while it loops over minibatches; an
    interrupted predict or evaluate left them empty, and the next fit failed."""
    x = np.random.RandomState(0).uniform(-1, 1, size=(16, 1, 1))
    args = (x,) if method == "predict" else (x, x**2)

    def trained(interrupt):
        with nengo_jax.Simulator(
            ramp_net(), minibatch_size=4, progress_bar=False
        ) as sim:
            sim.compile(keras.optimizers.Adam(0.01), loss={"p": "mse"})
            if interrupt:
                before = committed(sim)
                call = getattr(sim, method)
                with pytest.raises(KeyboardInterrupt):
                    call(*args, verbose=0, callbacks=[InterruptInLoop()])
                assert_same(committed(sim), before)
                assert int(np.asarray(sim.keras_model.training_calls.value)) == 0
            sim.fit(x, x**2, epochs=2, verbose=0, shuffle=False)
            calls = int(np.asarray(sim.keras_model.training_calls.value))
            out = sim.predict(x, verbose=0)[sim.model.probes[0]]
            return committed(sim), calls, out

    (interrupted, calls_i, out_i) = trained(True)
    (twin, calls_t, out_t) = trained(False)
    assert_same(interrupted, twin)
    assert calls_i == calls_t == 8  # 2 epochs of 4 minibatches
    np.testing.assert_array_equal(out_i, out_t)


# -- one call at a time -----------------------------------------------------------


def test_a_second_thread_is_refused_while_a_run_is_in_progress():
    started, release = threading.Event(), threading.Event()

    def node(t, x):
        started.set()
        release.wait(10)
        return x

    net = lif_net(node=node)
    with nengo_jax.Simulator(net, progress_bar=False) as sim:
        errors = []
        worker = threading.Thread(
            target=lambda: errors.append(_catch(lambda: sim.run_steps(20)))
        )
        worker.start()
        assert started.wait(60)
        with pytest.raises(SimulationError, match="busy with run"):
            sim.run_steps(5)
        with pytest.raises(SimulationError, match="busy with run"):
            sim.reset()
        release.set()
        worker.join(60)
        assert errors == [None]
        step = sim._layout.key(sim.model.step)
        assert int(np.asarray(sim._state[step]).ravel()[0]) == sim.n_steps == 20
        assert sim.data[net.p].shape == (20, 1)


def _catch(fn):
    try:
        fn()
    except BaseException as e:  # (reported to the main thread)
        return e
    return None


def test_a_callback_cannot_run_the_simulator_it_is_called_from():
    x = np.ones((4, 1, 1))

    class RunsTheSimulator(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            sim.run_steps(1)

    with nengo_jax.Simulator(ramp_net(), minibatch_size=4, progress_bar=False) as sim:
        sim.compile(keras.optimizers.SGD(0.1), loss={"p": "mse"})
        before = committed(sim)
        with pytest.raises(SimulationError, match="Cannot run: this Simulator is busy"):
            sim.fit(x, x, epochs=1, verbose=0, callbacks=[RunsTheSimulator()])
        assert_same(committed(sim), before)
        # reading during a call is fine: sim.data shows the live values
        ens = sim.model.toplevel.ensembles[0]
        seen = []

        class Reads(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                seen.append(np.array(sim.data[ens].bias))

        sim.fit(
            np.ones((8, 1, 1)),
            np.ones((8, 1, 1)),
            epochs=1,
            verbose=0,
            callbacks=[Reads()],
            shuffle=False,
        )
        assert len(seen) == 2 and not np.array_equal(seen[0], seen[1])
        np.testing.assert_array_equal(seen[1], sim.data[ens].bias)


# -- interrupts ---------------------------------------------------------------------


@pytest.fixture
def python_sigint():
    """Python's own SIGINT handler (a test runner may have replaced it)."""
    assert threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def ctrl_c():
    signal.raise_signal(signal.SIGINT)


@pytest.mark.parametrize("call", ["run_steps", "predict"])
def test_ctrl_c_in_a_host_callback_stops_the_call_and_changes_nothing(
    call, python_sigint
):
    def fail(sim):
        sim.predict(n_steps=6) if call == "predict" else sim.run_steps(6)

    assert_failure_changes_nothing(fail, KeyboardInterrupt, fault=ctrl_c)


def test_ctrl_c_between_chunks_stops_the_run(python_sigint):
    """A network without callbacks: the interrupt, arriving while the host
    inputs are computed, stops the run before its first chunk."""
    calls = []

    def stim(t):
        calls.append(t)
        if len(calls) == 30:
            ctrl_c()
        return np.sin(t)

    with nengo.Network(seed=0) as net:
        node = nengo.Node(stim)
        probe = nengo.Probe(node)
    with nengo_jax.Simulator(net, progress_bar=False) as sim:
        sim.run_steps(10)
        with pytest.raises(KeyboardInterrupt):
            sim.run_steps(100)
        assert sim.n_steps == 10 and sim.data[probe].shape == (10, 1)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_during_fit_rolls_back(python_sigint):
    class CtrlC(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if batch == 1:
                ctrl_c()

    x = np.ones((8, 1, 1))
    with nengo_jax.Simulator(ramp_net(), minibatch_size=4, progress_bar=False) as sim:
        sim.compile(keras.optimizers.Adam(0.01), loss={"p": "mse"})
        before = committed(sim)
        with pytest.raises(KeyboardInterrupt):
            sim.fit(x, x, epochs=3, verbose=0, callbacks=[CtrlC()])
        assert_same(committed(sim), before)
        assert int(np.asarray(sim.keras_model.optimizer.iterations.value)) == 0


CTRL_C_SCRIPT = """
import signal, sys, time
import nengo, numpy as np
import nengo_jax
signal.signal(signal.SIGINT, signal.default_int_handler)

def slow(t, x):
    time.sleep(0.0005)
    return x

with nengo.Network(seed=0) as net:
    node = nengo.Node(slow, size_in=1)
    nengo.Connection(nengo.Node(np.sin), node, synapse=None)
with nengo_jax.Simulator(net, progress_bar=False) as sim:
    sim.run_steps(10)
    print("running", flush=True)
    try:
        sim.run_steps(40000)  # 20 s
    except KeyboardInterrupt:
        print("interrupted", sim.n_steps, flush=True)
"""


def test_ctrl_c_stops_a_long_run_with_python_nodes_within_a_second(tmp_path):
    script = tmp_path / "long_run.py"
    script.write_text(CTRL_C_SCRIPT)
    with subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=dict(os.environ, KERAS_BACKEND="jax"),
    ) as process:
        try:
            assert process.stdout.readline().strip() == "running"
            time.sleep(2)  # past the first chunk and its compile
            process.send_signal(signal.SIGINT)
            sent = time.perf_counter()
            line = process.stdout.readline().strip()
            stopped = time.perf_counter() - sent
        finally:
            process.kill()
    assert line == "interrupted 10"
    print(f"stopped {stopped:.2f} s after SIGINT")
    assert stopped < 1.5


# -- any run length -------------------------------------------------------------------


def test_twenty_run_lengths_compile_a_bounded_number_of_programs():
    rng = np.random.RandomState(0)
    lengths = [int(n) for n in rng.randint(1, 3000, size=20)]
    net = lif_net()
    with nengo_jax.Simulator(net, progress_bar=False) as sim:
        for n in lengths:
            sim.run_steps(n)
        compiles = sim.compile_count
        print(f"{len(lengths)} lengths, {compiles} compiles")
        # the first two lengths have programs of their own; the rest share the
        # programs of their next power of two
        buckets = {runtime_module.chunk_length(n) for n in lengths[2:]}
        assert compiles == 2 + len(buckets) <= 2 + 12
        # twenty more lengths in those buckets compile nothing
        for n in rng.randint(1, 2049, size=20):
            if runtime_module.chunk_length(int(n)) in buckets:
                sim.run_steps(int(n))
        assert sim.compile_count == compiles
        chunked = np.array(sim.data[net.p])
    with nengo_jax.Simulator(net, progress_bar=False) as sim:
        sim.run_steps(len(chunked))
        assert_allclose(chunked, sim.data[net.p], atol=1e-6)


@pytest.mark.parametrize("unroll", [1, 3])
def test_runs_longer_than_a_chunk_match_nengo(unroll, monkeypatch):
    monkeypatch.setattr(runtime_module, "MAX_CHUNK", 64)
    net = lif_net()
    with nengo.Simulator(net, progress_bar=False) as ref:
        ref.run_steps(200)
    with nengo_jax.Simulator(
        net, minibatch_size=MB, unroll_simulation=unroll, progress_bar=False
    ) as sim:
        assert sim._runtime.chunk_limit == 64
        for n in (5, 7, 64, 124):  # exact, exact, a full chunk, 64 + 60 (dynamic)
            sim.run_steps(n)
        for b in range(MB):
            assert_allclose(sim.data[net.p][b], ref.data[net.p], atol=1e-5)


def test_slow_networks_run_shorter_chunks():
    with nengo_jax.Simulator(lif_net(), progress_bar=False) as sim:
        seconds = runtime_module.CHUNK_SECONDS
        sim._runtime._adapt_chunks(4096, seconds=4 * seconds)  # 1024 steps fit
        assert sim._runtime.chunk_limit == 1024
        sim._runtime._adapt_chunks(1024, seconds=0.1)  # fast enough: unchanged
        assert sim._runtime.chunk_limit == 1024
        sim._runtime._adapt_chunks(3, seconds=10.0)
        assert sim._runtime.chunk_limit == 1


def test_close_frees_the_compiled_programs():
    net = lif_net()
    sim = nengo_jax.Simulator(net, progress_bar=False)
    sim.run_steps(10)
    sim.run_steps(5)
    program = sim._program
    assert program.run._cache_size() > 0
    sim.close()
    assert program.run._cache_size() == program.run_chunk._cache_size() == 0
    assert sim.data[net.p].shape == (15, 1)  # the data stays readable
