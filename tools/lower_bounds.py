#!/usr/bin/env python3
"""Test nengo-jax with the oldest versions of its dependencies that it allows.

    python3 tools/lower_bounds.py                  # python3.10, the oldest Python
    python3 tools/lower_bounds.py --python /path/to/python3.10 -k fit

pip has no "lowest versions" resolution, so this pins every runtime dependency
of pyproject.toml to its lower bound (``jax>=0.4.36`` becomes ``jax==0.4.36``),
installs the package with those pins into ``.venv-lower-bounds`` (made with the
oldest Python that ``requires-python`` allows; reused while the pins are
unchanged), adds the pytest plugins of the ``tests`` extra (their newest
versions), and runs a smoke subset of our tests: run, fit, interrupted calls,
TensorNode and the converter. Extra arguments go to pytest. Needs only ``python3``.
"""

import argparse
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv-lower-bounds"
PYTHON = VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")

#: Our tests of run, fit (and interrupted calls), TensorNode and the converter.
SMOKE_TESTS = [
    "tests/simulator/test_simulator.py",
    "tests/simulator/test_training.py",
    "tests/simulator/test_runtime.py",
    "tests/test_tensor_node.py",
    "tests/converter",
]

#: Prints the environment's Python and the versions of the packages named.
SHOW_VERSIONS = """import sys, importlib.metadata as m
print(", ".join([f"Python {sys.version.split()[0]}"]
                + [f"{d} {m.version(d)}" for d in sys.argv[1:]]))"""


def toml_strings(text, key):
    """The strings of the array ``key = [...]`` in pyproject.toml's ``text``.

    (A plain reader, as ``tomllib`` is not in Python 3.10.)
    """
    match = re.search(rf"^{re.escape(key)} = \[(.*?)^\]", text, re.M | re.S)
    if match is None:
        sys.exit(f"pyproject.toml has no array {key!r}")
    lines = (line.split("#")[0] for line in match.group(1).splitlines())
    return [s for line in lines for s in re.findall(r'"([^"]+)"', line)]


def lower_bound_pins(requirements):
    """``name==X`` for each requirement ``name>=X`` (all must have one)."""
    pins = []
    for requirement in requirements:
        name = re.match(r"[A-Za-z0-9_.-]+", requirement).group()
        bound = re.search(r">=\s*([^,;\s]+)", requirement)
        if bound is None:
            sys.exit(f"Dependency {requirement!r} has no lower bound (>=)")
        pins.append(f"{name}=={bound.group(1)}")
    return pins


def oldest_python(text):
    """The oldest Python that ``requires-python`` allows, as ``python3.X``."""
    match = re.search(r'^requires-python = ">=\s*(\d+)\.(\d+)', text, re.M)
    if match is None:
        sys.exit("pyproject.toml has no requires-python lower bound")
    return f"python{match.group(1)}.{match.group(2)}"


def setup(python, pins, plugins):
    """Make ``.venv-lower-bounds`` with ``pins`` installed (once per pin set)."""
    stamp = VENV / ".lower-bounds"
    wanted = "\n".join([python, *pins, *plugins]) + "\n"
    if PYTHON.exists() and stamp.exists() and stamp.read_text() == wanted:
        return
    if VENV.exists():
        shutil.rmtree(VENV)
    print(f"Creating {VENV.name} with {python}", flush=True)
    subprocess.run([python, "-m", "venv", str(VENV)], check=True)
    constraints = VENV / "constraints.txt"
    constraints.write_text("\n".join(pins) + "\n")
    pip = [str(PYTHON), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run(pip + ["--upgrade", "pip"], check=True)
    print("Installing nengo-jax with " + ", ".join(pins), flush=True)
    subprocess.run(pip + ["-c", str(constraints), str(ROOT), *plugins], check=True)
    stamp.write_text(wanted)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[-1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--python",
        help="the interpreter of the virtual environment "
        "(default: the oldest that requires-python allows, found on PATH)",
    )
    args, pytest_args = parser.parse_known_args()
    text = (ROOT / "pyproject.toml").read_text()
    python = args.python or oldest_python(text)
    try:
        subprocess.run([python, "-c", ""], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError):
        sys.exit(f"{python} does not run; give an interpreter with --python")
    pins = lower_bound_pins(toml_strings(text, "dependencies"))
    plugins = [r for r in toml_strings(text, "tests") if r.startswith("pytest")]

    start = time.monotonic()
    setup(python, pins, plugins)
    names = [pin.split("==")[0] for pin in pins] + ["jaxlib"]
    subprocess.run([str(PYTHON), "-c", SHOW_VERSIONS, *names], check=True)
    tests = subprocess.run(
        [str(PYTHON), "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        + SMOKE_TESTS
        + pytest_args,
        cwd=ROOT,
    )
    print(f"Lower-bounds check took {time.monotonic() - start:.0f} s", flush=True)
    return tests.returncode


if __name__ == "__main__":
    sys.exit(main())
