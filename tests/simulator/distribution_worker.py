"""Runs in a process of its own, started by ``test_distribution.py``.

The test process has initialised JAX with one CPU device; this script is run
with ``XLA_FLAGS=--xla_force_host_platform_device_count=4`` (four CPU
devices), or as one of two processes of a ``jax.distributed`` job. It measures
and prints one JSON object (its last line of output); the tests assert on it.

Usage::

    python distribution_worker.py devices
    python distribution_worker.py process <process_id> <port>
"""

import json
import logging
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("NENGO_JAX_CACHE_DIR", "off")

import nengo_jax  # noqa: I001  (before keras: sets its backend)
import jax
import keras
import nengo
import numpy as np
from nengo.exceptions import SimulationError, ValidationError

from nengo_jax.simulator.distribution import placement

MB = 8
STEPS = 60


def learning_net():
    """Spiking ensembles, a PES rule (learned per-item weights), device noise, a
    host process, a Python Node function, and an input Node for ``data``."""
    with nengo.Network(seed=0) as net:
        net.stim = nengo.Node(np.zeros(2), label="stim")
        wave = nengo.Node(nengo.processes.WhiteSignal(1, 5), size_out=2)
        a = nengo.Ensemble(40, 2, neuron_type=nengo.LIF())
        b = nengo.Ensemble(30, 2, noise=nengo.processes.WhiteNoise())
        nengo.Connection(net.stim, a)
        nengo.Connection(wave, a)
        conn = nengo.Connection(a, b, learning_rule_type=nengo.PES(1e-3))
        error = nengo.Node(size_in=2)
        nengo.Connection(b, error)
        nengo.Connection(net.stim, error, transform=-1)
        nengo.Connection(error, conn.learning_rule)
        doubled = nengo.Node(lambda t, x: 2 * x, size_in=2)
        nengo.Connection(b, doubled)
        net.watched = [
            nengo.Probe(b, synapse=0.01),
            nengo.Probe(a.neurons),
            nengo.Probe(doubled),
            nengo.Probe(conn, "weights", sample_every=0.01),
        ]
    return net


def rate_net():
    """A rate network to train: its outputs are smooth functions of the weights."""
    with nengo.Network(seed=1) as net:
        net.stim = nengo.Node(np.zeros(2), label="stim")
        a = nengo.Ensemble(30, 2, neuron_type=nengo.LIFRate())
        b = nengo.Ensemble(20, 2, neuron_type=nengo.LIFRate())
        nengo.Connection(net.stim, a, synapse=None)
        net.conn = nengo.Connection(a, b, synapse=0.005)
        net.out = nengo.Probe(b, synapse=0.01)
    return net


def biggest_difference(a, b):
    return max(float(np.max(np.abs(a[k] - b[k]))) for k in a)


def spread(array):
    """Devices holding ``array`` and the shape of the part on each."""
    shapes = {tuple(shard.data.shape) for shard in array.addressable_shards}
    return {"devices": len(array.sharding.device_set), "shard_shapes": list(shapes)}


def runs(device):
    """Probe data of two runs (the first given ``data``); the sharding of the
    learned weights."""
    net = learning_net()
    data = np.random.RandomState(0).randn(MB, STEPS, 2)
    with nengo_jax.Simulator(
        net, minibatch_size=MB, device=device, progress_bar=False
    ) as sim:
        sim.run_steps(STEPS, data={net.stim: data})
        sim.run_steps(7)
        probes = {str(i): sim.data[p] for i, p in enumerate(net.watched)}
        state = sim._runtime.snapshot.state
        weights = max(state.values(), key=lambda v: v.ndim)
    return probes, spread(weights)


def training_data():
    """Inputs and targets of two minibatches."""
    rng = np.random.RandomState(2)
    x = rng.uniform(-1, 1, size=(2 * MB, 20, 2)).astype(np.float32)
    return x, np.roll(x, 1, axis=-1)


class CompileLog(logging.Handler):
    """The names of the functions JAX compiles while ``jax_log_compiles`` is on."""

    def __init__(self):
        super().__init__()
        self.names = []

    def emit(self, record):
        message = record.getMessage()
        if message.startswith("Compiling jit("):
            self.names.append(message.split()[1])


def training(device, share=None, more=None):
    """Results of predict, fit (SGD), evaluate and predict again, and how often
    each Keras step compiled.

    ``share`` gives this process its share of the data; ``more(sim, net, x,
    y)`` measures more before the simulator closes (a dict).
    """
    net = rate_net()
    x, y = training_data()
    if share is not None:
        x, y = share(x), share(y)
    log = CompileLog()
    logging.getLogger("jax").addHandler(log)
    with (
        jax.log_compiles(True),
        nengo_jax.Simulator(
            net, minibatch_size=MB, device=device, progress_bar=False, seed=3
        ) as sim,
    ):
        before = sim.predict({net.stim: x}, verbose=0)[net.out]
        sim.compile(optimizer=keras.optimizers.SGD(0.01), loss={net.out: "mse"})
        history = sim.fit(
            {net.stim: x}, {net.out: y}, epochs=3, shuffle=False, verbose=0
        )
        loss = sim.evaluate({net.stim: x}, {net.out: y}, verbose=0)["loss"]
        after = sim.predict({net.stim: x}, verbose=0)[net.out]
        params = {k: np.asarray(v) for k, v in sim._runtime.snapshot.params.items()}
        variables = sim.keras_model.variables
        devices = max(len(v.value.sharding.device_set) for v in variables)
        decoders = sim.data[net.conn].weights
        measured = {} if more is None else more(sim, net, x, y)
    logging.getLogger("jax").removeHandler(log)
    steps = ("train_step", "test_step", "predict_step")
    return measured | {
        "step_compiles": {step: log.names.count(f"jit({step})") for step in steps},
        "before": before,
        "after": after,
        "losses": np.array(history.history["loss"] + [loss]),
        "params": params,
        "decoders": decoders,
        "devices": devices,
    }


def compare_training(one, many):
    scale = max(float(np.max(np.abs(v))) for v in one["params"].values())
    return {
        "predict_before": biggest_difference(
            {"0": one["before"]}, {"0": many["before"]}
        ),
        "predict_after": biggest_difference({"0": one["after"]}, {"0": many["after"]}),
        "losses": float(np.max(np.abs(one["losses"] - many["losses"]))),
        "trained": float(np.max(np.abs(one["after"] - one["before"]))),
        "params": biggest_difference(one["params"], many["params"]) / scale,
        "decoders": float(np.max(np.abs(one["decoders"] - many["decoders"]))),
        "keras_devices": many["devices"],
        "step_compiles": [one["step_compiles"], many["step_compiles"]],
    }


def devices_checks():
    devices = jax.devices()
    result = {"n_devices": len(devices)}
    one, _ = runs(None)
    many, result["weights"] = runs(devices)
    result["run_difference"] = biggest_difference(one, many)
    result["run_nonzero"] = min(float(np.max(np.abs(v))) for v in one.values())
    one_listed = placement(devices[:1], MB)
    result["one_listed"] = [one_listed.sharded, one_listed.device.id]
    try:
        nengo_jax.Simulator(
            rate_net(), minibatch_size=6, device=devices, progress_bar=False
        )
    except ValidationError as e:
        result["error"] = str(e)
    reference = training(None)
    result["train_devices"] = compare_training(reference, training(devices))
    keras.distribution.set_distribution(keras.distribution.DataParallel())
    result["train_global"] = compare_training(reference, training(None))
    return result


def process_checks(process_id, port):
    """One of two processes (two CPU devices each): a run over all four
    devices, with the whole minibatch given to every process; then the Keras
    calls, each process giving its share of the data."""
    keras.distribution.initialize(
        f"localhost:{port}", num_processes=2, process_id=process_id
    )
    distribution = keras.distribution.DataParallel()
    probes, _ = runs(distribution)
    trained = training(
        distribution,
        share=lambda a: nengo_jax.process_share(a, MB, distribution),
        more=lambda sim, net, x, y: more_checks(sim, net, x, y, process_id),
    )
    out = os.environ["WORKER_OUT"]
    np.savez(out, **probes)
    np.savez(
        out.replace(".npz", "_trained.npz"),
        **{
            k: trained.pop(k)
            for k in ("before", "after", "losses", "decoders", "frozen")
            if k in trained
        },
        **{f"param.{k}": v for k, v in trained.pop("params").items()},
    )
    return {
        "process_count": jax.process_count(),
        "global_devices": jax.device_count(),
        "local_devices": jax.local_device_count(),
        "keras_devices": trained.pop("devices"),
        "share": nengo_jax.process_share(np.arange(2 * MB), MB, distribution).tolist(),
        "share_structures": shares(distribution),
    } | trained


def shares(distribution):
    """`nengo_jax.process_share` of a dict and a list, and its error."""
    items = np.arange(MB)
    given = nengo_jax.process_share({"a": items, "b": -items}, MB, distribution)
    listed = nengo_jax.process_share([items, items[:, None]], MB, distribution)
    try:
        nengo_jax.process_share({"a": np.zeros((12, 3))}, MB, distribution)
    except ValidationError as e:
        error = str(e)
    return {
        "dict": {k: v.tolist() for k, v in given.items()},
        "list": [type(listed).__name__, listed[0].tolist(), listed[1].shape],
        "error": error,
    }


def more_checks(sim, net, x, y, process_id):
    """The errors of Keras calls whose data do not fit together across the two
    processes (process 1's differs), whether predict then still gives what it
    gave before them, and predict_on_batch. Process 0 alone (no collective)
    saves the trained parameters and reads them with get_nengo_params."""
    measured = {}
    if process_id == 0:
        sim.save_params(os.environ["WORKER_OUT"].replace(".npz", "_params"))
        measured["frozen"] = sim.get_nengo_params(net.conn)["solver"].values
    before = sim.predict({net.stim: x}, verbose=0)[net.out]
    errors = {}
    # what process 1 gives instead of its share
    bad_data = {
        "items": (x[:4], y[:4]),  # one minibatch's share instead of two
        "share": (x[:6], y[:6]),  # not a whole share of a minibatch
        "steps": (x[:, :10], y[:, :10]),  # fewer steps
    }
    for what, (bad_x, bad_y) in bad_data.items():
        given = (x, y) if process_id == 0 else (bad_x, bad_y)
        try:
            sim.evaluate({net.stim: given[0]}, {net.out: given[1]}, verbose=0)
        except ValidationError as e:
            errors[what] = str(e)
    try:
        sim.predict(({net.stim: x[:4]} for _ in range(2)), verbose=0)
    except ValidationError as e:
        errors["stream"] = str(e)
    try:
        sim.check_gradients()
    except SimulationError as e:
        errors["check_gradients"] = str(e)
    after = sim.predict({net.stim: x}, verbose=0)[net.out]
    # the first minibatch, of the processes' shares of it
    on_batch = sim.predict_on_batch({net.stim: x[:4]})[net.out]
    return measured | {
        "errors": errors,
        "unchanged": bool(np.array_equal(before, after)),
        "on_batch": float(np.max(np.abs(on_batch - after[:MB]))),
    }


if __name__ == "__main__":
    # (two processes would share the decoder cache's lock)
    nengo.rc["decoder_cache"]["enabled"] = "False"
    if sys.argv[1] == "devices":
        out = devices_checks()
    else:
        out = process_checks(int(sys.argv[2]), int(sys.argv[3]))
    print(json.dumps(out))
