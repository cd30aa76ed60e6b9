"""The persistent compilation cache: a second process compiles nothing."""

import json
import os
import subprocess
import sys

SCRIPT = """
import json, sys, time
import jax, jax.monitoring
events = []
jax.monitoring.register_event_listener(
    lambda name, **kw: events.append(name) if "compilation_cache" in name else None
)
import nengo, numpy as np
import nengo_jax
with nengo.Network(seed=0) as net:
    ens = nengo.Ensemble(50, 1)
    nengo.Connection(nengo.Node(np.sin), ens)
    probe = nengo.Probe(ens, synapse=0.01)
with nengo_jax.Simulator(net, progress_bar=False) as sim:
    sim.run_steps(20)
    out = sim.data[probe][-1].tolist()
print(json.dumps({
    "dir": jax.config.jax_compilation_cache_dir,
    "hits": events.count("/jax/compilation_cache/cache_hits"),
    "misses": events.count("/jax/compilation_cache/cache_misses"),
    "out": out,
}))
"""


def run(env):
    inherited = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("JAX_COMPILATION", "NENGO_JAX_CACHE"))
    }
    env = inherited | env
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_second_process_loads_compiled_programs(tmp_path):
    cache = tmp_path / "cache"
    first = run({"NENGO_JAX_CACHE_DIR": str(cache)})
    assert first["dir"] == str(cache)
    assert first["misses"] > 0 and first["hits"] == 0
    assert any(cache.iterdir())
    second = run({"NENGO_JAX_CACHE_DIR": str(cache)})
    assert second["misses"] == 0 and second["hits"] == first["misses"]
    assert second["out"] == first["out"]


def test_cache_off_and_default_dir(tmp_path):
    off = run({"NENGO_JAX_CACHE_DIR": "off"})
    assert off["dir"] is None and off["hits"] == off["misses"] == 0
    env = {"XDG_CACHE_HOME": str(tmp_path)}
    default = run(env)
    assert default["dir"] == str(tmp_path / "nengo_jax" / "jax")
