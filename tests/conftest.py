"""Our own tests: warnings are errors unless a test expects them; seeds are fixed."""

import os
import pathlib
import zlib

# Test modules import keras before nengo_jax (which would set this itself).
os.environ.setdefault("KERAS_BACKEND", "jax")
# Tests compile afresh: no persistent compilation cache (test_cache.py tests it)
os.environ.setdefault("NENGO_JAX_CACHE_DIR", "off")

import keras
import pytest

HERE = pathlib.Path(__file__).parent


def pytest_collection_modifyitems(items):
    for item in items:
        if HERE in pathlib.Path(item.path).parents:
            item.add_marker(pytest.mark.filterwarnings("error"), append=False)


@pytest.fixture(autouse=True)
def fixed_seeds(request):
    """Each test draws the same random numbers on every run and every machine.

    Seeds NumPy's and Python's global generators and Keras's (a network without
    a seed, a Keras initializer without one), from the test's id.
    """
    keras.utils.set_random_seed(zlib.crc32(request.node.nodeid.encode()) % 2**31)
