"""JAX's persistent compilation cache, on by default for nengo_jax.

Compiling a simulation or a Keras step takes from a fraction of a second to
many seconds, and a script run again compiles the same programs again. JAX can
keep compiled programs on disk (its persistent compilation cache); nengo_jax
turns it on when the first Simulator is made, so that a second run of a script
loads its programs instead of compiling them.

Where: ``$NENGO_JAX_CACHE_DIR``, by default ``$XDG_CACHE_HOME/nengo_jax/jax``
(``~/.cache/nengo_jax/jax``). ``NENGO_JAX_CACHE_DIR=off`` (or empty) leaves
the cache off; a cache the user set up for JAX itself
(``jax.config.update("jax_compilation_cache_dir", ...)`` or
``JAX_COMPILATION_CACHE_DIR``) is left as it is. Turning the cache on changes
JAX's global configuration for the process: programs compiled by other JAX
code after the first Simulator are cached too (every program, however quick
its compile, unless JAX's ``jax_persistent_cache_min_compile_time_secs`` was
set). Delete the folder to empty the cache.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import jax

#: The environment variable that moves the cache, or turns it off ("off", "").
CACHE_ENV = "NENGO_JAX_CACHE_DIR"

_lock = threading.Lock()
_done = False


def cache_dir() -> Path | None:
    """Where nengo_jax keeps compiled programs (None: the cache is off)."""
    value = os.environ.get(CACHE_ENV)
    if value is not None:
        return (
            None
            if value.strip().lower() in ("", "off", "0", "false")
            else Path(value).expanduser()
        )
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "nengo_jax" / "jax"


def use_compilation_cache() -> Path | None:
    """Turn on JAX's persistent compilation cache (once per process; see the
    module). Returns the cache folder in use, or None if it is off."""
    global _done
    with _lock:
        if not _done:
            _done = True
            where = cache_dir()
            if where is not None and _jax_cache() is None:
                jax.config.update("jax_compilation_cache_dir", str(where))
                # every program, unless the user chose a threshold (JAX's
                # default, 1 s, would leave most simulations out)
                if (
                    jax.config.jax_persistent_cache_min_compile_time_secs == 1.0
                    and "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ
                ):
                    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
        found = _jax_cache()
        return None if found is None else Path(found)


def _jax_cache():
    return jax.config.jax_compilation_cache_dir or os.environ.get(
        "JAX_COMPILATION_CACHE_DIR"
    )
