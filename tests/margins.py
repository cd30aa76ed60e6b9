"""A pytest plugin that records how close each check of our tests came to failing.

Loaded with ``-p tests.margins`` and given ``--margins=FILE``, it appends one JSON
line per check to ``FILE`` (safe with pytest-xdist's workers):

- ``allclose``: `numpy.testing.assert_allclose` and `numpy.allclose` (our
  ``nengo_jax.testing.assert_allclose`` included), with ``ratio``, the largest
  ``|actual - desired| / (atol + rtol * |desired|)``: at most 1 passes
  ``assert_allclose``; ``assert not np.allclose(...)`` needs it above 1;
- ``approx``: ``pytest.approx`` comparisons, with ``ratio`` the difference over
  approx's tolerance;
- ``compare``: every passing ``assert`` (through pytest's assertion-pass hook),
  with its explanation; for a comparison of two numbers (``a < b``), ``gap`` is
  their difference relative to the larger.

Checks are keyed by test and by the line in ``tests/`` that made them, so that
``tools/margins.py`` can set the records of runs on several CPUs side by side.
"""

from __future__ import annotations

import ast
import json
import operator
import os
import pathlib
import re
import sys

import numpy as np
import pytest

TESTS = pathlib.Path(__file__).resolve().parent
_file = None
_test = None


def pytest_addoption(parser):
    parser.addoption(
        "--margins",
        metavar="FILE",
        help="append a JSON line per check of a test, with its margin, to FILE",
    )


def pytest_configure(config):
    global _file
    path = config.getoption("--margins")
    if not path:
        return
    if not config.getini("enable_assertion_pass_hook"):
        # pytest rewrites asserts to call the hook only with this set, and reuses
        # rewritten modules it cached without it: tools/margins.py sets both
        raise pytest.UsageError(
            "--margins needs -o enable_assertion_pass_hook=true (and a fresh "
            "PYTHONPYCACHEPREFIX, so that no module rewritten without it is reused)"
        )
    _file = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    _patch_numpy()
    _patch_approx()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    global _test
    _test = item.nodeid
    try:
        yield
    finally:
        _test = None


def pytest_assertion_pass(item, lineno, orig, expl):
    # pytest also rewrites the asserts of plugins: keep only those of our tests
    frame = sys._getframe(1)
    while frame is not None and _internal(frame.f_code.co_filename):
        frame = frame.f_back
    if frame is None or TESTS not in pathlib.Path(frame.f_code.co_filename).parents:
        return
    first = expl.splitlines()[0] if expl else ""
    record(
        "compare",
        where=f"{_relative(frame.f_code.co_filename)}:{lineno}",
        orig=orig,
        expl=first,
        gap=_gap(first),
    )


def _internal(filename):
    return any(part in filename for part in ("pluggy", "_pytest")) or (
        filename == __file__
    )


def record(kind, where=None, **values):
    if _file is None or _test is None:
        return
    line = dict(test=_test, kind=kind, where=where or _caller(), **values)
    os.write(_file, (json.dumps(line, default=float) + "\n").encode())


def _caller():
    frame = sys._getframe(2)
    while frame is not None:
        path = pathlib.Path(frame.f_code.co_filename)
        if TESTS in path.parents and path.name != "margins.py":
            return f"{_relative(path)}:{frame.f_lineno}"
        frame = frame.f_back
    return "?"


def _relative(path):
    return str(pathlib.Path(path).resolve().relative_to(TESTS.parent))


def allclose_ratio(actual, desired, rtol, atol, equal_nan=True):
    """The largest ``|actual - desired| / (atol + rtol * |desired|)``."""
    a, d = np.broadcast_arrays(np.asarray(actual), np.asarray(desired))
    if a.size == 0 or a.dtype.kind not in "biufc" or d.dtype.kind not in "biufc":
        return None
    a, d = a.astype(np.complex128).ravel(), d.astype(np.complex128).ravel()
    both_nan = np.isnan(a) & np.isnan(d)
    same = (a == d) | (both_nan if equal_nan else False)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.abs(a - d) / (atol + rtol * np.abs(d))
    ratio = np.where(same, 0.0, np.nan_to_num(ratio, nan=np.inf))
    return float(ratio.max())


def _patch_numpy():
    assert_allclose, allclose = np.testing.assert_allclose, np.allclose

    def recorded_assert_allclose(actual, desired, rtol=1e-7, atol=0, **kwargs):
        _try_record(actual, desired, rtol, atol, kwargs.get("equal_nan", True))
        return assert_allclose(actual, desired, rtol=rtol, atol=atol, **kwargs)

    def recorded_allclose(a, b, rtol=1e-5, atol=1e-8, equal_nan=False):
        _try_record(a, b, rtol, atol, equal_nan, kind="allclose-bool")
        return allclose(a, b, rtol=rtol, atol=atol, equal_nan=equal_nan)

    np.testing.assert_allclose = recorded_assert_allclose
    np.allclose = recorded_allclose


def _try_record(actual, desired, rtol, atol, equal_nan, kind="allclose"):
    try:
        ratio = allclose_ratio(actual, desired, rtol, atol, equal_nan)
    except Exception:  # the recorder never changes a test's outcome
        return
    if ratio is not None:
        record(kind, ratio=ratio, rtol=rtol, atol=atol)


def _patch_approx():
    from _pytest.python_api import ApproxScalar

    eq = ApproxScalar.__eq__

    def recorded_eq(self, actual):
        try:
            tolerance = float(self.tolerance)
            difference = abs(complex(actual) - complex(self.expected))
            ratio = difference / tolerance if tolerance else float(difference > 0)
            record("approx", ratio=ratio if ratio == ratio else float("inf"))
        except Exception:
            pass
        return eq(self, actual)

    ApproxScalar.__eq__ = recorded_eq


_COMPARISONS = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}
_ARITHMETIC = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
}


def _gap(explanation):
    """For ``a < b`` (and <=, >, >=) between numbers: ``|b - a| / max(|a|, |b|)``."""
    text = re.sub(r"np\.(?:float|int)\d+\(([^()]*)\)", r"\1", explanation)
    text = text.removeprefix("assert ")
    try:
        tree = ast.parse(text, mode="eval").body
    except SyntaxError:
        return None
    if not (
        isinstance(tree, ast.Compare)
        and len(tree.ops) == 1
        and type(tree.ops[0]) in _COMPARISONS
    ):
        return None
    try:
        a, b = _number(tree.left), _number(tree.comparators[0])
    except (TypeError, ValueError, ZeroDivisionError, OverflowError):
        return None
    scale = max(abs(a), abs(b))
    return abs(b - a) / scale if scale else 0.0


def _number(node):
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return float(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_number(node.operand)
    if isinstance(node, ast.BinOp) and type(node.op) in _ARITHMETIC:
        return _ARITHMETIC[type(node.op)](_number(node.left), _number(node.right))
    raise ValueError(ast.dump(node))
