"""NengoDL 3.6 beside us: find its oracle venv and drive a worker process in it.

NengoDL needs TensorFlow 2.12, which cannot share a venv with our JAX, so it
runs in the venv that ``../shared/tools/nengo-dl-oracle`` builds, in one
long-lived `nengo_dl_worker.py` process per benchmark. `RemoteSimulator` gives
that process's simulators the two calls `run.py` times (``run_steps`` and
``close``), so they take turns with nengo's and ours in the same loop.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "nengo_dl_worker.py")

#: Environment variable naming the oracle's python (or its venv folder).
ORACLE_ENV = "NENGO_DL_ORACLE"


def _python_in(path: str) -> str:
    """``path`` itself if it is a file, else the venv python under it."""
    if os.path.isdir(path):
        return os.path.join(path, "bin", "python")
    return path


def oracle_candidates() -> list[str]:
    """Where the oracle's python may be, most specific first.

    ``$NENGO_DL_ORACLE``, then the tool's default folder
    (``${TMPDIR:-/tmp}/nengo-dl-oracle``), then ``/tmp/nengo-dl-oracle``.
    """
    places = [os.environ.get(ORACLE_ENV)]
    places += [os.path.join(tempfile.gettempdir(), "nengo-dl-oracle")]
    places += [os.path.join(os.environ.get("TMPDIR", "/tmp"), "nengo-dl-oracle")]
    places += ["/tmp/nengo-dl-oracle"]
    seen = []
    for place in places:
        if place and _python_in(place) not in seen:
            seen.append(_python_in(place))
    return seen


def importable(python: str) -> bool:
    """Whether ``python`` runs and imports nengo_dl."""
    if not os.access(python, os.X_OK):
        return False
    done = subprocess.run(
        [python, "-c", "import nengo_dl"],
        capture_output=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    return done.returncode == 0


def find_oracle(path: str | None = None) -> str | None:
    """The oracle's python: ``path`` (a python or a venv folder) or the first
    of `oracle_candidates` that imports nengo_dl; None if there is none.

    A ``path`` given that does not import nengo_dl is an error, not a silent
    fall back to two columns.
    """
    if path:
        python = _python_in(path)
        if not importable(python):
            raise ValueError(
                f"--oracle {path}: {python} cannot import nengo_dl; build the venv "
                "with ../shared/tools/nengo-dl-oracle [DIR] and pass DIR"
            )
        return python
    for python in oracle_candidates():
        if importable(python):
            return python
    return None


def oracle_line(python: str) -> str:
    """A report's header line naming the oracle's NengoDL and TensorFlow."""
    versions = subprocess.run(
        [
            python,
            "-c",
            "import nengo_dl, tensorflow as tf; "
            "print(nengo_dl.__version__, tf.__version__)",
        ],
        capture_output=True,
        text=True,
        check=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    ).stdout.split()
    return f"- NengoDL {versions[0]} with TensorFlow {versions[1]} ({python})"


class WorkerError(RuntimeError):
    """A command the NengoDL worker answered with an error."""


class Worker:
    """One `nengo_dl_worker.py` process in the oracle venv."""

    def __init__(self, python: str):
        self.python = python
        self.process = subprocess.Popen(
            [python, WORKER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=sys.stderr,
            text=True,
            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES=""),
        )
        self._next_id = 0

    def send(self, **cmd) -> dict:
        """Send one command and wait for its answer."""
        self.process.stdin.write(json.dumps(cmd) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise WorkerError(
                f"the NengoDL worker ({self.python}) exited with "
                f"{self.process.wait()}; its stderr is above"
            )
        reply = json.loads(line)
        if "error" in reply:
            raise WorkerError(reply["error"])
        return reply

    def versions(self) -> dict:
        return self.send(cmd="versions")

    def simulator(self, **network) -> RemoteSimulator:
        """Build a network (see `nengo_dl_worker`) and return its handle."""
        self._next_id += 1
        build_s = self.send(cmd="build", id=self._next_id, **network)["seconds"]
        return RemoteSimulator(self, self._next_id, build_s)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()
            self.process.wait(timeout=60)


class RemoteSimulator:
    """A NengoDL Simulator in the worker: ``build_s`` and ``timed_run`` are
    measured there, so neither includes the pipe."""

    def __init__(self, worker: Worker, sim_id: int, build_s: float):
        self.worker, self.id, self.build_s = worker, sim_id, build_s

    def timed_run(self, steps: int) -> float:
        """Seconds of one ``run_steps(steps)``."""
        return self.worker.send(cmd="run", id=self.id, steps=steps)["seconds"]

    def close(self) -> None:
        self.worker.send(cmd="close", id=self.id)
