"""Where every Nengo signal lives in the simulator's arrays.

Nengo signals are views into base signals. Each base becomes one array: a
*parameter* (stored once, no batch axis) if no operator writes to it, or a piece
of *state* (with a leading minibatch axis) otherwise. A view becomes either a
static slice of its flattened base or a static gather, computed once here.
`Layout.read` and `Layout.write` read and write views in NumPy arrays (the
traced counterpart is `nengo_jax.program.signals.SignalEnv`).
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
    #: A read across a split base: ``index`` points into the concatenation of
    #: this parameter array and the state array ``key`` (flattened).
    param_key: str | None = None


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

    Each base signal becomes one array: a parameter if no operator writes to
    it, state otherwise. Merging may put read-only signals (e.g.
    biases) with written ones into one base; such a base is split into a
    parameter array (its unwritten elements) and a state array (its written
    elements), so that parameters stay unbatched and trainable. Reads that span
    both parts gather from their concatenation.

    State whose every element an operator sets afresh each step (a neuron
    group's input current and output, a Node's output) is *transient*: its
    value from the step before is never read, so it lives within a step only
    and is not carried between steps (`transient_keys`). Carrying it would
    write it to memory every step for nothing.

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
    fresh : iterable of (Signal, index)
        What the operators set afresh every step (see
        `OpBuilder.fresh_writes`); ``index`` selects along the signal's first
        axis (None: all of it).
    """

    def __init__(self, model, operators, extra_signals, dtype="float32", fresh=()):
        self.dtype = np.dtype(dtype)
        written, bases = {}, {}
        for op in operators:
            for sig in op.sets + op.incs + op.updates:
                mask = written.setdefault(sig.base, np.zeros(sig.base.size, bool))
                if sig.sparse:
                    mask[:] = True
                else:
                    mask[flat_index(sig).ravel()] = True
            for sig in op.all_signals:
                bases.setdefault(sig.base, None)
        renewed = {}  # base -> flat mask of the elements set afresh every step
        for sig, index in fresh:
            if not sig.sparse:
                elements = flat_index(sig) if index is None else flat_index(sig)[index]
                mask = renewed.setdefault(sig.base, np.zeros(sig.base.size, bool))
                mask[np.asarray(elements).ravel()] = True
        for sig in extra_signals:
            bases.setdefault(sig.base, None)
        #: base -> flat mask of its written elements, for bases split in two
        self._split = {
            b: mask for b, mask in written.items() if b in bases and not mask.all()
        }

        # Keys depend only on the network's structure (build order and labels),
        # never on object ids, so a rebuilt or unpickled model gets the same keys.
        names = {}
        for i, (obj, sigs) in enumerate(model.sig.items()):
            label = getattr(obj, "label", None)
            prefix = f"{type(obj).__name__}{i}" + (f"[{label}]" if label else "")
            for attr, sig in sigs.items():
                if isinstance(sig, Signal) and sig.base in bases:
                    part = self._part(sig, written)
                    if part is not None:
                        names.setdefault((sig.base, part), f"{prefix}.{attr}")
        #: (base, part) -> array key; part is "param" or "state"
        self._keys, used = {}, set()
        self.param_keys, self.state_keys = [], []
        #: State keys that live within a step only (see the class docstring).
        self.transient_keys = []
        self._initial = {}  # key -> (base, flat element mask or None)
        for i, base in enumerate(bases):
            if base in self._split:
                parts = [("param", ~self._split[base]), ("state", self._split[base])]
            else:
                parts = [("state" if base in written else "param", None)]
            for part, mask in parts:
                # unnamed signals are named after their id by Nengo: use the index
                name = names.get((base, part)) or _ADDRESS.sub(
                    "", base._name or f"signal{i}"
                )
                if mask is not None and (base, part) not in names:
                    name = f"{name}.{part}"
                key = name if name not in used else f"{name}#{i}"
                used.add(key)
                self._keys[base, part] = key
                self._initial[key] = (base, mask)
                if part == "param":
                    self.param_keys.append(key)
                elif _all_renewed(renewed.get(base), mask):
                    self.transient_keys.append(key)
                else:
                    self.state_keys.append(key)
        #: for split bases: flat element -> position within its part
        self._rank = {
            b: np.where(mask, np.cumsum(mask) - 1, np.cumsum(~mask) - 1)
            for b, mask in self._split.items()
        }
        self._transient = frozenset(self.transient_keys)
        #: The base signals, in build order.
        self.bases = list(bases)
        self._bases = set(bases)
        self._views = {}

    def is_transient(self, sig: Signal) -> bool:
        """Whether (some of) ``sig`` lives within a step only (see
        `transient_keys`)."""
        return sig.base in self._bases and self.view(sig).key in self._transient

    def keeps(self, sig: Signal) -> bool:
        """Whether ``sig``'s values are kept between steps: its base is laid
        out (signals no operator uses are not) and not transient."""
        return sig.base in self._bases and self.view(sig).key not in self._transient

    def _part(self, sig: Signal, written: dict) -> str | None:
        """Which part of its base ``sig`` lies in (None: across both)."""
        mask = self._split.get(sig.base)
        if mask is None:
            return "state" if sig.base in written else "param"
        inside = mask[flat_index(sig).ravel()]
        return "state" if inside.all() else "param" if not inside.any() else None

    def key(self, sig: Signal) -> str:
        """The array key of ``sig`` (of its state part, for a split base)."""
        base = sig.base
        return self._keys.get((base, "state")) or self._keys[base, "param"]

    def shape(self, key: str) -> tuple:
        """The shape of array ``key``, without a batch axis."""
        base, mask = self._initial[key]
        return tuple(base.shape) if mask is None else (int(mask.sum()),)

    def view(self, sig: Signal) -> View:
        """The (cached) static view of ``sig`` in its array."""
        view = self._views.get(sig)
        if view is None:
            if sig.sparse:
                view = View(self.key(sig), tuple(sig.shape), True, 0, -1, None)
            else:
                view = self._locate(sig.base, flat_index(sig))
            self._views[sig] = view
        return view

    def indexed_view(self, sig: Signal, index) -> View:
        """The view of ``sig[index]`` (``index`` selects along the first axis)."""
        index = np.asarray(index)
        if index.dtype.kind == "b":
            index = np.nonzero(index)[0]
        return self._locate(sig.base, flat_index(sig)[index])

    def index_view(self, sig: Signal, index) -> View | None:
        """`indexed_view` of ``sig``, or None (all of it) when ``index`` is None."""
        return None if index is None else self.indexed_view(sig, index)

    def _locate(self, base: Signal, index: np.ndarray) -> View:
        """The view of the elements ``index`` (flat positions in ``base``)."""
        mask = self._split.get(base)
        if mask is None:
            return view_from_index(self.key(base), index, base.size)
        written, rank = mask[index], self._rank[base][index]
        state, param = self._keys[base, "state"], self._keys[base, "param"]
        if written.all():
            return view_from_index(state, rank, int(mask.sum()))
        if not written.any():
            return view_from_index(param, rank, int((~mask).sum()))
        # across both parts: gather from [param elements, state elements]
        n_param = int((~mask).sum())
        joined = np.where(written, n_param + rank, rank)
        return View(state, tuple(index.shape), False, 0, 0, joined, param_key=param)

    def trainable_masks(self, signals) -> dict:
        """Parameter key -> which of its elements ``signals`` cover.

        Returns True for a parameter that is trainable as a whole, or a boolean
        array shaped like the parameter when only part of it is (signals merged
        into one base). Elements that are state (written by operators) or not
        used by any operator are left out.
        """
        params = set(self.param_keys)
        covered = {}
        for sig in signals:
            if sig.base not in self._bases:
                continue
            view = self.view(sig)
            key = view.param_key or view.key
            if key not in params:
                continue
            mask = covered.setdefault(key, np.zeros(self.shape(key), bool))
            if sig.sparse or view.whole:
                mask[...] = True
                continue
            if view.index is None:
                local = np.arange(view.start, view.stop)
            elif view.param_key is None:
                local = view.index.ravel()
            else:
                local = view.index.ravel()
                local = local[local < mask.size]
            mask.reshape(-1)[local] = True
        return {
            key: True if mask.all() else mask
            for key, mask in covered.items()
            if mask.any()
        }

    def read(self, array, sig, batched=False) -> np.ndarray:
        """The value of ``sig`` from NumPy arrays (sparse: its nonzero data).

        ``array(key)`` returns the array of a key: parameters unbatched, state with
        a leading batch axis. State is ``(B,) + shape`` with ``batched``, otherwise
        batch item 0. (`SignalEnv` is the traced counterpart.)
        """
        view = self.view(sig)
        value = array(view.key)
        if sig.sparse:
            return value
        is_batched = value.ndim > len(self.shape(view.key))
        lead = value.shape[:1] if is_batched else ()
        if view.whole:
            out = value.reshape(lead + view.shape)
        else:
            flat = value.reshape(lead + (-1,))
            if view.param_key is not None:  # across a split base: [params, state]
                param = array(view.param_key).reshape(-1)
                param = np.broadcast_to(param, lead + param.shape)
                flat = np.concatenate([param, flat], axis=-1)
            if view.index is None:
                out = flat[..., view.start : view.stop]
            else:
                out = flat[..., view.index.ravel()]
            out = out.reshape(lead + view.shape)
        if is_batched and not batched:
            out = out[0]
        return out

    def write(self, writable, sig, value) -> None:
        """Set ``sig`` in NumPy arrays; ``writable(key)`` returns a writable array.

        ``value`` has the signal's shape (every batch item gets it) or, for state,
        ``(B,) + shape``; sparse signals take their nonzero data.
        """
        view = self.view(sig)
        target = writable(view.key)
        value = np.asarray(value)
        if sig.sparse:
            target[...] = value
            return
        batched = target.ndim > len(self.shape(view.key))
        lead = target.shape[:1] if batched else ()
        if value.shape == lead + view.shape:
            flat_value = value.reshape(lead + (-1,))
        else:
            flat_value = np.broadcast_to(value, lead + view.shape).reshape(lead + (-1,))
        flat = target.reshape(lead + (-1,))  # a view: the copies are contiguous
        if view.param_key is not None:  # across a split base: [params, state]
            param = writable(view.param_key).reshape(-1)
            index = view.index.ravel()
            in_param = index < param.size
            item = flat_value[0] if batched else flat_value
            param[index[in_param]] = item[in_param]
            flat[..., index[~in_param] - param.size] = flat_value[..., ~in_param]
        elif view.whole:
            flat[...] = flat_value
        elif view.index is None:
            flat[..., view.start : view.stop] = flat_value
        else:
            flat[..., view.index.ravel()] = flat_value

    def initial(self, key: str) -> np.ndarray:
        """The initial value of array ``key`` in its stored dtype.

        Sparse signals store their nonzero data.
        """
        base, mask = self._initial[key]
        if base.sparse:
            value = sparse_coords(base.initial_value)[0]
        else:
            value = np.asarray(base.initial_value)
            if mask is not None:
                value = value.reshape(-1)[mask]
        return value.astype(float_like(value.dtype, self.dtype))

    def initial_params(self) -> dict:
        """Parameters: one unbatched array per unwritten (part of a) base."""
        return {key: self.initial(key) for key in self.param_keys}

    def initial_state(self, minibatch_size: int) -> dict:
        """State: one array per written (part of a) base, with a minibatch axis
        (transient ones left out)."""
        state = {}
        for key in self.state_keys:
            value = self.initial(key)
            state[key] = np.broadcast_to(value, (minibatch_size,) + value.shape).copy()
        return state


def _all_renewed(renewed: np.ndarray | None, part: np.ndarray | None) -> bool:
    """Whether every element of a base's state (``part``: its flat mask, None:
    all of it) is set afresh every step (``renewed``: flat mask, or None)."""
    if renewed is None:
        return False
    return bool(renewed.all() if part is None else renewed[part].all())
