"""Data parallel simulation over several devices and several processes.

This process has initialised JAX with one CPU device, so the checks run in
processes of their own (`distribution_worker`): one with four CPU devices,
and two of a ``jax.distributed`` job with two devices each. Each prints what it
measured; these tests assert on it, comparing with one device.
"""

import gc
import json
import os
import pathlib
import socket
import subprocess
import sys

import jax
import nengo
import numpy as np
import pytest
from nengo.exceptions import ValidationError

import nengo_jax
from nengo_jax.simulator.distribution import placement
from tests.simulator import distribution_worker as worker

WORKER = pathlib.Path(worker.__file__)
ROOT = WORKER.parents[2]


def _environment(n_devices, **extra):
    env = dict(os.environ)
    env["XLA_FLAGS"] = (
        env.get("XLA_FLAGS", "")
        + f" --xla_force_host_platform_device_count={n_devices}"
    )
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


def _last_json(output: str) -> dict:
    return json.loads(output.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def four_devices():
    """What the worker measured with four CPU devices."""
    done = subprocess.run(
        [sys.executable, str(WORKER), "devices"],
        env=_environment(4),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return _last_json(done.stdout)


def test_run_steps_on_four_devices_equals_one(four_devices):
    assert four_devices["n_devices"] == 4
    # the learned PES weights (state) are split along the batch axis ...
    assert four_devices["weights"] == {"devices": 4, "shard_shapes": [[2, 2, 40]]}
    # ... and every probe (spikes, a Python Node, noise, learned weights) is
    # what one device computes, to float32 rounding (exactly, on AVX CPUs; a
    # spike one step early or late would differ by 1 / dt = 1000)
    assert four_devices["run_nonzero"] > 0
    assert four_devices["run_difference"] < 1e-5


def test_minibatch_not_divisible(four_devices):
    message = four_devices["error"]
    assert "minibatch_size" in message
    assert "multiple of the 4 devices" in message
    assert "got minibatch_size=6" in message


def test_one_device_in_a_list_is_not_sharded(four_devices):
    assert four_devices["one_listed"] == [False, 0]


@pytest.mark.parametrize("how", ["train_devices", "train_global"])
def test_keras_calls_on_four_devices_equal_one(four_devices, how):
    """``device=jax.devices()``, or the global Keras ``DataParallel``."""
    result = four_devices[how]
    assert result["keras_devices"] == 4
    # each Keras step compiled once on one device and on four: 3 epochs and
    # an evaluate; predict before compile() and after it, which makes Keras
    # make its functions anew
    once = {"train_step": 1, "test_step": 1, "predict_step": 2}
    assert result["step_compiles"] == [once, once]
    assert result["trained"] > 0.01  # (fit changed the outputs)
    assert result["predict_before"] < 1e-6
    # float32 rounding: the gradient sums over the batch in another order
    assert result["params"] < 1e-6
    assert result["decoders"] < 1e-7
    assert result["losses"] < 1e-5
    assert result["predict_after"] < 1e-5


def test_two_processes_equal_one(tmp_path):
    """Two processes of a ``jax.distributed`` job (two CPU devices each, gloo
    collectives) run and train as one device does.

    (One test, so that the processes run once even when pytest-xdist would
    give the tests of a shared fixture to several workers.)
    """
    two_processes = _run_two_processes(tmp_path)
    check_run(two_processes)
    check_keras_calls(two_processes)
    check_process_share(two_processes)
    check_refused_data(two_processes)


def _run_two_processes(out):
    """What the two processes measured, and what they saved (by process)."""
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), "process", str(i), str(port)],
            env=_environment(2, WORKER_OUT=str(out / f"{i}.npz")),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err[-3000:]
    return [
        {
            "measured": _last_json(stdout),
            "run": dict(np.load(out / f"{i}.npz")),
            "trained": dict(np.load(out / f"{i}_trained.npz")),
            "params_file": out / f"{i}_params.npz",
        }
        for i, (stdout, _) in enumerate(outputs)
    ]


def check_run(two_processes):
    """A run over the four devices of two processes records what one device
    does, in both."""
    net = worker.learning_net()
    data = np.random.RandomState(0).randn(worker.MB, worker.STEPS, 2)
    with nengo_jax.Simulator(net, minibatch_size=worker.MB, progress_bar=False) as sim:
        sim.run_steps(worker.STEPS, data={net.stim: data})
        sim.run_steps(7)
        expected = [sim.data[p] for p in net.watched]
    for process in two_processes:
        measured = process["measured"]
        assert measured["process_count"] == 2
        assert measured["global_devices"] == 4
        assert measured["local_devices"] == 2
        for j, value in enumerate(expected):
            np.testing.assert_allclose(
                process["run"][str(j)], value, rtol=1e-6, atol=1e-5
            )


def check_keras_calls(two_processes):
    """predict, fit, evaluate and predict again, each process giving its half
    of the data (`nengo_jax.process_share`), equal one device given all of it:
    every process gets all of predict's outputs, evaluate's loss of all the
    data, and the parameters that one device trains."""
    # DataParallel: each process's share is its devices' half of each minibatch
    shares = [process["measured"]["share"] for process in two_processes]
    assert shares == [[0, 1, 2, 3, 8, 9, 10, 11], [4, 5, 6, 7, 12, 13, 14, 15]]
    one = worker.training(None)
    assert float(np.max(np.abs(one["after"] - one["before"]))) > 0.01  # (trained)
    for process in two_processes:
        assert process["measured"]["keras_devices"] == 4
        got = process["trained"]
        assert got["before"].shape == one["before"].shape == (2 * worker.MB, 20, 2)
        np.testing.assert_allclose(got["before"], one["before"], atol=1e-6, rtol=0)
        # float32 rounding: the gradient sums over the batch in another order
        np.testing.assert_allclose(got["losses"], one["losses"], rtol=1e-5)
        np.testing.assert_allclose(got["after"], one["after"], atol=1e-5, rtol=0)
        for key, value in one["params"].items():
            np.testing.assert_allclose(
                got[f"param.{key}"], value, atol=1e-6 * np.max(np.abs(value))
            )
        # (read back through sim.data)
        np.testing.assert_allclose(got["decoders"], one["decoders"], atol=1e-7)
        # (predict_on_batch: one minibatch, of the processes' shares of it)
        assert process["measured"]["on_batch"] < 1e-6
    # process 0 saved the parameters and read them with get_nengo_params,
    # alone (from its replica, no collective)
    saved = two_processes[0]["trained"]
    np.testing.assert_allclose(saved["frozen"].T, one["decoders"], atol=1e-7)
    net = worker.rate_net()
    with nengo_jax.Simulator(net, minibatch_size=worker.MB, progress_bar=False) as sim:
        assert not np.allclose(sim.data[net.conn].weights, one["decoders"])
        sim.load_params(two_processes[0]["params_file"])
        np.testing.assert_allclose(
            sim.data[net.conn].weights, one["decoders"], atol=1e-7
        )
    # every process holds the same replica of the parameters
    first, second = (process["trained"] for process in two_processes)
    for key in first:
        if key.startswith("param."):
            np.testing.assert_array_equal(first[key], second[key])


def check_process_share(two_processes):
    """Each process's rows of every minibatch, of one array, a dict or a list."""
    for i, process in enumerate(two_processes):
        rows = [4 * i + j for j in range(4)]
        measured = process["measured"]["share_structures"]
        assert measured["dict"] == {"a": rows, "b": [-r for r in rows]}
        assert measured["list"] == ["list", rows, [4, 1]]
        assert measured["error"] == (
            "data: Data for a must have whole minibatches of minibatch_size=8 "
            "items along its first axis; got shape (12, 3)"
        )


def test_process_share_in_one_process():
    """One process gives all of the data (whatever the devices)."""
    import keras

    x = {"stim": np.zeros((16, 5, 2))}
    assert nengo_jax.process_share(x, 8) is x
    assert nengo_jax.process_share(x, 8, keras.distribution.DataParallel()) is x


def check_refused_data(two_processes):
    """Data that does not fit together raises in both processes (none waits for
    the other), and leaves the simulator as it was."""
    refused, other = (p["measured"]["errors"] for p in reversed(two_processes))
    for errors in (refused, other):
        assert errors["items"].startswith(
            "x: Cannot evaluate across 2 processes: each must give data with the "
            "same number of items"
        )
        assert errors["items"].endswith(
            "got 8 in process 0, 4 in process 1. See nengo_jax.process_share for "
            "each process's share."
        )
        assert (
            "same number of steps; got 20 in process 0, 10 in process 1"
            in (errors["steps"])
        )
        assert "takes arrays" in errors["stream"]
        assert "got a generator" in errors["stream"]
        assert errors["check_gradients"].startswith(
            "Cannot check_gradients across 2 processes: of the Keras calls, only "
            "fit, evaluate, predict, predict_on_batch"
        )
    # (process 1 gave 6 items: not a whole share of each minibatch)
    assert "must be a positive multiple of 4; got 6" in refused["share"]
    assert other["share"] == (
        "x: Cannot evaluate: the data of process 1 was refused there (its error "
        "says why); every process must give valid data"
    )
    for process in two_processes:
        assert process["measured"]["unchanged"]


def test_one_device_costs_nothing():
    """Without several devices, arrays go where they always did."""
    place = placement(None, 8)
    assert not place.sharded and place.device is None
    assert place.inputs({"x": np.zeros(3)}, {"x": True})["x"] is not None
    assert placement("cpu", 8).device == jax.devices("cpu")[0]


def test_bad_device():
    with pytest.raises(ValidationError, match="a list of devices.*got 3.5"):
        placement(3.5, 8)
    with pytest.raises(ValidationError, match="at least one device"):
        placement([], 8)


def test_long_run_device_memory_stays_flat(monkeypatch):
    """A long run streams its probe data to the host chunk by chunk: the device
    arrays alive when each chunk's rows are fetched stay the same however many
    chunks came before, and the run leaves none behind. (The 1000-neuron
    probe's 100,000 steps take 400 MB of host memory.)
    """
    from nengo_jax.simulator.distribution import Placement
    from nengo_jax.simulator.runtime import MAX_CHUNK

    def live():
        return sum(a.nbytes for a in jax.live_arrays())

    # arrays that earlier tests in this process left to the garbage collector
    # could be freed midway and move the sums: hold the ones still alive
    gc.collect()
    earlier = jax.live_arrays()  # noqa: F841
    fetched = []
    to_host = Placement.to_host

    def recording(self, tree):
        jax.block_until_ready(tree)
        fetched.append(live())
        return to_host(self, tree)

    with nengo.Network(seed=0) as net:
        ens = nengo.Ensemble(1000, 1)
        probe = nengo.Probe(ens.neurons)
    with nengo_jax.Simulator(net, progress_bar=False) as sim:
        sim.run_steps(1000)
        after_short = live()
        monkeypatch.setattr(Placement, "to_host", recording)
        sim.run_steps(100_000)
        monkeypatch.undo()
        assert live() == after_short
        assert sim._runtime.snapshot.probes[probe].n == 2  # (both runs recorded)
    chunk_bytes = min(sim._runtime.chunk_limit, MAX_CHUNK) * 1000 * 4
    assert len(fetched) >= 25
    # each chunk: the state and parameters (the run's first state, and the
    # chunk's new one), and that chunk's rows alone
    assert max(fetched) <= 2 * after_short + chunk_bytes
    # (the full chunks alike, the last one shorter)
    assert fetched[1:-1] == [fetched[0]] * (len(fetched) - 2)
    assert fetched[-1] < fetched[0]
