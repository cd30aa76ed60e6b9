"""Keras's backend when nengo_jax is imported: each case in a fresh Python.

Each script runs in a subprocess with a HOME of its own (no ``~/.keras``
unless the test writes one) and this checkout first on the path; where no
warning is expected, nengo_jax's warning about the backend is an error.
"""

import json
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent

RUN_AND_COMPILE = """
import nengo
import numpy as np
from nengo.exceptions import SimulationError

with nengo.Network(seed=0) as net:
    ens = nengo.Ensemble(10, 1)
    nengo.Connection(nengo.Node([0.5]), ens)
    probe = nengo.Probe(ens)
with nengo_jax.Simulator(net, progress_bar=False) as sim:
    sim.run_steps(5)
    print("ran", sim.data[probe].shape)
    try:
        sim.compile(keras.optimizers.SGD(0.1), loss={probe: "mse"})
    except SimulationError as err:
        print("compile refused:", err)
"""


def run_python(tmp_path, code, backend=None, keras_json=None, path=()):
    """Run ``code`` in a fresh Python; its completed process."""
    home = tmp_path / "home"
    home.mkdir()
    if keras_json is not None:
        (home / ".keras").mkdir()
        (home / ".keras" / "keras.json").write_text(json.dumps(keras_json))
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    env.update(HOME=str(home), PYTHONPATH=os.pathsep.join([*map(str, path), str(ROOT)]))
    if backend is not None:
        env["KERAS_BACKEND"] = backend
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_importing_nengo_jax_first_chooses_jax(tmp_path):
    """No KERAS_BACKEND, no keras.json (Keras would choose TensorFlow): JAX."""
    done = run_python(
        tmp_path,
        "import warnings; warnings.filterwarnings('error', 'Keras runs')\n"
        "import os, nengo_jax, keras\n"
        "print(keras.backend.backend(), os.environ['KERAS_BACKEND'])",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["jax", "jax"]
    assert nengo_jax_file(tmp_path) == str(ROOT / "nengo_jax" / "__init__.py")


def nengo_jax_file(tmp_path):
    """The nengo_jax the subprocesses import (this checkout's)."""
    (tmp_path / "where").mkdir()
    done = run_python(tmp_path / "where", "import nengo_jax; print(nengo_jax.__file__)")
    return done.stdout.strip()


def test_keras_first_on_jax_works_silently(tmp_path):
    done = run_python(
        tmp_path,
        "import warnings; warnings.filterwarnings('error', 'Keras runs')\n"
        "import keras, nengo_jax\n" + RUN_AND_COMPILE,
        backend="jax",
    )
    assert done.returncode == 0, done.stderr
    assert "ran (5, 1)" in done.stdout
    assert "compile refused" not in done.stdout


def test_missing_backend_package_is_one_clear_import_error(tmp_path):
    """KERAS_BACKEND names TensorFlow, which is not installed (a stand-in that
    fails to import as a missing package does, whether or not it is)."""
    stub = tmp_path / "stub" / "tensorflow"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'tensorflow'\", "
        "name='tensorflow')\n"
    )
    done = run_python(
        tmp_path, "import nengo_jax", backend="tensorflow", path=[stub.parent]
    )
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(
        "ImportError: nengo_jax could not import Keras: KERAS_BACKEND='tensorflow' "
        "selects Keras's 'tensorflow' backend, whose package 'tensorflow' is not "
        "installed."
    ), done.stderr
    assert "set KERAS_BACKEND=jax, or unset it" in last


def test_keras_first_on_another_backend_warns_then_simulates(tmp_path):
    """keras.json chooses numpy and Keras is imported first: nengo_jax warns
    once with the fix, leaves the environment alone, runs, refuses to train."""
    done = run_python(
        tmp_path,
        "import os, keras, nengo_jax\n"
        "print('KERAS_BACKEND' in os.environ)\n" + RUN_AND_COMPILE,
        keras_json={"backend": "numpy"},
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    assert out[:2] == ["False", "ran (5, 1)"]
    assert out[2].startswith("compile refused: nengo_jax needs Keras on its JAX")
    warning = [line for line in done.stderr.splitlines() if "UserWarning" in line]
    assert len(warning) == 1, done.stderr
    assert (
        "Keras runs on its 'numpy' backend (Keras was imported before nengo_jax), "
        "not 'jax'" in warning[0]
    )
    assert (
        "Import nengo_jax before keras, or set the environment variable "
        in (warning[0])
    )


def test_explicit_other_backend_is_kept_with_a_warning(tmp_path):
    done = run_python(
        tmp_path,
        "import nengo_jax, keras\nprint(keras.backend.backend())",
        backend="numpy",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["numpy"]
    assert "Keras runs on its 'numpy' backend (KERAS_BACKEND='numpy')" in done.stderr
    assert "Set KERAS_BACKEND=jax, or unset it, before Python starts." in done.stderr
