r"""Time training (``Simulator.fit``) on the benchmark networks.

The training issue's two workloads (the chain in three variants):

- ``integrator``: the 128-D LIF integrator array (32 neurons per dimension),
  one fit epoch of 64 examples x 1000 steps at minibatch 64 (BPTT through all
  1000 steps), targets the input's running integral, Adam(1e-6);
- ``chain``: the 10 x 1000-neuron LIF chain with ``synapse=None`` on its
  connections, trained to the identity on 4096 examples x 1 step, 5 epochs,
  minibatch 32, RMSprop(0.01); ``chain-ensembles`` trains its encoders and
  biases only (as seed 003 does), ``chain-adam`` everything with Adam(1e-6).

``nengo.Simulator`` cannot train; for scale, the report gives its time to run
the same examples forward once (sequentially, spiking), measured in this run.
NengoDL 3.6 (which cannot be installed next to current TensorFlow) took 35-49 s
for the chain fit on this machine type, per the issue. Example::

    .venv/bin/python benchmarks/train.py \
        --out benchmarks/results/train-cpu-$(date +%F).md
"""

from __future__ import annotations

import argparse
import os
import time

# Keras picks its backend when first imported: nengo_jax trains on JAX
os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import nengo  # noqa: E402
import numpy as np  # noqa: E402
from bandwidth import Bound, step_traffic  # noqa: E402
from nengo.cache import NoDecoderCache  # noqa: E402
from networks import chain, integrator  # noqa: E402
from report import machine_lines  # noqa: E402

import nengo_jax  # noqa: E402


def input_node(net):
    (node,) = [n for n in net.all_nodes if n.size_in == 0]
    return node


def nengo_forward_s(net, probe, node, x, n_items):
    """Seconds for nengo.Simulator to run ``n_items`` examples of ``x``, forward."""
    values = {"x": x[0, 0]}
    node.output = lambda t: values["x"]
    with nengo.Simulator(net, progress_bar=False) as sim:
        start = time.perf_counter()
        for i in range(n_items):
            sim.reset()
            for t in range(x.shape[1]):
                values["x"] = x[i, t]
                sim.step()
        return time.perf_counter() - start


def time_fit(name, bench, x, y, minibatch, epochs, optimizer, forward_items):
    net, probe = bench.net, bench.probe
    node = input_node(net)
    row = {"workload": name, "neurons": bench.n_neurons, "items": len(x)}
    start = time.perf_counter()
    # no decoder cache: the build column includes solving for the decoders
    model = nengo.builder.Model(dt=0.001, decoder_cache=NoDecoderCache())
    with nengo_jax.Simulator(
        net, model=model, minibatch_size=minibatch, progress_bar=False
    ) as sim:
        row["build_s"] = time.perf_counter() - start
        sim.compile(optimizer, loss={probe: "mse"})
        start = time.perf_counter()
        first = sim.fit({node: x}, {probe: y}, epochs=1, verbose=0)
        row["first_epoch_s"] = time.perf_counter() - start
        start = time.perf_counter()
        rest = sim.fit({node: x}, {probe: y}, epochs=epochs - 1, verbose=0).history
        row["steady_epoch_s"] = (
            (time.perf_counter() - start) / (epochs - 1) if epochs > 1 else None
        )
        row["fit_s"] = row["first_epoch_s"] + (
            row["steady_epoch_s"] * (epochs - 1) if epochs > 1 else 0
        )
        losses = first.history["loss"] + rest.get("loss", [])
        row["loss"] = f"{losses[0]:.4g} -> {losses[-1]:.4g}"
        row["traffic"] = step_traffic(sim)
        # simulation steps of one minibatch in an epoch
        row["steps_per_epoch"] = len(x) // minibatch * x.shape[1]
    per_item = nengo_forward_s(net, probe, node, x, forward_items) / forward_items
    row["nengo_forward_s"] = per_item * len(x)
    row["nengo_measured"] = forward_items
    return row


def integrator_workload(args):
    bench = integrator(nengo.LIF(), seed=args.seed)
    rng = np.random.RandomState(args.seed)
    x = rng.uniform(-1, 1, size=(64, 1000, 128)).astype("float32")
    y = np.cumsum(x, axis=1) * 0.001
    return time_fit(
        "integrator(128, 32) 1 epoch, 64 x 1000 steps, mb 64",
        bench,
        x,
        y,
        minibatch=64,
        epochs=args.integrator_epochs,
        optimizer=keras.optimizers.Adam(1e-6),
        forward_items=2,
    )


def chain_workload(args, optimizer=None, label="RMSprop(0.01)", connections=True):
    bench = chain(nengo.LIF(), seed=args.seed, synapse=None, probe_synapse=None)
    if not connections:
        with bench.net:
            nengo_jax.configure_settings(trainable=None)
        bench.net.config[nengo.Connection].trainable = False
    rng = np.random.RandomState(args.seed)
    x = rng.uniform(-1, 1, size=(4096, 1, 1)).astype("float32")
    return time_fit(
        f"chain(10 x 1000) 5 epochs, 4096 x 1 step, mb 32, {label}",
        bench,
        x,
        x,
        minibatch=32,
        epochs=5,
        optimizer=optimizer or keras.optimizers.RMSprop(0.01),
        forward_items=200,
    )


def chain_ensembles_workload(args):
    """The chain training encoders and biases only, as seed 003 trains."""
    return chain_workload(
        args, label="RMSprop(0.01), encoders and biases only", connections=False
    )


def chain_adam_workload(args):
    """The chain with a step size that keeps the NEF decoders (~1e-4) intact."""
    return chain_workload(args, keras.optimizers.Adam(1e-6), "Adam(1e-6)")


WORKLOADS = {
    "integrator": integrator_workload,
    "chain": chain_workload,
    "chain-ensembles": chain_ensembles_workload,
    "chain-adam": chain_adam_workload,
}


def bound_lines(rows, bound) -> list:
    """The bandwidth table: each workload's forward traffic per step against the
    DRAM copy bandwidth (see `bandwidth.py`)."""
    if bound is None:
        return []
    lines = [
        "",
        f"Bandwidth (copy kernel from DRAM: {bound.dram / 1e9:.1f} GB/s):",
        "",
        "| workload | minibatch steps per epoch | ms per step (steady) | forward "
        "MB/step | forward GB/s | % DRAM | matrix GFLOP/s (x3 for backward) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r["steady_epoch_s"] is None:
            continue
        seconds = r["steady_epoch_s"] / r["steps_per_epoch"]
        traffic = r["traffic"]
        gbps = traffic.bytes_per_step / seconds / 1e9
        lines.append(
            f"| {r['workload']} | {r['steps_per_epoch']} | {seconds * 1e3:.2f} | "
            f"{traffic.bytes_per_step / 1e6:.2f} | {gbps:.2f} | "
            f"{100 * gbps * 1e9 / bound.dram:.0f} | "
            f"{3 * traffic.flops / seconds / 1e9:.2f} |"
        )
    return lines + [
        "",
        "*forward MB/step*: what the forward step moves at least (state read and",
        "written once, parameters read once, probes written), at the fit's",
        "minibatch. A training step also runs the backward pass (which reads the",
        "forward's saved values and reads and writes the gradients: at least as",
        "much again), so *% DRAM* counting only the forward traffic is a lower",
        "bound; twice it is closer. Flops: the forward's matrix products times 3",
        "(forward, and the two products of the backward pass).",
    ]


def markdown(rows, header, bound=None):
    lines = header + [
        "",
        "| workload | neurons | build s | first epoch s (with compile) | "
        "steady s/epoch | fit total s | loss (first -> last epoch) | "
        "nengo.Simulator forward s (same items, spiking) |",
        "|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in rows:
        steady = "-" if r["steady_epoch_s"] is None else f"{r['steady_epoch_s']:.2f}"
        lines.append(
            f"| {r['workload']} | {r['neurons']} | {r['build_s']:.2f} | "
            f"{r['first_epoch_s']:.2f} | {steady} | {r['fit_s']:.2f} | {r['loss']} | "
            f"{r['nengo_forward_s']:.1f} (from {r['nengo_measured']} items) |"
        )
    lines += bound_lines(rows, bound) + [
        "",
        "Notes:",
        "",
        "- *fit total*: the first epoch (tracing and XLA compilation included) plus",
        "  the steady epochs; the integrator row has one epoch, so it is all compile",
        "  plus one epoch, and its steady column is a second, separate epoch.",
        "- Training runs LIF as LIFRate (the default rate swap).",
        "- The chain starts near the identity (NEF decoders, mse ~1e-4). RMSprop",
        "  moves every parameter by about its step size at once, which wrecks",
        "  decoders of ~1e-4 on the first update; Adam(1e-6), or RMSprop(0.01) on",
        "  the encoders and biases alone (connections frozen, as seed 003 trains),",
        "  shows the loss falling from the NEF solution.",
        "- *nengo.Simulator forward*: its time to simulate the same examples once,",
        "  spiking, one after another (extrapolated from the number measured); it",
        "  cannot train, so this is only a scale for the work involved.",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--workloads", nargs="+", choices=list(WORKLOADS), default=list(WORKLOADS)
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--integrator-epochs",
        type=int,
        default=2,
        help="epochs timed for the integrator (the workload is the first one)",
    )
    parser.add_argument(
        "--no-bound",
        action="store_true",
        help="leave out the bandwidth table (and the copy kernel timings)",
    )
    parser.add_argument("--out", help="also write the Markdown report to this file")
    args = parser.parse_args(argv)
    header = machine_lines("nengo-jax training benchmarks")
    bound = None if args.no_bound else Bound()
    rows = []
    for name in args.workloads:
        # fit shuffles the examples with NumPy's global generator
        np.random.seed(args.seed)
        rows.append(WORKLOADS[name](args))
        print(rows[-1], flush=True)
    header.append(
        "- Load average at end: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())
    )
    text = markdown(rows, header, bound)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    print(text)


if __name__ == "__main__":
    main()
