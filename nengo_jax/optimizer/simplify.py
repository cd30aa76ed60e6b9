"""Simplifications: rewrite the operator list into an equivalent, shorter one.

Each simplification is a function ``(operators, model) -> operators`` that
returns a new list (the input list and its operators are never modified).
`simplify` applies a list of them repeatedly, before any merging, until a whole
pass changes nothing.

Every rewrite here keeps the value of every signal at every step the same as
Nengo's, including the values before the first step. To stay provably so, they
are conservative:

- A signal is *constant* only if no operator writes any part of its base, it
  is dense (not sparse), and it is not *protected*. Protected signals can
  change without an operator: the encoders, biases and connection weights
  that training, `~.Simulator.load_params` and `~.Simulator.freeze_params`
  read and write, the weights of Keras layers in TensorNodes, the outputs of
  Nodes without inputs (which run-time ``data`` replaces), and the signals of
  learning rules (their operators stay as Nengo builds them). No operator that
  writes a protected signal is rewritten either.
- Only Nengo's own bookkeeping operators are rewritten: `~nengo.builder.operator.Reset`,
  `~nengo.builder.operator.Copy`, `~nengo.builder.operator.ElementwiseInc`,
  `~nengo.builder.operator.DotInc` (and its sparse subclasses, only where the
  rewrite does not depend on the matrix) and the convolutions.
- No signal is given another initial value: ``sim.signals`` shows initial
  values before the first step, and a user may hold any signal (a hand-built
  model's, or one from ``model.sig``). Where a rewrite would need one, it is
  skipped (a Reset to a value the signal does not start at is kept).

A removed product assumes finite values: ``Y += A @ X`` with a zero ``X`` adds
exactly zero unless ``A`` holds an infinity or NaN (Nengo's parameters never do).
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Callable, Sequence
from contextvars import ContextVar

import nengo
import numpy as np
from nengo.builder import Model
from nengo.builder.operator import (
    BsrDotInc,
    Copy,
    DotInc,
    ElementwiseInc,
    Operator,
    Reset,
    SparseDotInc,
)
from nengo.builder.signal import Signal
from nengo.builder.transforms import GeneralConvInc
from nengo.connection import LearningRule
from nengo.ensemble import Neurons

from nengo_jax.tensor_node import TensorNode

#: A simplification: takes the operators and the model, returns new operators.
Simplification = Callable[[list, Model], list]

#: (model, protected bases) while `simplify` runs: the model's signals do not
#: change during simplification, so they are looked at once.
_FACTS: ContextVar[tuple | None] = ContextVar("nengo_jax_simplify_facts", default=None)


class SignalUse:
    """Which operators write each base signal, and which bases are protected.

    Parameters
    ----------
    operators : list of Operator
        The operators (one simulation step).
    model : nengo.builder.Model
        The model they were built into (its ``sig`` names the signals of Nengo
        objects, some of them protected).
    """

    def __init__(self, operators: Sequence[Operator], model: Model):
        self.writers = defaultdict(list)  # base -> operators writing into it
        for op in operators:
            for sigs in (op.sets, op.incs, op.updates):
                for sig in sigs:
                    self.writers[sig.base].append(op)
        facts = _FACTS.get()
        if facts is None or facts[0] is not model:
            facts = (model, protected_bases(model))
        self.protected = facts[1]

    def constant(self, sig: Signal) -> bool:
        """Whether ``sig`` always holds its initial value (see the module doc)."""
        base = sig.base
        return (
            not sig.sparse and base not in self.writers and base not in self.protected
        )

    def only_writer(self, op: Operator, sig: Signal) -> bool:
        """Whether ``op`` is the one operator writing any part of ``sig``'s base."""
        return all(w is op for w in self.writers[sig.base])

    def writes_protected(self, op: Operator) -> bool:
        return any(
            s.base in self.protected
            for sigs in (op.sets, op.incs, op.updates)
            for s in sigs
        )


def protected_bases(model: Model) -> set:
    """Bases of signals that may change without an operator, or that must keep
    their operators (see the module docstring)."""
    signals = []
    for obj, sigs in model.sig.items():
        if isinstance(obj, TensorNode):  # (its layer's weights)
            signals.extend(sigs.values())
        elif isinstance(obj, nengo.Ensemble):
            signals.append(sigs.get("encoders"))
        elif isinstance(obj, Neurons):
            signals.append(sigs.get("bias"))
        elif isinstance(obj, nengo.Connection):
            signals.append(sigs.get("weights"))
        elif isinstance(obj, nengo.Node) and obj.size_in == 0:
            signals.append(sigs.get("out"))  # run-time data replaces it
        elif isinstance(obj, LearningRule):
            signals.extend(sigs.values())
    return {sig.base for sig in signals if isinstance(sig, Signal)}


def _dense(sig: Signal) -> np.ndarray:
    return np.asarray(sig.initial_value)


def _holds(sig: Signal, value) -> bool:
    """Whether every element of (dense) ``sig`` equals ``value`` in its dtype."""
    initial = _dense(sig)
    target = np.asarray(value).astype(initial.dtype)
    return bool(np.all(initial == target))


def _is_zero(sig: Signal, use: SignalUse) -> bool:
    return use.constant(sig) and _holds(sig, 0)


def _is_float(*sigs: Signal) -> bool:
    return all(np.dtype(s.dtype).kind == "f" for s in sigs)


def _replace(operators, remove=(), rewrite=None) -> list:
    """The operators without ``remove`` and with ``rewrite`` (old -> new)."""
    remove, rewrite = set(remove), rewrite or {}
    return [rewrite.get(op, op) for op in operators if op not in remove]


def remove_unmodified_resets(operators: list, model: Model) -> list:
    """Remove each `.Reset` that only sets its target to the value it starts at.

    A ``Reset(dst, value)`` that is the only operator writing ``dst``'s base,
    where ``dst`` starts at ``value``, keeps ``dst`` at that value at every step
    without running (the common case: a Node or Ensemble input with no incoming
    connections). ``dst`` then counts as constant for the other
    simplifications. A Reset to another value is kept (folding it into the
    initial value would show in ``sim.signals`` before the first step), as are
    Resets of sparse or protected signals.
    """
    use = SignalUse(operators, model)
    remove = [
        op
        for op in operators
        if type(op) is Reset
        and not op.dst.sparse
        and use.only_writer(op, op.dst)
        and not use.writes_protected(op)
        and _holds(op.dst, op.value)
    ]
    return _replace(operators, remove=remove)


def _zero_input(op: Operator, use: SignalUse) -> bool:
    """Whether ``op`` (an increment) adds zero because an input is constant zero."""
    if type(op) is Copy:
        return op.inc and _is_zero(op.src, use)
    if type(op) is ElementwiseInc:
        return _is_zero(op.A, use) or _is_zero(op.X, use)
    if type(op) in (DotInc, SparseDotInc, BsrDotInc):
        # a sparse or block matrix is not checked, but its input is
        return _is_zero(op.X, use) or (type(op) is DotInc and _is_zero(op.A, use))
    if isinstance(op, GeneralConvInc):
        return _is_zero(op.X, use) or _is_zero(op.W, use)
    return False


def remove_zero_incs(operators: list, model: Model) -> list:
    """Remove increments that always add zero.

    Applies to `.Copy` with ``inc=True`` from a constant zero signal,
    `.ElementwiseInc` with a constant zero ``A`` or ``X``, `.DotInc` with a
    constant zero ``X`` or (dense) ``A``, `.SparseDotInc` and `.BsrDotInc` with
    a constant zero ``X``, and `.ConvInc`/`.ConvTransposeInc` with a constant
    zero input or kernel. "Constant" excludes any signal an operator writes,
    trainable and loadable parameters, and Node outputs that run-time data can
    replace (see the module docstring). The target keeps its value; if nothing
    else writes it, it simply keeps its initial value.
    """
    use = SignalUse(operators, model)
    remove = [
        op for op in operators if _zero_input(op, use) and not use.writes_protected(op)
    ]
    return _replace(operators, remove=remove)


def _identity(sig: Signal, use: SignalUse, n: int) -> bool:
    """Whether ``sig`` is a constant ``n x n`` identity matrix."""
    return (
        use.constant(sig)
        and sig.shape == (n, n)
        and np.array_equal(_dense(sig), np.eye(n))
    )


def _ones(sig: Signal, use: SignalUse, shape: tuple) -> bool:
    """Whether ``sig`` is constant ones that broadcast to (not beyond) ``shape``."""
    return (
        use.constant(sig) and (sig.size == 1 or sig.shape == shape) and _holds(sig, 1)
    )


def remove_identity_muls(operators: list, model: Model) -> list:
    """Turn multiplications by a constant identity into ``Copy(inc=True)``.

    An `.ElementwiseInc` ``Y += A * X`` where ``A`` is constant ones (a scalar
    or ``Y``'s shape) and ``X`` has ``Y``'s shape becomes ``Y += X`` (and
    likewise with the roles of ``A`` and ``X`` swapped). A dense `.DotInc`
    ``Y += A @ X`` with a constant identity ``A`` and 1-D ``X`` and ``Y`` of the
    same length becomes ``Y += X``. ``X`` and ``Y`` must be floating point, so
    the copy computes exactly what the product does. Sparse and block products
    are left, as are protected matrices (trainable or loadable weights: their
    value can change).
    """
    use = SignalUse(operators, model)
    rewrite = {}
    for op in operators:
        if use.writes_protected(op):
            continue
        src = None
        if type(op) is ElementwiseInc:
            y = op.Y.shape
            if op.X.shape == y and _ones(op.A, use, y):
                src = op.X
            elif op.A.shape == y and _ones(op.X, use, y):
                src = op.A
        elif type(op) is DotInc and op.X.ndim == 1 and op.X.shape == op.Y.shape:
            if _identity(op.A, use, op.X.shape[0]):
                src = op.X
        if src is not None and not src.sparse and _is_float(src, op.Y):
            rewrite[op] = Copy(src, op.Y, inc=True, tag=op.tag)
    return _replace(operators, rewrite=rewrite)


def remove_constant_copies(operators: list, model: Model) -> list:
    """Replace a `.Copy` of a constant into a signal only it writes.

    ``Copy(src, dst)`` (a set, writing all of ``dst``) where ``src`` is
    constant (see the module docstring) and the copy is the only operator
    writing ``dst``'s base:

    - is removed if ``dst`` already starts at ``src``'s value (``dst`` is then
      constant too);
    - becomes ``Reset(dst, value)`` if every element of ``src`` is ``value``
      (a Reset is cheaper and merges with other Resets).

    Other constant copies are kept: removing them would need ``dst`` to start
    at another value (see `remove_unmodified_resets`). ``src`` and ``dst``
    must have the same shape and dtype.
    """
    use = SignalUse(operators, model)
    remove, rewrite = [], {}
    for op in operators:
        if type(op) is not Copy or op.inc or op.dst_slice is not None:
            continue
        src, dst = op.src, op.dst
        if (
            not use.constant(src)
            or dst.sparse
            or use.writes_protected(op)
            or not use.only_writer(op, dst)
            or np.dtype(src.dtype) != np.dtype(dst.dtype)
        ):
            continue
        value = _dense(src)
        if op.src_slice is not None:
            value = value[op.src_slice]
        if value.shape != dst.shape:
            continue
        if np.array_equal(_dense(dst), value):
            remove.append(op)
        elif value.size > 0 and np.all(value == value.flat[0]):
            rewrite[op] = Reset(dst, float(value.flat[0]), tag=op.tag)
    return _replace(operators, remove=remove, rewrite=rewrite)


def remove_reset_incs(operators: list, model: Model) -> list:
    """Turn ``Reset(dst, 0)`` followed by a single ``Copy(inc=True)`` into a set.

    When a zero `.Reset` of ``dst`` and one `.Copy` incrementing all of ``dst``
    (no ``dst_slice``) are the only operators writing ``dst``'s base, and the
    copy does not read ``dst``, the pair becomes one ``Copy(inc=False)``: the
    same value, one operator fewer, and no read of the old value. This is the
    input of a Node or Ensemble with one incoming connection.

    `.DotInc` and `.ElementwiseInc` targets are left: Nengo has no set form of
    them that its optimizer could merge (`remove_identity_muls` turns the
    identity ones into copies first).
    """
    use = SignalUse(operators, model)
    remove, rewrite = [], {}
    for op in operators:
        if type(op) is not Reset or op.value != 0 or op.dst.sparse:
            continue
        dst = op.dst
        others = [w for w in use.writers[dst.base] if w is not op]
        if len(others) != 1 or use.writes_protected(op):
            continue
        (inc,) = others
        if (
            type(inc) is Copy
            and inc.inc
            and inc.dst is dst
            and inc.dst_slice is None
            and inc.src.base is not dst.base
            and inc.sets + inc.incs + inc.updates == [dst]
        ):
            remove.append(op)
            rewrite[inc] = Copy(
                inc.src, dst, src_slice=inc.src_slice, inc=False, tag=inc.tag
            )
    return _replace(operators, remove=remove, rewrite=rewrite)


#: The simplifications applied by default, in this order: folding resets exposes
#: constant zeros, whose increments go next; identity products become copies,
#: which (with a reset) become sets; constant copies are folded last.
default_simplifications = [
    remove_unmodified_resets,
    remove_zero_incs,
    remove_identity_muls,
    remove_reset_incs,
    remove_constant_copies,
]


def simplification_name(fn) -> str:
    """A readable name for a simplification (also of a `functools.partial`)."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    return getattr(fn, "__name__", repr(fn))


def simplify(
    operators: Sequence[Operator],
    model: Model,
    simplifications: Sequence[Simplification] = default_simplifications,
    max_passes: int = 100,
) -> tuple[list, dict]:
    """Apply ``simplifications`` in order, repeatedly, until nothing changes.

    Parameters
    ----------
    operators : list of Operator
        The operators, e.g. ``model.operators`` (not modified).
    model : nengo.builder.Model
        The model the operators belong to.
    simplifications : list of callable
        Functions ``(operators, model) -> operators``.
    max_passes : int
        At most this many passes over ``simplifications``.

    Returns
    -------
    operators : list of Operator
        The simplified operators.
    changed : dict
        Simplification name -> how many of the operators it was given it took
        out (removed, or replaced by a rewritten one), over all passes.
    """
    ops = list(operators)
    changed = {simplification_name(fn): 0 for fn in simplifications}
    token = _FACTS.set((model, protected_bases(model)))
    try:
        for _ in range(max_passes):
            ops, any_change = _simplify_pass(ops, model, simplifications, changed)
            if not any_change:
                break
    finally:
        _FACTS.reset(token)
    return ops, changed


def _simplify_pass(ops, model, simplifications, changed) -> tuple[list, bool]:
    """One pass of ``simplifications`` over ``ops``, counting into ``changed``."""
    any_change = False
    for fn in simplifications:
        new = list(fn(ops, model))
        same = len(new) == len(ops) and all(
            a is b for a, b in zip(new, ops, strict=True)
        )
        if not same:
            changed[simplification_name(fn)] += len(set(ops) - set(new))
            ops, any_change = new, True
    return ops, any_change
