#!/usr/bin/env python3
"""Set up a virtual environment for nengo-jax and run the example or the tests.

    python3 tools/dev.py example    # set up, then run the main example
    python3 tools/dev.py test       # set up, then run our tests and Nengo's suite,
                                    # then our tests on an older instruction set

Needs only ``python3``: everything else is installed into ``.venv`` (reused on
later calls while pyproject.toml is unchanged). Extra arguments go to pytest.
"""

import hashlib
import os
import pathlib
import subprocess
import sys
import venv

ROOT = pathlib.Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
PYTHON = VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def setup():
    """Create ``.venv`` and install the package with its test extras (once)."""
    stamp = VENV / ".nengo-jax-installed"
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest and PYTHON.exists():
        return
    if not PYTHON.exists():
        print("Creating virtual environment in .venv", flush=True)
        venv.create(VENV, with_pip=True)
    pip = [str(PYTHON), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run(pip + ["--upgrade", "pip"], check=True)
    subprocess.run(pip + ["-e", f"{ROOT}[tests]"], check=True)
    stamp.write_text(digest)


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


def run_tests(args):
    """Our tests, Nengo's suite against nengo_jax.Simulator, then our tests again
    with XLA limited to an older instruction set (no AVX, no FMA)."""
    env = dict(os.environ, HOME=str(ROOT / ".nengo-test-home"), MPLBACKEND="Agg")
    pytest = [str(PYTHON), "-m", "pytest", "-p", "no:cacheprovider", "-n", "2", "-rfEs"]
    ours = subprocess.run(pytest + ["tests"] + args, cwd=ROOT, env=env)
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
        f"our tests exit code {ours.returncode}; Nengo suite exit code "
        f"{suite.returncode}; our tests on {REDUCED_ISA} exit code "
        f"{reduced.returncode}",
        flush=True,
    )
    return ours.returncode or suite.returncode or reduced.returncode


def main(argv):
    if not argv or argv[0] not in ("example", "test"):
        print(__doc__)
        return 2
    setup()
    if argv[0] == "example":
        env = dict(os.environ, MPLBACKEND="Agg")
        return subprocess.run(
            [str(PYTHON), str(ROOT / "examples" / "from_nengo.py")] + argv[1:],
            cwd=ROOT,
            env=env,
        ).returncode
    return run_tests(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
