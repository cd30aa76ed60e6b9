#!/usr/bin/env python3
"""Set up a virtual environment for nengo-jax and run the example, the tests or
the documentation build.

    python3 tools/dev.py example    # set up .venv-examples, then run the main
                                    # example (examples/from_nengo.py)
    python3 tools/dev.py example NAME [ARGS]  # run examples/NAME.py instead
    python3 tools/dev.py test       # set up .venv, then run our tests, the docs
                                    # build and its code, Nengo's suite, then our
                                    # tests on an older instruction set
    python3 tools/dev.py docs       # set up .venv, then build docs/_build/html and
                                    # run every code block of the pages

Needs only ``python3``: everything else is installed into a virtual
environment, reused on later calls while pyproject.toml is unchanged. The
examples get one of their own, ``.venv-examples``, with the package and what
the examples import (its ``examples`` extra) and nothing of the test and docs
tooling; the tests and the docs share ``.venv``. Extra arguments go to pytest,
or to the example.
"""

import hashlib
import os
import pathlib
import subprocess
import sys
import venv

ROOT = pathlib.Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
EXAMPLES_VENV = ROOT / ".venv-examples"
EXAMPLES = ROOT / "examples"


def python(venv_dir):
    return venv_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


PYTHON = python(VENV)


def setup(venv_dir=VENV, extras="tests,docs"):
    """Create ``venv_dir`` and install the package (editable) with ``extras``,
    once: a stamp in the environment records the pyproject.toml it was made
    from, and a changed pyproject.toml installs again."""
    interpreter = python(venv_dir)
    stamp = venv_dir / ".nengo-jax-installed"
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest and interpreter.exists():
        return
    if not interpreter.exists():
        print(f"Creating virtual environment in {venv_dir.name}", flush=True)
        venv.create(venv_dir, with_pip=True)
    pip = [str(interpreter), "-m", "pip", "install"]
    pip += ["--disable-pip-version-check", "-q"]
    subprocess.run(pip + ["--upgrade", "pip"], check=True)
    subprocess.run(pip + ["-e", f"{ROOT}[{extras}]"], check=True)
    stamp.write_text(digest)


def run_example(args):
    """Run ``examples/NAME.py`` (``args[0]``, from_nengo by default) with the
    rest of ``args``, in ``.venv-examples``."""
    names = sorted(path.stem for path in EXAMPLES.glob("*.py"))
    name = "from_nengo"
    if args and not args[0].startswith("-"):
        name, args = args[0].removesuffix(".py"), args[1:]
        if name not in names:
            print(f"No example {name!r}: expected one of {', '.join(names)}")
            return 2
    setup(EXAMPLES_VENV, "examples")
    return subprocess.run(
        [str(python(EXAMPLES_VENV)), str(EXAMPLES / f"{name}.py")] + args,
        cwd=ROOT,
        env=dict(os.environ, MPLBACKEND="Agg"),
    ).returncode


def nengo_site_packages():
    out = subprocess.run(
        [
            str(PYTHON),
            "-c",
            "import nengo, pathlib; print(pathlib.Path(nengo.__file__).parent.parent)",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


#: The instruction set of the second run of our tests: XLA's results differ in
#: their last bits from one CPU to another, and a test must pass on any of them.
REDUCED_ISA = "SSE4_2"


def test_env():
    """The environment of the tests and the docs build: a HOME of their own
    (Nengo's decoder cache, Keras's config) and no display."""
    return dict(os.environ, HOME=str(ROOT / ".nengo-test-home"), MPLBACKEND="Agg")


def build_docs():
    """Build the HTML pages with warnings as errors, then run every code block
    of the pages (and the doctests of the docstrings) with Sphinx's doctest
    builder; returns the worse exit code."""
    out = ROOT / "docs" / "_build"
    sphinx = [str(PYTHON), "-m", "sphinx", "-q", "-W", "--keep-going"]
    sphinx += ["-d", str(out / "doctrees")]
    env = test_env()
    print("Building the documentation (docs/_build/html)", flush=True)
    # -E: read every page again, so that docstring changes always show
    html = subprocess.run(
        sphinx + ["-E", "-b", "html", "docs", str(out / "html")], cwd=ROOT, env=env
    )
    print("Running the code of the documentation", flush=True)
    doctest = subprocess.run(
        sphinx + ["-b", "doctest", "docs", str(out / "doctest")], cwd=ROOT, env=env
    )
    print(
        f"docs html exit code {html.returncode}; docs doctest exit code "
        f"{doctest.returncode} (report: docs/_build/doctest/output.txt)",
        flush=True,
    )
    return html.returncode or doctest.returncode


def run_tests(args):
    """Our tests, the docs build and its code, Nengo's suite against
    nengo_jax.Simulator, then our tests again with XLA limited to an older
    instruction set (no AVX, no FMA)."""
    env = test_env()
    pytest = [str(PYTHON), "-m", "pytest", "-p", "no:cacheprovider", "-n", "2", "-rfEs"]
    ours = subprocess.run(pytest + ["tests"] + args, cwd=ROOT, env=env)
    docs = build_docs()
    suite = subprocess.run(
        pytest
        + [
            "--pyargs",
            "nengo",
            f"--rootdir={nengo_site_packages()}",
            "-c",
            str(ROOT / "pyproject.toml"),
        ]
        + args,
        cwd=ROOT,
        env=env,
    )
    flags = f"{env.get('XLA_FLAGS', '')} --xla_cpu_max_isa={REDUCED_ISA}".strip()
    print(f"Our tests again, with XLA_FLAGS={flags}", flush=True)
    reduced = subprocess.run(
        pytest + ["tests"] + args, cwd=ROOT, env=dict(env, XLA_FLAGS=flags)
    )
    print(
        f"our tests exit code {ours.returncode}; docs exit code {docs}; Nengo "
        f"suite exit code {suite.returncode}; our tests on {REDUCED_ISA} exit code "
        f"{reduced.returncode}",
        flush=True,
    )
    return ours.returncode or docs or suite.returncode or reduced.returncode


def main(argv):
    if not argv or argv[0] not in ("example", "test", "docs"):
        print(__doc__)
        return 2
    if argv[0] == "example":
        return run_example(argv[1:])
    setup()
    if argv[0] == "docs":
        return build_docs()
    return run_tests(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
