"""Where every Nengo signal lives in the simulator's arrays.

Nengo signals are views into base signals. Each base becomes one array: a
*parameter* (stored once, no batch axis) if no operator writes to it, or a piece
of *state* (with a leading minibatch axis) otherwise. A view becomes either a
static slice of its flattened base or a static gather, computed once here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from nengo.builder.signal import Signal
from nengo.transforms import SparseMatrix

_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


@dataclass(frozen=True)
class View:
    """How to get a signal out of its base array (without the batch axis)."""

    key: str
    shape: tuple
    whole: bool  # the signal covers its whole base, in order
    start: int  # flat contiguous range [start, stop), when ``index`` is None
    stop: int
    index: np.ndarray | None  # flat gather indices, shape ``shape``


def sparse_coords(initial_value):
    """``(data, rows, cols)`` of a sparse signal's value (scipy or Nengo format)."""
    if isinstance(initial_value, SparseMatrix):
        indices = np.asarray(initial_value.indices)
        return np.asarray(initial_value.data), indices[:, 0], indices[:, 1]
    csr = initial_value.tocsr()
    rows = np.repeat(np.arange(csr.shape[0]), np.diff(csr.indptr))
    return np.asarray(csr.data), rows, np.asarray(csr.indices)


def flat_index(sig: Signal) -> np.ndarray:
    """The flat positions of ``sig``'s elements in its base, shaped like ``sig``."""
    base = sig.base
    flat = np.arange(base.size, dtype=np.int64)
    if not sig.is_view:
        return flat.reshape(sig.shape)
    return np.lib.stride_tricks.as_strided(
        flat[sig.elemoffset :],
        shape=sig.shape,
        strides=[s * flat.itemsize for s in sig.elemstrides],
        writeable=False,
    ).copy()


def view_from_index(key: str, index: np.ndarray, base_size: int) -> View:
    """The cheapest `View` for the flat positions ``index`` of a base."""
    shape = tuple(index.shape)
    ravel = index.ravel()
    if ravel.size == base_size and np.array_equal(ravel, np.arange(base_size)):
        return View(key, shape, True, 0, base_size, None)
    if ravel.size > 0 and np.array_equal(
        ravel, np.arange(ravel[0], ravel[0] + ravel.size)
    ):
        start = int(ravel[0])
        return View(key, shape, False, start, start + ravel.size, None)
    if ravel.size == 0:
        return View(key, shape, False, 0, 0, None)
    return View(key, shape, False, 0, 0, index)


def view_of(sig: Signal, key: str) -> View:
    """Resolve ``sig`` to a static slice or gather of its base."""
    if sig.sparse:
        return View(key, tuple(sig.shape), True, 0, -1, None)
    return view_from_index(key, flat_index(sig), sig.base.size)


def float_like(dtype: np.dtype, float_dtype: np.dtype) -> np.dtype:
    """The dtype a signal of ``dtype`` is stored in."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return np.dtype(float_dtype)
    if dtype.kind in "iu":
        return np.dtype(np.int64 if np.dtype(float_dtype).itemsize > 4 else np.int32)
    return dtype


class Layout:
    """The arrays behind a built model's signals.

    Parameters
    ----------
    model : nengo.builder.Model
        The built model.
    operators : list of Operator
        The operators that will run (their writes decide what is state).
    extra_signals : iterable of Signal
        Signals read from outside the operators (probes, step and time).
    dtype : str
        The floating point dtype of the simulation.
    """

    def __init__(self, model, operators, extra_signals, dtype="float32"):
        self.dtype = np.dtype(dtype)
        written, bases = set(), {}
        for op in operators:
            for sig in op.sets + op.incs + op.updates:
                written.add(sig.base)
            for sig in op.all_signals:
                bases.setdefault(sig.base, None)
        for sig in extra_signals:
            bases.setdefault(sig.base, None)

        # Keys depend only on the network's structure (build order and labels),
        # never on object ids, so a rebuilt or unpickled model gets the same keys.
        names = {}
        for i, (obj, sigs) in enumerate(model.sig.items()):
            label = getattr(obj, "label", None)
            prefix = f"{type(obj).__name__}{i}" + (f"[{label}]" if label else "")
            for attr, sig in sigs.items():
                if isinstance(sig, Signal) and sig.base in bases:
                    names.setdefault(sig.base, f"{prefix}.{attr}")
        self.keys, used = {}, set()
        for i, base in enumerate(bases):
            # unnamed signals are named after their id by Nengo: use the index
            name = names.get(base) or _ADDRESS.sub("", base._name or f"signal{i}")
            key = name if name not in used else f"{name}#{i}"
            used.add(key)
            self.keys[base] = key

        self.state_bases = [b for b in bases if b in written]
        self.param_bases = [b for b in bases if b not in written]
        self._views = {}

    def key(self, sig: Signal) -> str:
        """The array key of the base of ``sig``."""
        return self.keys[sig.base]

    def view(self, sig: Signal) -> View:
        """The (cached) static view of ``sig`` in its base array."""
        view = self._views.get(sig)
        if view is None:
            view = self._views[sig] = view_of(sig, self.keys[sig.base])
        return view

    def indexed_view(self, sig: Signal, index) -> View:
        """The view of ``sig[index]`` (``index`` selects along the first axis)."""
        index = np.asarray(index)
        if index.dtype.kind == "b":
            index = np.nonzero(index)[0]
        return view_from_index(
            self.keys[sig.base], flat_index(sig)[index], sig.base.size
        )

    def initial(self, base: Signal) -> np.ndarray:
        """The initial value of ``base`` in its stored dtype (sparse: the data)."""
        if base.sparse:
            value = sparse_coords(base.initial_value)[0]
        else:
            value = np.asarray(base.initial_value)
        return value.astype(float_like(value.dtype, self.dtype))

    def initial_params(self) -> dict:
        """Parameters: one unbatched array per base that no operator writes."""
        return {self.keys[b]: self.initial(b) for b in self.param_bases}

    def initial_state(self, minibatch_size: int) -> dict:
        """State: one array per written base, with a leading minibatch axis."""
        state = {}
        for base in self.state_bases:
            value = self.initial(base)
            state[self.keys[base]] = np.broadcast_to(
                value, (minibatch_size,) + value.shape
            ).copy()
        return state
