"""Settings for running Nengo's own test suite against nengo_jax.

Nengo's repository conftest is not shipped in its wheel; this autouse fixture
reproduces what it sets for every test (only fixtures reach ``--pyargs nengo``).
"""

import pytest


@pytest.fixture(autouse=True)
def nengo_test_defaults():
    from nengo import rc

    rc.reload_rc([])
    rc["decoder_cache"]["enabled"] = "False"
    rc["progress"]["progress_bar"] = "False"
    rc["exceptions"]["simplified"] = "False"
    rc["nengo.Simulator"]["fail_fast"] = "True"
    yield
    rc.reload_rc([])
