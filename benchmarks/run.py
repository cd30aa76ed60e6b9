r"""Time named networks on `nengo.Simulator` and `nengo_jax.Simulator`.

Both simulators run in this one process, one network at a time, and the script
prints a Markdown table (and writes it to ``--out``) with the machine facts in
its header. Examples::

    .venv/bin/python benchmarks/run.py                        # the full suite
    .venv/bin/python benchmarks/run.py --scale 0.1 --steps 200  # a quick try
    .venv/bin/python benchmarks/run.py --networks --step-loop   # step() loop only
    .venv/bin/python benchmarks/run.py --step-loop \
        --out benchmarks/results/cpu-$(date +%F).md
    .venv/bin/python benchmarks/run.py --networks --optimizer  # the optimizer table
    .venv/bin/python benchmarks/run.py --networks --optimizer cconv chain \
        --scale 0.1 --steps 100 --neuron-types lif            # a quick try

For every network, neuron type and minibatch size it records the build time
(the Simulator constructor), the first run (which includes JAX's compile for
nengo_jax), and the steady time per 1000 steps: the median of ``--repeats``
further runs of ``--steps`` steps, the simulators of one network taking turns
in each repeat. `nengo.Simulator` has no minibatch; its
minibatch-N time is N times its measured minibatch-1 time, i.e. N sequential
runs, which is how nengo_jax's speedup at that size is computed.

``--optimizer`` adds a table of what nengo_jax's graph optimizer does to each
named network (by default the big networks of the optimizer issue:
``cconv128``, ``basal_ganglia``, ``random``, ``random_large``): operators as
built, after the simplifications and after merging, and build, compile and
steady times, with the default planner beside ``noop_planner`` (no merging).

NengoDL 3.6 is a third simulator when its oracle venv (built by
``../shared/tools/nengo-dl-oracle``) is found, or given with ``--oracle``: it
runs in one worker process in that venv (`oracle.py`), taking its turn in each
repeat beside the two here. Each nengo_jax row at minibatch 32 or more also gets
the memory-bandwidth columns of `bandwidth.py` (``--no-bound`` leaves them out).
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
import traceback
from dataclasses import dataclass

import nengo
from bandwidth import Bound, cache_sizes, step_traffic
from nengo.cache import NoDecoderCache
from networks import (
    ALL_NETWORKS,
    NETWORKS,
    NEURON_TYPES,
    OPTIMIZER_NETWORKS,
    step_loop_network,
)
from oracle import Worker, find_oracle, oracle_candidates
from report import Report, Row, fmt, header_lines

import nengo_jax
from nengo_jax.graph_optimizer import noop_planner

SIMULATORS = ("nengo", "nengo_dl", "nengo_jax")

#: How the repeats' times make a row's steady time (``--statistic``): the
#: median, or the fastest, which on a machine shared with other jobs is the
#: run least disturbed by them.
STATISTICS = {"median": statistics.median, "min": min}


def make_simulator(simulator: str, net: nengo.Network, minibatch: int):
    """Build ``net`` on ``simulator`` without the decoder cache.

    The cache is off so that whichever simulator builds second does not get its
    decoders for free.
    """
    model = nengo.builder.Model(dt=0.001, decoder_cache=NoDecoderCache())
    if simulator == "nengo":
        return nengo.Simulator(net, model=model, progress_bar=False)
    return nengo_jax.Simulator(
        net,
        model=model,
        minibatch_size=None if minibatch == 1 else minibatch,
        progress_bar=False,
    )


def timed_run(sim, steps: int) -> float:
    """Seconds of one ``sim.run_steps(steps)`` (NengoDL's: timed in its worker)."""
    if hasattr(sim, "timed_run"):
        return sim.timed_run(steps)
    start = time.perf_counter()
    sim.run_steps(steps, progress_bar=False)
    return time.perf_counter() - start


def time_runs(sim, steps: int, repeats: int) -> tuple[float, float]:
    """Seconds of the first ``run_steps(steps)`` and the median of ``repeats`` more."""
    first_s = timed_run(sim, steps)
    return first_s, statistics.median(timed_run(sim, steps) for _ in range(repeats))


def short_error(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    message = lines[0] if lines else ""
    message = message if len(message) <= 90 else message[:87] + "..."
    return f"{type(e).__name__}: {message}".replace("|", "/")


def _failed(row: Row, e: BaseException) -> None:
    """Note ``e`` in ``row``: a missing builder must not end the whole suite."""
    traceback.print_exc()
    row.error = short_error(e)


def measure_together(
    rows: list, make, steps: int, repeats: int, bound=None, statistic="median"
) -> None:
    """Fill the times (or errors) of ``rows``, one per simulator and minibatch.

    ``make(row)`` builds a row's simulator. Each is built and run once
    (compiling), then the simulators take turns: every repeat runs each of them
    once, so that a change in the machine's speed during the benchmark (this
    VM's varies by tens of percent over minutes) affects all of them alike, and
    the speedups compare runs made side by side. ``statistic`` (a name in
    `STATISTICS`) makes the steady time of the repeats. With a `Bound`,
    nengo_jax rows at minibatch 32 or more get their step's traffic and
    bandwidth.
    """
    sims, runs = {}, {}  # row index -> simulator, steady run seconds
    try:
        for i, row in enumerate(rows):
            print(
                f"timing {row.network} {row.neuron_type} minibatch {row.minibatch} "
                f"on {row.simulator}...",
                file=sys.stderr,
                flush=True,
            )
            try:
                start = time.perf_counter()
                sims[i] = make(row)
                row.build_s = getattr(sims[i], "build_s", time.perf_counter() - start)
                row.first_s = timed_run(sims[i], steps)
                runs[i] = []
            except Exception as e:
                _failed(row, e)
                continue
            if bound is not None and row.simulator == "nengo_jax":
                if row.minibatch >= 32:
                    row.traffic = step_traffic(sims[i])
        for _ in range(repeats):
            for i in list(runs):
                try:
                    runs[i].append(timed_run(sims[i], steps))
                except Exception as e:
                    _failed(rows[i], e)
                    del runs[i]
        for i, times in runs.items():
            rows[i].steady_s = STATISTICS[statistic](times) * 1000 / steps
            if rows[i].traffic is not None:
                rows[i].bound(bound.dram, bound.at_size(rows[i].traffic.working_set))
    finally:
        for sim in sims.values():
            try:
                sim.close()
            except Exception:  # a dead NengoDL worker: its rows already say so
                traceback.print_exc()
        gc.collect()


def run_networks(args, report, worker=None, bound=None) -> None:
    """Time every requested network, adding rows to ``report`` as they finish.

    nengo runs once per network at minibatch 1; its row for a larger minibatch
    is derived from that run (see `report.NOTES`). NengoDL (in ``worker``) and
    nengo_jax run at every minibatch.
    """
    for name in args.networks:
        for neuron_name in args.neuron_types:
            bench = ALL_NETWORKS[name](
                NEURON_TYPES[neuron_name](), args.scale, args.seed
            )
            facts = dict(
                network=name, n_neurons=bench.n_neurons, neuron_type=neuron_name
            )

            def make(row, bench=bench, neuron_name=neuron_name):
                if row.simulator == "nengo_dl":
                    return worker.simulator(
                        network=row.network,
                        neuron_type=neuron_name,
                        scale=args.scale,
                        seed=args.seed,
                        minibatch=row.minibatch,
                    )
                return make_simulator(row.simulator, bench.net, row.minibatch)

            ref = None
            rows = []
            if "nengo" in args.simulators:
                ref = Row(**facts, minibatch=1, simulator="nengo")
                rows.append(ref)
            for minibatch in args.minibatch:
                rows += [
                    Row(**facts, minibatch=minibatch, simulator=simulator)
                    for simulator in ("nengo_dl", "nengo_jax")
                    if simulator in args.simulators
                ]
            measure_together(
                rows, make, args.steps, args.repeats, bound, args.statistic
            )
            dl_rows = {r.minibatch: r for r in rows if r.simulator == "nengo_dl"}
            derived = set()  # minibatch sizes whose nengo xN row is in
            for row in rows:
                if row is ref:
                    report.add(row)
                    continue
                if ref is not None and row.minibatch > 1:
                    if row.minibatch not in derived:
                        report.add(sequential_runs(ref, row.minibatch))
                    derived.add(row.minibatch)
                if ref is not None and None not in (ref.steady_s, row.steady_s):
                    row.speedup = ref.steady_s * row.minibatch / row.steady_s
                dl = dl_rows.get(row.minibatch)
                if row.simulator == "nengo_jax" and dl is not None:
                    if None not in (dl.steady_s, row.steady_s):
                        row.speedup_dl = dl.steady_s / row.steady_s
                report.add(row)


def sequential_runs(ref: Row, minibatch: int) -> Row:
    """The nengo row for ``minibatch`` sequential runs of the measured ``ref``."""
    return Row(
        network=ref.network,
        n_neurons=ref.n_neurons,
        neuron_type=ref.neuron_type,
        minibatch=minibatch,
        simulator=f"nengo x{minibatch}",
        steady_s=None if ref.steady_s is None else ref.steady_s * minibatch,
        derived=True,
        error=ref.error,
    )


def run_step_loop(args, report) -> None:
    """Time ``sim.step()`` in a Python loop on the tutorial network."""
    net, _ = step_loop_network(args.seed)
    ref_ms = None
    # (NengoDL's worker builds only the named networks: not this one)
    for simulator in (s for s in args.simulators if s != "nengo_dl"):
        entry = {"simulator": simulator}
        try:
            start = time.perf_counter()
            sim = make_simulator(simulator, net, 1)
            entry["build_s"] = time.perf_counter() - start
            try:
                start = time.perf_counter()
                sim.step()
                entry["first_s"] = time.perf_counter() - start
                for _ in range(args.step_loop_warmup):
                    sim.step()
                start = time.perf_counter()
                for _ in range(args.step_loop_calls):
                    sim.step()
                entry["mean_ms"] = (
                    (time.perf_counter() - start) * 1000 / args.step_loop_calls
                )
            finally:
                sim.close()
        except Exception as e:
            traceback.print_exc()
            entry["error"] = short_error(e)
        if simulator == "nengo":
            ref_ms = entry.get("mean_ms")
        elif ref_ms is not None and "mean_ms" in entry:
            entry["speedup"] = ref_ms / entry["mean_ms"]
        report.add_step(entry)
        gc.collect()


@dataclass
class OptimizerRow:
    """One line of the optimizer table; times in seconds."""

    network: str
    n_neurons: int
    neuron_type: str
    planner: str
    operators: int | None = None
    simplified: int | None = None
    merged: int | None = None
    optimizer_s: float | None = None
    build_s: float | None = None
    compile_s: float | None = None
    steady_s: float | None = None  # per 1000 steps
    speedup: float | None = None  # noop planner steady time / this one's
    error: str | None = None

    def line(self) -> str:
        counts = (self.operators, self.simplified, self.merged)
        cells = [
            self.network,
            str(self.n_neurons),
            self.neuron_type,
            self.planner,
            *("-" if n is None else str(n) for n in counts),
            fmt(self.optimizer_s, ".2f"),
            fmt(self.build_s, ".2f"),
            fmt(self.compile_s, ".2f"),
            fmt(self.steady_s, ".3f") if self.error is None else self.error,
            fmt(self.speedup, ".2f"),
        ]
        return "| " + " | ".join(cells) + " |"


OPTIMIZER_NOTES = """\
Notes:

- *built*, *simplified*, *merged*: operators as Nengo built them, after
  nengo_jax's simplifications, and after merging (the groups the program runs
  each step; the noop planner merges nothing). See `sim.optimizer_report`.
- *optimizer s*: simplifying plus merging, part of *build s* (the Simulator
  constructor, Nengo's builder included, decoder cache off).
- *compile s*: the first `run_steps(steps)` minus the median later one, i.e.
  tracing and XLA compilation.
- *steady s/1000 steps*: the median of the timed repeats, per 1000 steps, at
  minibatch 1; *vs noop*: the noop planner's steady time over this one's.
"""


class SuiteReport(Report):
    """`Report` with the optimizer table after the others."""

    def __init__(self, header, out, args):
        super().__init__(header, out, args)
        self.optimizer_rows: list[OptimizerRow] = []

    def add_optimizer(self, row: OptimizerRow) -> None:
        self.optimizer_rows.append(row)
        print(row.line(), file=sys.stderr, flush=True)
        self.write()

    def markdown(self) -> str:
        text = super().markdown()
        if not self.optimizer_rows:
            return text
        lines = [
            "",
            "## Graph optimizer",
            "",
            "| network | neurons | neuron type | planner | built | simplified "
            "| merged | optimizer s | build s | compile s | steady s/1000 steps "
            "| vs noop |",
            "|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        lines += [r.line() for r in self.optimizer_rows]
        lines += ["", OPTIMIZER_NOTES.rstrip()]
        return text + "\n".join(lines) + "\n"


def time_optimizer(row: OptimizerRow, net, planner, steps: int, repeats: int):
    """Fill ``row`` from a nengo_jax Simulator of ``net`` with ``planner``."""
    with net:
        nengo_jax.configure_settings(planner=planner)
    start = time.perf_counter()
    sim = make_simulator("nengo_jax", net, 1)
    try:
        row.build_s = time.perf_counter() - start
        report = sim.optimizer_report
        row.operators, row.simplified, row.merged = (
            report.operators,
            report.simplified,
            report.merged,
        )
        row.optimizer_s = report.simplify_s + report.merge_s
        first_s, steady = time_runs(sim, steps, repeats)
    finally:
        sim.close()
    row.compile_s = max(0.0, first_s - steady)
    row.steady_s = steady * 1000 / steps


def run_optimizer(args, report) -> None:
    """The optimizer table: each network with the default and the noop planner."""
    for name in args.optimizer:
        for neuron_name in args.neuron_types:
            bench = ALL_NETWORKS[name](
                NEURON_TYPES[neuron_name](), args.scale, args.seed
            )
            rows = {}
            for label, planner in (("default", None), ("noop", noop_planner)):
                row = rows[label] = OptimizerRow(
                    name, bench.n_neurons, neuron_name, label
                )
                built = rows["default"].operators
                if label == "noop" and (built or 0) > args.noop_max_operators:
                    row.operators = row.simplified = row.merged = built
                    row.error = f"skipped: over {args.noop_max_operators} operators"
                    continue
                print(
                    f"optimizer: {name} {neuron_name} with the {label} planner...",
                    file=sys.stderr,
                    flush=True,
                )
                try:
                    time_optimizer(row, bench.net, planner, args.steps, args.repeats)
                except Exception as e:
                    traceback.print_exc()
                    row.error = short_error(e)
                gc.collect()
            noop, default = rows["noop"].steady_s, rows["default"].steady_s
            if None not in (noop, default):
                rows["default"].speedup = noop / default
                rows["noop"].speedup = 1.0
            report.add_optimizer(rows["default"])
            report.add_optimizer(rows["noop"])


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--networks",
        nargs="*",
        choices=list(ALL_NETWORKS),
        default=list(NETWORKS),
        help="networks to time; give the flag with no names to time none",
    )
    parser.add_argument(
        "--optimizer",
        nargs="*",
        choices=list(ALL_NETWORKS),
        help="also report the graph optimizer (operators before and after "
        "simplification and merging; build, compile and steady times, default "
        "planner beside noop_planner) on these networks; with no names: "
        + ", ".join(OPTIMIZER_NETWORKS),
    )
    parser.add_argument(
        "--noop-max-operators",
        type=int,
        default=10_000,
        help="skip the noop planner on networks with more operators than this "
        "(compiling each operator on its own takes minutes per thousand)",
    )
    parser.add_argument(
        "--neuron-types", nargs="+", choices=list(NEURON_TYPES), default=["lif", "relu"]
    )
    parser.add_argument("--minibatch", nargs="+", type=int, default=[1, 32])
    parser.add_argument(
        "--simulators", nargs="+", choices=SIMULATORS, default=list(SIMULATORS)
    )
    parser.add_argument("--steps", type=int, default=1000, help="steps per run")
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed runs after the first"
    )
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="multiplies network widths (dimensions; neurons per chain ensemble)",
    )
    parser.add_argument(
        "--statistic",
        choices=list(STATISTICS),
        default="median",
        help="steady time of the network table's repeats: their median, or the "
        "fastest (on a loaded machine, the least disturbed)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--step-loop",
        action="store_true",
        help="also time sim.step() in a Python loop on the tutorial network",
    )
    parser.add_argument("--step-loop-calls", type=int, default=1000)
    parser.add_argument("--step-loop-warmup", type=int, default=20)
    parser.add_argument(
        "--oracle",
        help="NengoDL 3.6's venv (or its python), as ../shared/tools/nengo-dl-oracle "
        "builds it; by default the first of $NENGO_DL_ORACLE, "
        "${TMPDIR:-/tmp}/nengo-dl-oracle, /tmp/nengo-dl-oracle that imports "
        "nengo_dl (none: no NengoDL column)",
    )
    parser.add_argument(
        "--no-bound",
        action="store_true",
        help="leave out the memory-bandwidth columns (and the copy kernel timings)",
    )
    parser.add_argument("--out", help="also write the Markdown report to this file")
    args = parser.parse_args(argv)
    if min(args.minibatch) < 1 or args.steps < 1 or args.repeats < 1:
        parser.error("--minibatch, --steps and --repeats must be positive")
    if args.optimizer is not None and not args.optimizer:
        args.optimizer = list(OPTIMIZER_NETWORKS)
    return args


def start_worker(args, header: list) -> Worker | None:
    """NengoDL's worker, if it is wanted and found; notes which in ``header``."""
    if "nengo_dl" not in args.simulators or not args.networks:
        return None
    try:
        python = find_oracle(args.oracle)
    except ValueError as e:  # an --oracle that does not import nengo_dl
        raise SystemExit(f"error: {e}") from None
    if python is None:
        header.append(
            "- NengoDL: no oracle venv found (looked for "
            + ", ".join(oracle_candidates())
            + "); build it with ../shared/tools/nengo-dl-oracle"
        )
        args.simulators = [s for s in args.simulators if s != "nengo_dl"]
        return None
    worker = Worker(python)
    versions = worker.versions()
    header.append(
        f"- NengoDL {versions['nengo_dl']} with TensorFlow {versions['tensorflow']} "
        f"(CPU), in a worker process of `{python}`"
    )
    return worker


def measure_bound(args, header: list) -> Bound | None:
    """The copy bandwidths, measured now; noted in ``header``."""
    if args.no_bound or "nengo_jax" not in args.simulators or not args.networks:
        return None
    bound = Bound()
    caches = ", ".join(f"{k} {v}" for k, v in cache_sizes().items())
    header.append(
        f"- Copy bandwidth (jitted JAX copy of {bound.dram_bytes >> 20} MiB, best "
        f"of 5, read + written): {bound.dram / 1e9:.1f} GB/s; caches: {caches}"
    )
    return bound


def main(argv=None) -> None:
    args = parse_args(argv)
    header = header_lines(args)
    start = time.perf_counter()
    worker = start_worker(args, header)
    bound = measure_bound(args, header)
    report = SuiteReport(header, args.out, args)
    try:
        run_networks(args, report, worker, bound)
    finally:
        if worker is not None:
            worker.close()
    if args.step_loop:
        run_step_loop(args, report)
    if args.optimizer:
        run_optimizer(args, report)
    report.header = report.header + [
        f"- Total benchmark time: {time.perf_counter() - start:.0f} s; load average "
        "at end: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())
    ]
    report.write()
    print(report.markdown())


if __name__ == "__main__":
    main()
