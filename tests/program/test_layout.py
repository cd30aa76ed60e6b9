"""Layout.read/write: the NumPy reader and writer of signal views agree with
NumPy indexing and with the traced reader (SignalEnv)."""

import jax.numpy as jnp
import numpy as np
import pytest
from nengo.builder import Model
from nengo.builder.operator import Copy, Reset
from nengo.builder.signal import Signal

from nengo_jax.program.layout import Layout
from nengo_jax.program.signals import SignalEnv

B = 3


def _layout():
    state = Signal(np.arange(12, dtype=np.float32), name="state")
    param = Signal(np.arange(6, dtype=np.float32).reshape(2, 3), name="param")
    ops = [Reset(state), Copy(param[0], state[:3], inc=True)]
    layout = Layout(Model(), ops, [])
    return state, param, layout


def _views(state, param):
    return {
        "state": state,
        "state[2:7]": state[2:7],
        "state[::3]": state[::3],
        "state.reshape": state.reshape((3, 4))[1],
        "param": param,
        "param[1]": param[1],
    }


@pytest.mark.parametrize("name", list(_views(*_layout()[:2])))
def test_read_write_match_numpy_and_traced(name):
    state, param, layout = _layout()
    sig = _views(state, param)[name]
    arrays = layout.initial_params() | layout.initial_state(B)
    base_value = np.asarray(sig.base.initial_value)
    expected = np.asarray(sig.initial_value)

    read = layout.read(arrays.__getitem__, sig)
    np.testing.assert_array_equal(read, expected)
    env = SignalEnv(
        layout, {k: jnp.asarray(v) for k, v in arrays.items()}, {}, B, 0.001, None
    )
    traced = np.asarray(env.read(sig))
    np.testing.assert_array_equal(
        traced[0] if env.is_batched(sig) else traced, expected
    )

    new = np.random.RandomState(0).rand(*sig.shape).astype(np.float32)
    layout.write(arrays.__getitem__, sig, new)
    np.testing.assert_array_equal(layout.read(arrays.__getitem__, sig), new)
    if layout.view(sig).key in layout.state_keys:
        np.testing.assert_array_equal(
            layout.read(arrays.__getitem__, sig, batched=True), np.stack([new] * B)
        )
    # the whole base as NumPy would have it after writing the view
    expected_base = base_value.copy()
    flat = expected_base.reshape(-1)
    np.lib.stride_tricks.as_strided(
        flat[sig.elemoffset :],
        shape=sig.shape,
        strides=tuple(s * flat.itemsize for s in sig.elemstrides),
        writeable=True,
    )[...] = new
    np.testing.assert_array_equal(
        layout.read(arrays.__getitem__, sig.base), expected_base
    )
