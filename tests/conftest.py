"""Our own tests: warnings are errors unless a test expects them."""

import os
import pathlib

# Test modules import keras before nengo_jax (which would set this itself).
os.environ.setdefault("KERAS_BACKEND", "jax")

import pytest

HERE = pathlib.Path(__file__).parent


def pytest_collection_modifyitems(items):
    for item in items:
        if HERE in pathlib.Path(item.path).parents:
            item.add_marker(pytest.mark.filterwarnings("error"), append=False)
