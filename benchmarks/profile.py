r"""Where a network's steady step spends its time, kernel by kernel (CPU).

Runs one benchmark network under JAX's profiler, with XLA's per-kernel trace
events switched on, and prints each compiled kernel's time per step, largest
first. Kernel names are those of the optimized HLO: dump it with
``XLA_FLAGS="--xla_dump_to=DIR --xla_dump_hlo_as_text"`` to see what each one
fuses. The wall time per step minus the kernels' is spent on the host (e.g.
Node functions of time, evaluated before the loop); cProfile shows where. With
more than one XLA thread at work (large minibatches), kernels run side by side
and their sum exceeds the wall time. Example::

    .venv/bin/python benchmarks/profile.py cconv --neuron-type relu --minibatch 32
"""

from __future__ import annotations

import argparse
import collections
import glob
import os
import tempfile
import time

# XLA reads its flags when JAX starts its backend, so before jax is imported
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_cpu_enable_xprof_traceme=true"
).strip()

import jax  # noqa: E402
from networks import ALL_NETWORKS, NEURON_TYPES  # noqa: E402

import nengo_jax  # noqa: E402

#: trace events that are not kernels: the executor's own spans, the loop, and
#: the completion markers of asynchronous kernels
_NOT_KERNELS = ("ThunkExecutor", "while", "end: ")


def kernel_times(trace_dir: str) -> tuple[collections.Counter, collections.Counter]:
    """Nanoseconds and calls of each kernel in the profile under ``trace_dir``."""
    (path,) = glob.glob(os.path.join(trace_dir, "**", "*.xplane.pb"), recursive=True)
    data = jax.profiler.ProfileData.from_file(path)
    times, calls = collections.Counter(), collections.Counter()
    for plane in data.planes:
        for line in plane.lines:
            if line.name == "python":
                continue
            for event in line.events:
                if not event.name.startswith(_NOT_KERNELS):
                    times[event.name] += event.duration_ns
                    calls[event.name] += 1
    return times, calls


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("network", choices=list(ALL_NETWORKS))
    parser.add_argument("--neuron-type", choices=list(NEURON_TYPES), default="lif")
    parser.add_argument("--minibatch", type=int, default=1)
    parser.add_argument("--steps", type=int, default=200, help="steps profiled")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--top", type=int, default=40, help="kernels listed")
    args = parser.parse_args(argv)

    bench = ALL_NETWORKS[args.network](NEURON_TYPES[args.neuron_type](), args.scale)
    minibatch = None if args.minibatch == 1 else args.minibatch
    with nengo_jax.Simulator(
        bench.net, minibatch_size=minibatch, progress_bar=False
    ) as sim:
        sim.run_steps(args.steps)  # compiles
        with tempfile.TemporaryDirectory() as trace_dir:
            with jax.profiler.trace(trace_dir):
                start = time.perf_counter()
                sim.run_steps(args.steps)
                wall = time.perf_counter() - start
            times, calls = kernel_times(trace_dir)
        print(sim.optimizer_report)

    per_step = 1e-3 / args.steps  # ns in total -> us per step
    wall_us, kernel_us = wall * 1e6 / args.steps, sum(times.values()) * per_step
    print(
        f"\n{args.network} {args.neuron_type}, minibatch {args.minibatch}: "
        f"{wall_us:.1f} us per step (wall, profiled), "
        f"{kernel_us:.1f} us in {len(times)} kernels, "
        f"{wall_us - kernel_us:.1f} us outside them (host: Node functions and "
        "input processes computed before the loop, dispatch, transfers)\n"
    )
    print(f"{'us/step':>9} {'calls':>7}  kernel")
    for name, ns in times.most_common(args.top):
        print(f"{ns * per_step:9.2f} {calls[name]:7d}  {name}")


if __name__ == "__main__":
    main()
