"""Times the benchmark networks on NengoDL, as commands arrive (JSON lines).

Run with the NengoDL oracle venv's python (see `oracle.py`), never with ours:
it imports only nengo, numpy, nengo_dl and `networks`. It reads one JSON object
per line on stdin and answers each with one JSON line on stdout, so that one
long-lived process (one TensorFlow import) serves a whole benchmark:

- ``{"cmd": "versions"}`` -> ``{"nengo_dl": ..., "tensorflow": ...}``
- ``{"cmd": "build", "id": ..., "network": ..., "neuron_type": ..., "scale":
  ..., "seed": ..., "minibatch": ...}`` -> ``{"seconds": ...}``, the Simulator
  constructor (decoder cache off, as `run.py` builds the others)
- ``{"cmd": "run", "id": ..., "steps": ...}`` -> ``{"seconds": ...}``, one
  ``run_steps(steps)`` of the Simulator built under ``id``
- ``{"cmd": "close", "id": ...}`` -> ``{}``

A command that fails answers ``{"error": "<type>: <message>"}`` and the worker
goes on; end of input ends it.
"""

from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# the protocol owns stdout: anything else printed (TensorFlow, nengo_dl, the
# networks) goes to stderr
_PROTOCOL = os.fdopen(os.dup(sys.stdout.fileno()), "w")
os.dup2(sys.stderr.fileno(), sys.stdout.fileno())

import nengo  # noqa: E402
from nengo.cache import NoDecoderCache  # noqa: E402
from networks import ALL_NETWORKS, NEURON_TYPES  # noqa: E402


def answer(**fields) -> None:
    _PROTOCOL.write(json.dumps(fields) + "\n")
    _PROTOCOL.flush()


def build(cmd: dict):
    """A NengoDL Simulator of the named network (network construction untimed)."""
    import nengo_dl

    bench = ALL_NETWORKS[cmd["network"]](
        NEURON_TYPES[cmd["neuron_type"]](), cmd["scale"], cmd["seed"]
    )
    start = time.perf_counter()
    sim = nengo_dl.Simulator(
        bench.net,
        model=nengo.builder.Model(dt=0.001, decoder_cache=NoDecoderCache()),
        minibatch_size=cmd["minibatch"],
        progress_bar=False,
    )
    return sim, time.perf_counter() - start


def serve(lines) -> None:
    sims = {}
    for line in lines:
        if not line.strip():
            continue
        cmd = json.loads(line)
        try:
            if cmd["cmd"] == "versions":
                import nengo_dl
                import tensorflow as tf

                answer(nengo_dl=nengo_dl.__version__, tensorflow=tf.__version__)
            elif cmd["cmd"] == "build":
                sims[cmd["id"]], seconds = build(cmd)
                answer(seconds=seconds)
            elif cmd["cmd"] == "run":
                start = time.perf_counter()
                sims[cmd["id"]].run_steps(cmd["steps"], progress_bar=False)
                answer(seconds=time.perf_counter() - start)
            elif cmd["cmd"] == "close":
                sim = sims.pop(cmd["id"], None)
                if sim is not None:
                    sim.close()
                answer()
            else:
                answer(error=f"unknown command {cmd['cmd']!r}")
        except Exception as e:  # reported to the benchmark, which notes it in the row
            answer(error=f"{type(e).__name__}: {str(e).strip()[:300]}")


if __name__ == "__main__":
    serve(sys.stdin)
