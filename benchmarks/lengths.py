r"""Runs of many different lengths: compiles, time and memory they cost.

One Simulator per network runs 20 seeded random lengths (1 to 3000 steps) one
after another; the script prints, per network, the compiles, the total time and
the process's resident memory growth, then the same for 20 more lengths.
Examples::

    .venv/bin/python benchmarks/lengths.py
    .venv/bin/python benchmarks/lengths.py --networks integrator --neuron-type relu
"""

from __future__ import annotations

import argparse
import resource
import time

import nengo
import numpy as np
from networks import NETWORKS, NEURON_TYPES
from report import machine_lines

import nengo_jax


def rss_mb() -> float:
    """The process's peak resident memory so far, in MB (Linux: KiB units)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", nargs="+", default=["integrator", "chain"])
    parser.add_argument("--neuron-type", default="lif", choices=sorted(NEURON_TYPES))
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--max-steps", type=int, default=3000)
    args = parser.parse_args(argv)
    rng = np.random.RandomState(0)
    batches = [
        rng.randint(1, args.max_steps + 1, size=args.runs).tolist() for _ in range(2)
    ]
    settings = (
        f"{args.runs} run lengths from 1 to {args.max_steps} steps, twice; "
        f"neuron type {args.neuron_type}"
    )
    lines = machine_lines("nengo-jax runs of many lengths")
    lines.insert(-2, f"- Settings: {settings}")
    lines += [
        "",
        "| network | runs | compiles | seconds | peak RSS growth MB |",
        "|---|---|---:|---:|---:|",
    ]
    for name in args.networks:
        bench = NETWORKS[name](NEURON_TYPES[args.neuron_type]())
        with nengo_jax.Simulator(bench.net, progress_bar=False) as sim:
            for label, lengths in zip(("first 20", "next 20"), batches, strict=True):
                compiles, memory = sim.compile_count, rss_mb()
                start = time.perf_counter()
                for n in lengths:
                    sim.run_steps(n)
                elapsed = time.perf_counter() - start
                lines.append(
                    f"| {name} | {label} | {sim.compile_count - compiles} | "
                    f"{elapsed:.1f} | {rss_mb() - memory:.0f} |"
                )
    print("\n".join(lines))


if __name__ == "__main__":
    nengo.rc["decoder_cache"]["enabled"] = "False"
    main()
