"""Compare the steady speed of two checkouts of nengo_jax, taking turns.

Each round runs every network spec in a fresh process of each checkout in
turn (``PYTHONPATH=CHECKOUT``, this venv's other packages), so a change in the
machine's speed during the comparison affects both alike; `nengo.Simulator`
runs the same networks once in this process, as the reference. Specs are
``network:neuron_type:minibatch`` (networks of `networks.py`). Example, with
the commit before a change checked out in a worktree::

    git worktree add /tmp/before HEAD~1
    .venv/bin/python benchmarks/ab.py --before /tmp/before --after . \\
        chain:lif:32 pes:relu:32 --out benchmarks/results/ab-cpu-$(date +%F).md
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def steady_times(specs: list, steps: int, repeats: int) -> None:
    """(worker) Print one JSON line per spec: its fastest of ``repeats`` runs."""
    sys.path.insert(0, str(HERE))
    from networks import ALL_NETWORKS, NEURON_TYPES

    import nengo_jax

    for spec in specs:
        name, neuron_type, minibatch = spec.split(":")
        bench = ALL_NETWORKS[name](NEURON_TYPES[neuron_type]())
        with nengo_jax.Simulator(
            bench.net, minibatch_size=int(minibatch), progress_bar=False
        ) as sim:
            sim.run_steps(steps)
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                sim.run_steps(steps)
                times.append(time.perf_counter() - start)
        result = {"spec": spec, "s": min(times) * 1000 / steps}
        print(json.dumps(result | {"from": nengo_jax.__file__}), flush=True)


def worker_times(checkout: str, args) -> dict:
    env = dict(os.environ, PYTHONPATH=str(Path(checkout).resolve()))
    command = [sys.executable, __file__, "--worker", *args.specs]
    command += ["--steps", str(args.steps), "--repeats", str(args.repeats)]
    out = subprocess.run(
        command, env=env, check=True, capture_output=True, text=True
    ).stdout
    results = [json.loads(line) for line in out.splitlines()]
    root = Path(checkout).resolve()
    for r in results:  # (an installed nengo_jax would shadow the checkout's)
        if root not in Path(r["from"]).resolve().parents:
            raise RuntimeError(f"{checkout}: its worker imported {r['from']}")
    return {r["spec"]: r["s"] for r in results}


def nengo_times(specs: list, steps: int) -> dict:
    """nengo.Simulator's seconds per 1000 steps of each spec's network
    (minibatch 1; a minibatch of N counts N runs)."""
    import nengo
    from networks import ALL_NETWORKS, NEURON_TYPES

    times = {}
    for spec in specs:
        name, neuron_type, minibatch = spec.split(":")
        bench = ALL_NETWORKS[name](NEURON_TYPES[neuron_type]())
        with nengo.Simulator(bench.net, progress_bar=False) as sim:
            sim.run_steps(10)
            start = time.perf_counter()
            sim.run_steps(steps)
            one = (time.perf_counter() - start) * 1000 / steps
        times[spec] = one * int(minibatch)
    return times


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("specs", nargs="+", help="network:neuron_type:minibatch")
    parser.add_argument("--before", help="checkout timed first in each round")
    parser.add_argument("--after", help="checkout timed second in each round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help="also write the Markdown report here")
    args = parser.parse_args(argv)
    if args.worker:
        steady_times(args.specs, args.steps, args.repeats)
        return
    if not (args.before and args.after):
        parser.error("--before and --after name the two checkouts")

    sys.path.insert(0, str(HERE))
    from report import machine_lines

    rounds = []
    for _ in range(args.rounds):
        rounds.append([worker_times(c, args) for c in (args.before, args.after)])
    ref = nengo_times(args.specs, args.steps)

    def revision(checkout):
        def git(*args):
            return subprocess.run(
                ["git", "-C", checkout, *args], capture_output=True, text=True
            ).stdout.strip()

        changed = git("status", "--porcelain", "--untracked-files=no")
        dirty = " (with uncommitted changes to it)" if changed else ""
        return git("log", "-1", "--format=%h %s")[:90] + dirty

    lines = machine_lines("nengo-jax A/B")
    lines += [
        f"- Before: `{args.before}` at {revision(args.before)}",
        f"- After: `{args.after}` at {revision(args.after)}",
        f"- {args.rounds} rounds taking turns; in each, the fastest of "
        f"{args.repeats} runs of {args.steps} steps after a first run",
        "",
        "| network | before s/1000 steps | after s/1000 steps | after/before "
        "| nengo.Simulator s/1000 steps | after vs nengo |",
        "|---|---|---|---:|---:|---:|",
    ]
    for spec in args.specs:
        before = [r[0][spec] for r in rounds]
        after = [r[1][spec] for r in rounds]
        lines.append(
            f"| {spec} | {', '.join(f'{t:.4f}' for t in before)} "
            f"| {', '.join(f'{t:.4f}' for t in after)} "
            f"| {min(after) / min(before):.2f} | {ref[spec]:.3f} "
            f"| {ref[spec] / min(after):.1f} |"
        )
    lines += [
        "",
        "Minibatch N rows of nengo.Simulator are N times its minibatch-1 time "
        "(one run, not measured per item).",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
