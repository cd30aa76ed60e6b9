"""Keras's backend: nengo_jax runs Keras on JAX, chosen before Keras is imported.

Keras 3 picks its backend once, when ``keras`` is first imported: from the
environment variable ``KERAS_BACKEND``, else from ``~/.keras/keras.json``,
else TensorFlow. Importing nengo_jax first chooses JAX; this module also
explains, in one message, what goes wrong when another backend was chosen.
"""

import os
import sys
import warnings

#: Keras's backends whose package (of the same name) is not one of our dependencies.
OPTIONAL_BACKENDS = ("tensorflow", "torch", "openvino")

FIX = (
    "Import nengo_jax before keras, or set the environment variable "
    'KERAS_BACKEND=jax before Python starts (or "backend": "jax" in '
    "~/.keras/keras.json)."
)


def select_keras_backend() -> None:
    """Choose Keras's JAX backend unless a backend is chosen already; import Keras.

    ``KERAS_BACKEND`` is set to ``"jax"`` only when it is unset and Keras is not
    imported yet. If the backend chosen instead needs a package that is not
    installed, Keras cannot be imported, and this raises an ImportError that
    names the backend and the fix. If Keras runs on another backend, it warns:
    nengo_jax then simulates, but cannot train or run Keras layers.
    """
    imported_before = "keras" in sys.modules
    if not imported_before:
        os.environ.setdefault("KERAS_BACKEND", "jax")
    backend = os.environ.get("KERAS_BACKEND")
    try:
        import keras
    except ModuleNotFoundError as err:
        missing = (err.name or "").split(".")[0]
        if backend in OPTIONAL_BACKENDS and missing == backend:
            raise ImportError(
                f"nengo_jax could not import Keras: KERAS_BACKEND={backend!r} "
                f"selects Keras's {backend!r} backend, whose package {missing!r} "
                "is not installed. nengo_jax runs Keras on its 'jax' backend: set "
                "KERAS_BACKEND=jax, or unset it (importing nengo_jax first then "
                "chooses JAX), before Python starts."
            ) from err
        raise
    found = keras.backend.backend()
    if found != "jax":
        if imported_before:
            why, fix = "Keras was imported before nengo_jax", FIX
        else:
            why = f"KERAS_BACKEND={backend!r}"
            fix = "Set KERAS_BACKEND=jax, or unset it, before Python starts."
        warnings.warn(
            f"Keras runs on its {found!r} backend ({why}), not 'jax': nengo_jax "
            "simulates (run, step), but compile, fit, evaluate, predict and Keras "
            f"layers in TensorNodes need Keras's 'jax' backend. {fix}",
            stacklevel=2,
        )
