#!/usr/bin/env python3
"""Run our tests on several CPU instruction sets and print the checks near failing.

    .venv/bin/python tools/margins.py                    # SSE4_2, AVX, AVX2, default
    .venv/bin/python tools/margins.py --isa AVX2 default -- -k training

XLA compiles for the CPU it runs on, so the last bits of a result depend on the
vector instructions it may use (``XLA_FLAGS=--xla_cpu_max_isa=...``). Each run
records every check of every test with ``tests/margins.py``; the report lists,
for each check that comes near its limit on any instruction set, its margin on
each of them:

- ``allclose``/``approx``: the difference over the tolerance (fails above 1);
- ``allclose-bool``: the same, from ``np.allclose``, whose use decides the side
  (``assert not np.allclose`` fails below 1);
- ``compare``: for ``assert a < b`` between numbers, the relative gap
  ``|b - a| / max(|a|, |b|)`` (listed as ``1 - gap``).

It then lists the assertions whose numbers differ between instruction sets. The
records stay in ``--out`` (one JSON-lines file per instruction set).
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
ISAS = ("SSE4_2", "AVX", "AVX2", "default")
#: A number written with a fraction or an exponent (not an id or a count)
FLOAT = re.compile(r"(?<![\w.])-?\d+(?:\.\d+(?:e[-+]?\d+)?|e[-+]?\d+)")


def run(isa, out, pytest_args):
    """Our tests under one instruction set; returns pytest's exit code."""
    path = out / f"{isa}.jsonl"
    path.unlink(missing_ok=True)
    flags = os.environ.get("XLA_FLAGS", "")
    if isa != "default":
        flags = f"{flags} --xla_cpu_max_isa={isa}".strip()
    with tempfile.TemporaryDirectory() as pycache:
        env = dict(
            os.environ,
            XLA_FLAGS=flags,
            PYTHONPYCACHEPREFIX=pycache,
            HOME=str(ROOT / ".nengo-test-home"),
            MPLBACKEND="Agg",
        )
        command = [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-p",
            "tests.margins",
            f"--margins={path}",
            "-o",
            "enable_assertion_pass_hook=true",
            "-q",
            "-n",
            "2",
            "tests",
        ] + pytest_args
        start = time.perf_counter()
        code = subprocess.run(command, cwd=ROOT, env=env).returncode
    print(f"{isa}: pytest exit code {code} in {time.perf_counter() - start:.0f} s")
    return code


def load(path):
    """``(test, where, kind) -> [record, ...]`` in the order the checks ran."""
    checks = collections.defaultdict(list)
    if path.exists():
        for line in path.read_text().splitlines():
            r = json.loads(line)
            checks[r["test"], r["where"], r["kind"]].append(r)
    return checks


def is_near(kind, records, near, near_gap):
    """Whether a check came near failing; and a number to sort by (1: at it)."""
    if kind in ("allclose", "approx"):
        worst = max(r["ratio"] for r in records)
        return worst >= near, worst
    if kind == "allclose-bool":
        # whichever side the test takes, a ratio near 1 is near the limit
        worst = min(
            abs(math.log(r["ratio"])) if r["ratio"] > 0 else math.inf for r in records
        )
        return worst <= -math.log(near), math.exp(-worst)
    gaps = [r["gap"] for r in records if r.get("gap") is not None]
    if not gaps:
        return False, 0.0
    return min(gaps) <= near_gap, 1 - min(gaps)


def describe(kind, records):
    if kind in ("allclose", "approx", "allclose-bool"):
        ratios = [r["ratio"] for r in records]
        if kind == "allclose-bool":
            return "ratios " + ",".join(f"{x:.3g}" for x in ratios[:4])
        return f"ratio {max(ratios):.3g}"
    gaps = [r["gap"] for r in records if r.get("gap") is not None]
    return f"gap {min(gaps):.3g}" if gaps else "-"


def report(out, isas, near, near_gap):
    runs = {isa: load(out / f"{isa}.jsonl") for isa in isas}
    keys = sorted(set().union(*runs.values()))
    rows = []
    for key in keys:
        found = [
            is_near(key[2], runs[isa][key], near, near_gap)
            for isa in isas
            if key in runs[isa]
        ]
        if any(flag for flag, _ in found):
            rows.append((max(order for _, order in found), key))
    print(
        f"\nChecks near failing on some instruction set: a difference of {near:g} "
        f"of the tolerance or more, or numbers compared within {near_gap:.0%}\n"
    )
    for worst, (test, where, kind) in sorted(rows, reverse=True):
        print(f"{worst:6.3f}  {test}\n        {where} {kind}")
        for isa in isas:
            records = runs[isa].get((test, where, kind))
            if records:
                print(f"          {isa:8} {describe(kind, records)}")
    varying = []
    for key in keys:
        if key[2] != "compare":
            continue
        seen = {isa: [r["expl"] for r in runs[isa].get(key, [])] for isa in isas}
        # the numbers, not the order of a set or an object's address
        values = {tuple(FLOAT.findall(" ".join(v))) for v in seen.values()}
        if len(values) > 1:
            varying.append((key, seen))
    print(f"\nAssertions whose values differ between instruction sets: {len(varying)}")
    for (test, where, _), seen in varying:
        print(f"  {test}  {where}")
        for isa, expls in seen.items():
            print(f"      {isa:8} {expls[0][:150] if expls else '(not run)'}")
    return rows


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--isa", nargs="+", default=list(ISAS), choices=ISAS)
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / ".margins")
    parser.add_argument(
        "--near",
        type=float,
        default=0.5,
        help="report allclose/approx checks using this fraction of the tolerance",
    )
    parser.add_argument(
        "--near-gap",
        type=float,
        default=0.1,
        help="report comparisons of numbers within this relative gap",
    )
    parser.add_argument(
        "--report-only", action="store_true", help="report the records in --out"
    )
    args, pytest_args = parser.parse_known_args(argv)
    pytest_args = [a for a in pytest_args if a != "--"]
    args.out.mkdir(exist_ok=True)
    codes = {}
    if not args.report_only:
        codes = {isa: run(isa, args.out, pytest_args) for isa in args.isa}
    report(args.out, args.isa, args.near, args.near_gap)
    if codes:
        print("\npytest exit codes: " + ", ".join(f"{k} {v}" for k, v in codes.items()))
    return max(codes.values(), default=0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
