r"""Data parallel scaling: the ``chain`` network on 1, 2 and 4 devices.

Weak scaling: with ``N`` devices the minibatch is ``32 * N`` (32 items a
device), so perfect scaling keeps the time constant and the efficiency,
``time(1 device) / time(N devices)``, at 1. Each device count runs in a
process of its own; on a CPU the devices are forced with
``XLA_FLAGS=--xla_force_host_platform_device_count=N`` (they share the CPU's
cores: on a 2-core machine, 4 devices cannot be faster than 2). Example::

    .venv/bin/python benchmarks/scaling.py \
        --out benchmarks/results/scaling-cpu-$(date +%F).md
    .venv/bin/python benchmarks/scaling.py --devices 1 2 --steps 200  # quick try

Two workloads, per device count:

- ``run``: ``run_steps(--steps)`` of the 10 x 1000-neuron LIF chain
  (`networks.chain`); the median of ``--repeats`` runs after a first one that
  compiles.
- ``fit``: one epoch of ``fit`` on the chain with ``synapse=None`` (as
  ``train.py``): ``--batches`` minibatches of one step, RMSprop; the median of
  ``--repeats`` epochs after a first one that compiles.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PER_DEVICE = 32


def worker(args) -> dict:
    """Times on this process's devices (all of them), and on its first device
    alone with the same minibatch."""
    os.environ.setdefault("KERAS_BACKEND", "jax")
    sys.path.insert(0, HERE)
    import jax
    import keras
    import nengo
    import numpy as np
    from networks import chain

    import nengo_jax

    devices = jax.devices()
    n = len(devices)
    minibatch = PER_DEVICE * n
    out = {"devices": n, "minibatch": minibatch}

    def timed(call):
        """Seconds of the first call, and the median of the next ones."""
        start = time.perf_counter()
        call()
        first = time.perf_counter() - start
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
        return first, statistics.median(times)

    def run(device):
        bench = chain(nengo.LIF(), seed=args.seed)
        with nengo_jax.Simulator(
            bench.net, minibatch_size=minibatch, device=device, progress_bar=False
        ) as sim:
            return timed(lambda: sim.run_steps(args.steps))

    def fit(device):
        bench = chain(nengo.LIF(), seed=args.seed, synapse=None, probe_synapse=None)
        (node,) = [n for n in bench.net.all_nodes if n.size_in == 0]
        rng = np.random.RandomState(args.seed)
        x = rng.uniform(-1, 1, size=(args.batches * minibatch, 1, 1))
        x = x.astype("float32")
        with nengo_jax.Simulator(
            bench.net, minibatch_size=minibatch, device=device, progress_bar=False
        ) as sim:
            sim.compile(keras.optimizers.RMSprop(0.01), loss={bench.probe: "mse"})
            return timed(
                lambda: sim.fit({node: x}, {bench.probe: x}, epochs=1, verbose=0)
            )

    split = devices if n > 1 else None
    out["run_first_s"], out["run_s"] = run(split)
    out["fit_first_s"], out["fit_epoch_s"] = fit(split)
    if n > 1:  # the same work, not split
        out["run_one_s"] = run(None)[1]
        out["fit_one_s"] = fit(None)[1]
    out["load_after"] = os.getloadavg()[0]
    return out


def measure(n: int, args) -> dict:
    env = dict(os.environ)
    env["XLA_FLAGS"] = (
        env.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={n}"
    ).strip()
    command = [sys.executable, __file__, "--worker"] + [
        f"--{k}={v}"
        for k, v in (
            ("steps", args.steps),
            ("batches", args.batches),
            ("repeats", args.repeats),
            ("seed", args.seed),
        )
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{n} devices failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def markdown(rows, args) -> str:
    sys.path.insert(0, HERE)
    from report import machine_lines

    lines = machine_lines("nengo-jax data parallel scaling (forced CPU devices)")
    lines.insert(
        -2,
        f"- Settings: chain (10 x 1000 LIF), {PER_DEVICE} items a device; run: "
        f"{args.steps} steps; fit: {args.batches} minibatches of 1 step a "
        f"epoch, RMSprop(0.01); median of {args.repeats} after the first",
    )
    lines[-1] = "- XLA_FLAGS: `--xla_force_host_platform_device_count=N` (N below)"
    lines += [
        "",
        "| devices | minibatch | run s / 1000 steps | run efficiency | "
        "run on 1 device | fit s / epoch | fit efficiency | fit on 1 device | "
        "first run s | first epoch s | load after |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    base = rows[0]
    per_1000 = 1000 / args.steps
    for r in rows:
        run_one = r.get("run_one_s", r["run_s"]) * per_1000
        fit_one = r.get("fit_one_s", r["fit_epoch_s"])
        lines.append(
            f"| {r['devices']} | {r['minibatch']} | {r['run_s'] * per_1000:.3f} | "
            f"{base['run_s'] / r['run_s']:.2f} | {run_one:.3f} | "
            f"{r['fit_epoch_s']:.3f} | "
            f"{base['fit_epoch_s'] / r['fit_epoch_s']:.2f} | {fit_one:.3f} | "
            f"{r['run_first_s']:.2f} | {r['fit_first_s']:.2f} | "
            f"{r['load_after']:.2f} |"
        )
    lines += [
        "",
        "Efficiency is weak scaling: time on 1 device (32 items) / time on N "
        "devices (32 N items); 1.00 is perfect, 1/N is no gain over running "
        "the N minibatches one after another on 1 device. *on 1 device*: the "
        "same minibatch (32 N items) on one of the N devices, not split.",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batches", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="also write the Markdown table here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return
    rows = [measure(n, args) for n in args.devices]
    text = markdown(rows, args)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
