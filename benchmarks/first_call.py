r"""Time the first calls of a fresh process: what a user waits for when a script runs.

Each workload runs in a process of its own, for each simulator, the simulators
taking turns in each repeat:

- ``tutorial``: the seed tutorial's network (sin(x^2) through two ensembles of
  20 LIF neurons), minibatch 32: ``evaluate`` of 1024 spiking 100-step
  examples, two ``fit`` epochs on 4096 one-step examples, two ``predict`` of
  the test examples;
- ``digits``: the Keras CNN of ``conv_training.py`` (Conv2D 32, Conv2D 64
  stride 2, Dense 10) through ``Converter``, minibatch 32, 256 images of one
  step: two ``fit`` epochs and two ``predict`` calls.

Every simulator also builds the network and runs it for 1 s at minibatch 1
(``run 1 s``), `nengo.Simulator` included. Simulators:

- ``nengo``: `nengo.Simulator` (build and run only);
- ``nengo_dl``: NengoDL 3.6 (with ``--oracle``, its venv's python);
- ``nengo_jax cold``: an empty compilation cache (what the first run of a
  script costs);
- ``nengo_jax cached``: a second process on the cache the first one filled
  (what every later run of the script costs).

Columns are seconds (the first call of each kind includes compiling), and for
nengo_jax the number of programs XLA compiled in the process (the persistent
cache's hits are not compiled; tracing and lowering to XLA still run)::

    .venv/bin/python benchmarks/first_call.py --oracle /tmp/nengo-dl-oracle/bin/python \
        --out benchmarks/results/first-call-cpu-$(date +%F).md
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

# Keras picks its backend when first imported: nengo_jax trains on JAX
os.environ.setdefault("KERAS_BACKEND", "jax")

WORKLOADS = ("tutorial", "digits")
COLUMNS = (
    "build",
    "run 1 s",
    "evaluate",
    "fit epoch 1",
    "fit epoch 2",
    "predict 1",
    "predict 2",
    "XLA compiles",
)


def tutorial_net():
    """The seed tutorial's network, as its text builds it (Nengo's defaults)."""
    import nengo

    with nengo.Network(seed=0) as net:
        inpt = nengo.Node(nengo.processes.WhiteSignal(1, 5, rms=0.3))
        square = nengo.Ensemble(20, 1)
        sin = nengo.Ensemble(20, 1)
        outpt = nengo.Node(size_in=1)
        nengo.Connection(inpt, square, synapse=None)
        nengo.Connection(square, sin, function=np.square, synapse=None)
        nengo.Connection(sin, outpt, function=np.sin, synapse=None)
        probe = nengo.Probe(outpt)
    return net, inpt, probe


def timed(times, name, f):
    start = time.perf_counter()
    result = f()
    times[name] = time.perf_counter() - start
    return result


def time_calls(workload, simulator):
    """Seconds of each first call of ``workload`` on ``simulator``, in this process."""
    import nengo

    if simulator == "nengo_dl":
        import nengo_dl as dl
        import tensorflow as tf

        keras = tf.keras
    elif simulator == "nengo_jax":
        import keras

        import nengo_jax as dl
    else:  # nengo.Simulator runs the network nengo_jax's Converter makes
        import keras

        import nengo_jax as dl
    if workload == "tutorial":
        net, node, probe = tutorial_net()
    else:
        from conv_training import build

        net, node, probe = build("converted", dl, keras)
    times = {}
    if simulator == "nengo":
        sim = timed(times, "build", lambda: nengo.Simulator(net, progress_bar=False))
        with sim:
            timed(times, "run 1 s", lambda: sim.run(1.0))
        return times
    make = lambda **kw: dl.Simulator(net, progress_bar=False, **kw)  # noqa: E731
    with timed(times, "build", make) as sim:
        timed(times, "run 1 s", lambda: sim.run(1.0))
    rng = np.random.RandomState(0)
    if workload == "tutorial":
        x = rng.uniform(-1, 1, size=(4096, 1, 1))
        x_test = np.tile(rng.uniform(-1, 1, size=(1024, 1, 1)), (1, 100, 1))
        y, y_test = np.sin(x**2), np.sin(x_test**2)
        loss = "mse"
    else:
        x = rng.rand(256, 1, 28 * 28)
        y = rng.randint(0, 10, size=(256, 1, 1))
        x_test, y_test = x, y
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    with make(minibatch_size=32) as sim:
        sim.compile(optimizer=keras.optimizers.RMSprop(1e-3), loss={probe: loss})
        if workload == "tutorial":
            timed(
                times,
                "evaluate",
                lambda: sim.evaluate({node: x_test}, {probe: y_test}, verbose=0),
            )
        for epoch in (1, 2):
            timed(
                times,
                f"fit epoch {epoch}",
                lambda: sim.fit({node: x}, {probe: y}, epochs=1, verbose=0),
            )
        for call in (1, 2):
            timed(times, f"predict {call}", lambda: sim.predict({node: x_test}))
    return times


def count_compiles() -> list:
    """A one-element list counting the programs XLA compiles from now on in this
    process: JAX's compile events less its persistent cache's hits."""
    from jax import monitoring

    count = [0]

    def compiled(event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            count[0] += 1

    def hit(event, **kwargs):
        if event == "/jax/compilation_cache/cache_hits":
            count[0] -= 1

    monitoring.register_event_duration_secs_listener(compiled)
    monitoring.register_event_listener(hit)
    return count


def run_one(python, workload, simulator, env):
    """One process's times (a dict), or raise with its error output."""
    out = subprocess.run(
        [python, os.path.abspath(__file__), "--one", workload, simulator],
        capture_output=True,
        text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **env),
    )
    if out.returncode:
        raise RuntimeError(f"{workload} {simulator} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--oracle", help="NengoDL's venv python (optional)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS))
    parser.add_argument("--out", help="also write the Markdown report here")
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    if args.one:  # (a child process: one workload, JSON times)
        compiles = count_compiles() if args.one[1] == "nengo_jax" else None
        times = time_calls(*args.one)
        if compiles is not None:
            times["XLA compiles"] = compiles[0]
        print(json.dumps(times))
        return

    from oracle import find_oracle, oracle_line
    from report import machine_lines

    if args.oracle:  # a venv folder or its python; an error if no nengo_dl
        try:
            args.oracle = find_oracle(args.oracle)
        except ValueError as e:
            raise SystemExit(f"error: {e}") from None
    lines = machine_lines("First calls of a fresh process")
    if args.oracle:
        lines.append(oracle_line(args.oracle))
    lines += [
        "",
        f"Median of {args.repeats} processes per cell (seconds); each simulator "
        "in a process of its own, the simulators taking turns.",
        "",
        "| workload | simulator | " + " | ".join(COLUMNS) + " |",
        "|---|---|" + "---|" * len(COLUMNS),
    ]
    simulators = ["nengo", "nengo_jax cold", "nengo_jax cached"]
    if args.oracle:
        simulators.insert(1, "nengo_dl")
    for workload in args.workloads:
        results = {name: [] for name in simulators}
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as cache:
                for name in simulators:
                    python = args.oracle if name == "nengo_dl" else sys.executable
                    # (the cached run follows the cold one, on the cache it filled)
                    env = {"NENGO_JAX_CACHE_DIR": cache}
                    results[name].append(
                        run_one(python, workload, name.split()[0], env)
                    )
        for name in simulators:
            cells = []
            for column in COLUMNS:
                values = [r[column] for r in results[name] if column in r]
                value = statistics.median(values) if values else None
                cells.append(
                    ""
                    if value is None
                    else f"{value:g}"
                    if column == "XLA compiles"
                    else f"{value:.2f}"
                )
            row = f"| {workload} | {name} | " + " | ".join(cells) + " |"
            print(row, flush=True)
            lines.append(row)
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
