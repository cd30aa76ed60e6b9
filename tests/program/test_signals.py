"""SignalEnv: pending writes read back exactly as if stored at once."""

import jax.numpy as jnp
import numpy as np
import pytest
from nengo.builder import Model
from nengo.builder.operator import Reset
from nengo.builder.signal import Signal

from nengo_jax.program.layout import Layout
from nengo_jax.program.signals import SignalEnv

SIZE = 12


def _env(minibatch_size):
    base = Signal(np.zeros(SIZE, dtype=np.float32), name="base")
    layout = Layout(Model(), [Reset(base)], [])
    values = {layout.key(base): jnp.zeros((minibatch_size, SIZE), np.float32)}
    return base, layout, SignalEnv(layout, values, {}, minibatch_size, 0.001, None)


@pytest.mark.parametrize("seed", range(4))
def test_random_writes_and_reads_match_numpy(seed):
    """Sets and increments of ranges (held back) and of index lists (stored at
    once), in random order, read back like NumPy's; `flush` stores them all."""
    rng = np.random.RandomState(seed)
    B = 2
    base, layout, env = _env(B)
    expected = np.zeros((B, SIZE), np.float32)
    for _ in range(60):
        if rng.rand() < 0.25:
            index = rng.choice(SIZE, size=rng.randint(1, 5), replace=False)
            view, where = layout.indexed_view(base, index), index
        else:
            lo, hi = sorted(rng.randint(0, SIZE + 1, size=2))
            view, where = layout.view(base[lo:hi]), slice(lo, hi)
        action = rng.choice(["set", "inc", "read"])
        if action == "read":
            np.testing.assert_array_equal(env.read(base, view=view), expected[:, where])
            continue
        value = rng.randn(B, view.shape[0]).astype(np.float32)
        env.write(base, value, inc=action == "inc", view=view)
        if action == "inc":
            expected[:, where] += value
        else:
            expected[:, where] = value
    np.testing.assert_array_equal(env.read(base), expected)
    env.flush()
    assert not env._pending
    np.testing.assert_array_equal(env.values[layout.key(base)], expected)


def test_reset_then_increments_stay_pending():
    """A reset followed by increments of its parts keeps one pending value per
    range: the base itself is written only by `flush`."""
    base, layout, env = _env(1)
    key = layout.key(base)
    before = env.values[key]
    env.write(base, 0.0)
    env.inc(base[2:5], jnp.ones((1, 3)))
    env.inc(base[3:8], jnp.full((1, 5), 2.0))
    assert env.values[key] is before
    ranges = [(s, e) for s, e, _ in env._pending[key]]
    assert ranges == [(0, 2), (2, 3), (3, 8), (8, 12)]
    env.flush()
    np.testing.assert_array_equal(
        env.values[key], [[0, 0, 1, 3, 3, 2, 2, 2, 0, 0, 0, 0]]
    )
