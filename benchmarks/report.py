"""The Markdown report of `run.py`: machine facts, the network table, notes."""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import sys
from dataclasses import dataclass
from typing import Any

import jax
import nengo
import numpy as np

import nengo_jax


@dataclass
class Row:
    """One line of the network table; times in seconds, None where not measured."""

    network: str
    n_neurons: int
    neuron_type: str
    minibatch: int
    simulator: str
    build_s: float | None = None
    first_s: float | None = None
    steady_s: float | None = None  # per 1000 steps
    speedup: float | None = None  # over nengo
    speedup_dl: float | None = None  # over NengoDL, same minibatch
    derived: bool = False
    error: str | None = None
    traffic: Any = None  # bandwidth.StepTraffic, for the bandwidth columns
    gbps: float | None = None  # bytes moved per second (the traffic model's)
    of_dram: float | None = None  # that over the DRAM copy bandwidth
    of_cache: float | None = None  # over the copy bandwidth at the working set
    gflops: float | None = None

    def bound(self, dram: float, cache: float) -> None:
        """Fill the bandwidth columns from ``traffic`` and the steady time,
        given the copy bandwidths (bytes/s) from DRAM and at the working set."""
        seconds = self.steady_s / 1000
        self.gbps = self.traffic.bytes_per_step / seconds / 1e9
        self.of_dram = self.gbps * 1e9 / dram
        self.of_cache = self.gbps * 1e9 / cache
        self.gflops = self.traffic.flops / seconds / 1e9


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_lines(title: str) -> list[str]:
    """A report's title, the command that made it, the machine and the versions."""
    import keras

    command = shlex.join(getattr(sys, "orig_argv", [sys.executable] + sys.argv))
    return [
        f"# {title}, {datetime.date.today().isoformat()}",
        "",
        f"- Command: `{command}`",
        f"- CPU: {cpu_model()}; {os.cpu_count()} cores "
        f"({len(os.sched_getaffinity(0))} usable by this process)",
        f"- Python {platform.python_version()}, nengo {nengo.__version__}, "
        f"jax {jax.__version__}, jaxlib {jax.lib.__version__}, "
        f"keras {keras.__version__}, numpy {np.__version__}, "
        f"nengo_jax {nengo_jax.__version__}",
        f"- JAX backend: {jax.default_backend()} ({jax.devices()[0].device_kind})",
        "- Load average at start (1, 5, 15 min): "
        + ", ".join(f"{x:.2f}" for x in os.getloadavg()),
        f"- XLA_FLAGS: `{os.environ.get('XLA_FLAGS', '')}`",
    ]


def header_lines(args: argparse.Namespace) -> list[str]:
    lines = machine_lines("nengo-jax benchmarks")
    lines.insert(
        -2,
        f"- Settings: {args.steps} steps per run, {args.repeats} timed repeats "
        f"(steady time: their {getattr(args, 'statistic', 'median')}), "
        f"scale {args.scale:g}, dt 0.001, seed {args.seed}",
    )
    return lines


NOTES = """\
Notes:

- *build s*: the Simulator constructor (Nengo's builder, plus nengo_jax's layout
  and operator builders), with the decoder cache off for both simulators.
- *first run s*: the first `run_steps(steps)`; for nengo_jax it includes tracing
  and XLA compilation.
- *steady s/1000 steps*: the median (or with `--statistic min` the fastest) of
  the timed repeats after the first run, per 1000 steps. Probes are recorded
  in every run.
- `nengo.Simulator` has no minibatch: the *nengo xN* rows are N sequential runs,
  i.e. N times the measured minibatch-1 steady time (not measured separately).
- *vs nengo*: nengo steady time (times the minibatch size) over this row's
  steady time; above 1 means this row is faster. *vs NengoDL*: NengoDL's steady
  time at the same minibatch over nengo_jax's.
- NengoDL runs in its own process (its venv's TensorFlow on the same CPU),
  taking its turn in every repeat; its build includes TensorFlow's graph
  construction, and its first run TensorFlow's tracing.
- Bandwidth columns (nengo_jax, minibatch 32 and more; see `bandwidth.py`):
  *MB/step* is what a step must move at least (state read and written once,
  parameters read once, probed values written); *WS MB* the working set (each
  array once); *GB/s* MB/step over the steady time per step; *% DRAM* that over
  the copy bandwidth of an array far larger than the last-level cache; *%
  cache* over the copy bandwidth of an array of the working set's size (the
  fair bound when the working set fits in cache, as here); *GFLOP/s* the matrix
  products' flops (2 per multiply-add, neuron and synapse maths not counted)
  per second.
"""


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


class Report:
    """Collects rows, prints each as it arrives, and rewrites ``out`` each time."""

    def __init__(self, header: list[str], out: str | None, args: argparse.Namespace):
        self.header = header
        self.out = out
        self.step_calls = args.step_loop_calls
        self.step_warmup = args.step_loop_warmup
        self.rows: list[Row] = []
        self.steps: list[dict] = []

    def add(self, row: Row) -> None:
        self.rows.append(row)
        print(self._row_line(row), file=sys.stderr, flush=True)
        self.write()

    def add_step(self, entry: dict) -> None:
        self.steps.append(entry)
        print(self._step_line(entry), file=sys.stderr, flush=True)
        self.write()

    @staticmethod
    def _row_line(r: Row) -> str:
        if r.derived:
            build, first = "-", "-"
        else:
            build, first = fmt(r.build_s, ".2f"), fmt(r.first_s, ".3f")
        steady = fmt(r.steady_s, ".3f") + (" (derived)" if r.derived else "")
        cells = [
            r.network,
            str(r.n_neurons),
            r.neuron_type,
            str(r.minibatch),
            r.simulator,
            build,
            first,
            steady if r.error is None else r.error,
            fmt(r.speedup, ".2f"),
            fmt(r.speedup_dl, ".2f"),
        ]
        if r.traffic is not None:
            cells += [
                fmt(r.traffic.bytes_per_step / 1e6, ".2f"),
                fmt(r.traffic.working_set / 1e6, ".2f"),
                fmt(r.gbps, ".1f"),
                fmt(None if r.of_dram is None else 100 * r.of_dram, ".0f"),
                fmt(None if r.of_cache is None else 100 * r.of_cache, ".0f"),
                fmt(r.gflops, ".1f"),
            ]
        else:
            cells += ["-"] * 6
        return "| " + " | ".join(cells) + " |"

    @staticmethod
    def _step_line(e: dict) -> str:
        cells = [
            e["simulator"],
            fmt(e.get("build_s"), ".2f"),
            fmt(e.get("first_s"), ".3f"),
            e["error"] if "error" in e else fmt(e.get("mean_ms"), ".3f"),
            fmt(e.get("speedup"), ".2f"),
        ]
        return "| " + " | ".join(cells) + " |"

    def markdown(self) -> str:
        lines = list(self.header)
        if self.rows:
            lines += [
                "",
                "## Networks",
                "",
                "| network | neurons | neuron type | minibatch | simulator | build s "
                "| first run s | steady s/1000 steps | vs nengo | vs NengoDL "
                "| MB/step | WS MB | GB/s | % DRAM | % cache | GFLOP/s |",
                "|---|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"
                "---:|---:|---:|",
            ]
            lines += [self._row_line(r) for r in self.rows]
            lines += ["", NOTES.rstrip()]
        if self.steps:
            lines += [
                "",
                "## step() loop",
                "",
                "The seed tutorial network (WhiteSignal -> 20 LIF x^2 -> 20 LIF sin "
                "-> Node, two probes with synapse 0.01), `sim.step()` called "
                f"{self.step_calls} times in a Python loop after "
                f"{self.step_warmup} warm-up calls; *first step s* includes "
                "nengo_jax's compile.",
                "",
                "| simulator | build s | first step s | mean ms per step() | speedup |",
                "|---|---:|---:|---:|---:|",
            ]
            lines += [self._step_line(e) for e in self.steps]
        return "\n".join(lines) + "\n"

    def write(self) -> None:
        if self.out:
            os.makedirs(os.path.dirname(os.path.abspath(self.out)), exist_ok=True)
            with open(self.out, "w") as f:
                f.write(self.markdown())
