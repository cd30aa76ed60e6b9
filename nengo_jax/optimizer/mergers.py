"""Which operators merge, and how: the one place merge rules live.

*Merge keys*, one rule per operator type (`merge_rule`, found along the
operator's class hierarchy as builders are): planners group operators of one
rule with equal keys (`merge_class`); an operator without a rule, or whose key
is None, runs alone. Each group is then merged by concatenation where its
signals allow (`is_mergeable`, `merge`), or else by gathering
(`gather_merges`).

`nengo.builder.optimizer.OpMerger` merges Reset, Copy, ElementwiseInc, DotInc
and SimNeurons operators whose signals can be concatenated, or whose views
follow each other in one base. nengo_jax adds:

- *synapses*: `.SimProcess` operators of equal `nengo.LinearFilter` synapses,
  concatenated as Nengo concatenates neurons (`MergedSimProcess`);
- *gathers*, for operators whose views lie in one base in any order, repeats
  allowed (many connections from one ensemble, or into one): Copies become one
  Copy with index lists, same-shaped DotIncs one `BsrDotInc` whose block
  column indices pick the inputs, synapses one `MergedSimProcess` and PES
  rules of one shape one `MergedSimPES`, both with index lists. These are
  applied last, to what the concatenating mergers left.

Every merge returns the merged operator and the replacements of the signals
it concatenated, as Nengo's mergers do.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
from nengo.builder.learning_rules import SimPES
from nengo.builder.neurons import SimNeurons
from nengo.builder.operator import (
    BsrDotInc,
    Copy,
    DotInc,
    ElementwiseInc,
    Reset,
    SparseDotInc,
    reshape_dot,
)
from nengo.builder.optimizer import Merger, OpMerger, SigMerger
from nengo.builder.processes import SimProcess
from nengo.builder.signal import Signal
from nengo.synapses import LinearFilter

# --- merge keys -------------------------------------------------------------------

_RULES: dict = {}


def merge_rule(op_type):
    """Register the decorated ``key(op)`` as the merge rule of ``op_type``.

    Operators of the same rule whose keys are equal (and not None) may be
    planned as one group; what they must share is what their builder needs to
    compute them as one.
    """

    def decorator(key):
        _RULES[op_type] = key
        return key

    return decorator


def merge_class(op):
    """``(operator type of the rule, key)`` of ``op``; None if it runs alone."""
    for cls in type(op).__mro__:
        if cls in _RULES:
            key = _RULES[cls](op)
            return None if key is None else (cls, key)
    return None


def mergeable(a, b) -> bool:
    """Whether operators ``a`` and ``b`` may be planned as one group."""
    key = merge_class(a)
    return key is not None and key == merge_class(b)


@merge_rule(Reset)
def reset_key(op):
    value = np.asarray(op.value)
    return (op.dst.dtype.str, op.dst.ndim, value.dtype.str, value.tobytes())


@merge_rule(Copy)
def copy_key(op):
    if op.src_slice is not None or op.dst_slice is not None:
        return None
    return (op.inc, op.src.dtype.str, op.src.ndim, op.dst.dtype.str, op.dst.ndim)


@merge_rule(ElementwiseInc)
def elementwise_inc_key(op):
    # a scalar A merges only with the same scalar; others along the last axis
    scalar = op.A.shape == (1,)
    value = op.A.initial_value.item() if scalar and not op.A.sparse else None
    return (scalar, value, op.A.ndim, op.X.ndim, op.Y.ndim, op.Y.dtype.str)


@merge_rule(DotInc)
def dot_inc_key(op):
    # same-shaped dense matrices merge into one block-sparse product (BsrDotInc);
    # sparse and block-sparse products (subclasses) run alone
    if isinstance(op, (SparseDotInc, BsrDotInc)) or op.A.ndim != 2 or op.A.sparse:
        return None
    return (op.A.shape, op.X.ndim, op.Y.ndim, op.Y.dtype.str)


@merge_rule(SimNeurons)
def neurons_key(op):
    # (neuron types compare and hash by their parameters)
    return op.neurons


class MergedSimProcess(SimProcess):
    """A `.SimProcess` standing for ``n_processes`` merged synapses.

    Each of Nengo's SimProcess operators draws one seed from the simulator's
    generator when it is made, so the merged operator draws ``n_processes``,
    keeping later processes' seeds as in `nengo.Simulator`.

    A gathered merge reads ``input[input_index]`` and writes
    ``output[output_index]`` (flat element indices); a concatenated one has
    no indices and reads and writes its signals whole.
    """

    def __init__(
        self, *args, n_processes=1, input_index=None, output_index=None, **kwargs
    ):
        super().__init__(*args, **kwargs)
        self.n_processes = n_processes
        self.input_index = input_index
        self.output_index = output_index


class MergedSimPES(SimPES):
    """``n_rules`` `.SimPES` operators of one shape, learning rate and dtype.

    Rule ``i`` reads its ``n`` activities at ``pre_filtered[pre_index][i*n:
    (i+1)*n]`` and its ``d`` errors at ``error[error_index][i*d:(i+1)*d]``, and
    sets rows ``i*d`` to ``(i+1)*d`` of ``delta`` (``(n_rules * d, n)``).
    """

    def __init__(
        self,
        pre_filtered,
        error,
        delta,
        learning_rate,
        *,
        n_rules,
        pre_index,
        error_index,
        **kwargs,
    ):
        super().__init__(pre_filtered, error, delta, learning_rate, **kwargs)
        self.n_rules = n_rules
        self.pre_index = pre_index
        self.error_index = error_index


@merge_rule(SimPES)
def pes_key(op):
    """What PES operators must share to be merged (None: cannot be)."""
    if not isinstance(op, SimPES) or isinstance(op, MergedSimPES):
        return None
    pre, error = op.pre_filtered, op.error
    if pre.ndim != 1 or error.ndim != 1 or op.delta.shape != error.shape + pre.shape:
        return None
    return (pre.size, error.size, op.learning_rate, pre.dtype.str, error.dtype.str)


@merge_rule(SimProcess)
def synapse_key(op):
    """What synapse operators must share to be concatenated (None: cannot be).

    A `nengo.LinearFilter` (Nengo's own step) with a 1-D input and output and
    a state ``X`` of shape ``(n_states, size)``, ``n_states > 0``.
    """
    if not isinstance(op, SimProcess) or op.input is None:
        return None
    process = op.process
    if not (
        isinstance(process, LinearFilter)
        and type(process).make_step is LinearFilter.make_step
    ):
        return None
    state = op.state
    if set(state) != {"X"} or state["X"].ndim != 2 or state["X"].size == 0:
        return None  # (no state, e.g. synapse=0: nothing to concatenate)
    if op.input.ndim != 1 or op.output.ndim != 1:
        return None
    if getattr(op, "input_index", None) is not None:
        return None  # (gathered already)
    return (process, op.mode)


def _synapses_mergeable(op, tomerge) -> bool:
    last = tomerge.last_op
    key = synapse_key(op)
    shared = op.t  # every process reads the time
    return (
        key is not None
        and key == synapse_key(last)
        and tomerge.check_signals(last, op)
        and all(s is shared or s not in tomerge.all_signals for s in op.all_signals)
        and SigMerger.check([last.input, op.input])
        and SigMerger.check([last.output, op.output])
        and SigMerger.check([last.state["X"], op.state["X"]], axis=1)
    )


def _merge_synapses(ops):
    u, u_sigr = SigMerger.merge([op.input for op in ops])
    y, y_sigr = SigMerger.merge([op.output for op in ops])
    return _merged_synapse(ops, u, y, Merger.merge_dicts(u_sigr, y_sigr))


def _merged_synapse(ops, u, y, replacements, u_index=None, y_index=None):
    """The `MergedSimProcess` of synapses ``ops`` reading ``u`` (at ``u_index``)
    and writing ``y`` (at ``y_index``): their states are concatenated, and those
    replacements added to ``replacements``. Returns it and ``replacements``."""
    X, x_sigr = SigMerger.merge([op.state["X"] for op in ops], axis=1)
    replacements.update(x_sigr)
    merged = MergedSimProcess(
        ops[0].process,
        u,
        y,
        ops[0].t,
        mode=ops[0].mode,
        state={"X": X},
        n_processes=sum(getattr(op, "n_processes", 1) for op in ops),
        input_index=None if u_index is None else np.array(u_index, dtype=np.int64),
        output_index=None if y_index is None else np.array(y_index, dtype=np.int64),
    )
    return merged, replacements


def is_type_mergeable(op) -> bool:
    """Whether a concatenating merger may take ``op``."""
    return OpMerger.is_type_mergeable(type(op)) or synapse_key(op) is not None


def is_mergeable(op, tomerge) -> bool:
    """Whether ``op`` can join ``tomerge`` (a Nengo `OpsToMerge`) by concatenation."""
    if synapse_key(tomerge.last_op) is not None:
        return _synapses_mergeable(op, tomerge)
    return OpMerger.is_type_mergeable(tomerge.optype) and OpMerger.is_mergeable(
        op, tomerge
    )


def merge(ops):
    """Merge ``ops`` by concatenation: ``(merged operator, signal replacements)``."""
    if synapse_key(ops[0]) is not None:
        return _merge_synapses(ops)
    return OpMerger.merge(ops)


# --- gathers ----------------------------------------------------------------------


def _flat_range(sig):
    """``(base, first element)`` if ``sig`` is a contiguous range of its base.

    (Its elements in C order are the base's elements ``first`` to ``first +
    sig.size``, whatever the shapes.)
    """
    if sig.sparse or sig.size == 0:
        return None
    if not sig.is_view:
        return sig, 0
    expected = 1
    for n, stride in zip(reversed(sig.shape), reversed(sig.elemstrides), strict=True):
        if n > 1 and stride != expected:
            return None
        expected *= n
    return sig.base, sig.elemoffset


def _flat(base, start, stop):
    """The 1-D view of elements ``start`` to ``stop`` of ``base``."""
    return base.reshape(base.size)[start:stop]


def gather_merges(ops) -> list:
    """Merges of ``ops`` (independent operators) that gather: a list of runs.

    Copies without slices from contiguous pieces of one base (or from
    separate signals of one shape, concatenated first) to the same kind of
    destination become one Copy with index lists into flat views (with
    ``inc``, repeated destinations add up; without, a destination is written
    once). Synapses gather their inputs and outputs alike, and PES rules their
    activities and errors. DotIncs whose matrices have one shape and whose
    inputs are block-aligned pieces of one base become one `BsrDotInc`. Each
    run is a list of two or more operators of ``ops``.
    """
    buckets = defaultdict(list)
    # signals of their own used twice are gathered from, not concatenated
    # (concatenating would copy them)
    shared = Counter(sig for op in ops for sig in _gathered_sides(op))
    for op in ops:
        key = _gather_key(op, shared)
        if key is not None:
            buckets[key].append(op)
    runs = []
    for key, members in buckets.items():
        if key[-1] == "set":  # each destination written once
            members = _unique_destinations(members)
        if key[0] == "pes" and members[0].delta.is_view:
            runs.extend(_adjacent_deltas(members))
        elif len(members) > 1:
            runs.append(members)
    return runs


def _adjacent_deltas(ops) -> list:
    """``ops`` (PES rules whose deltas are views of one base) in runs of two or
    more whose deltas follow each other in memory, in that order."""
    ops = sorted(ops, key=lambda op: _flat_range(op.delta)[1])
    runs = [[ops[0]]]
    for op in ops[1:]:
        last = runs[-1][-1]
        if _flat_range(op.delta)[1] == _flat_range(last.delta)[1] + last.delta.size:
            runs[-1].append(op)
        else:
            runs.append([op])
    return [run for run in runs if len(run) > 1]


def _gathered_sides(op) -> tuple:
    """The signals a gathering merge of ``op`` would read or write by index."""
    if type(op) is Copy:
        return op.src, op.dst
    if synapse_key(op) is not None:
        return op.input, op.output
    if pes_key(op) is not None:
        return op.pre_filtered, op.error
    return ()


def _destination(op):
    return op.dst if type(op) is Copy else op.output


def _gather_key(op, shared):
    if type(op) is Copy and op.src_slice is None and op.dst_slice is None:
        src, dst = _flat_range(op.src), _flat_range(op.dst)
        if src is None or dst is None or op.src.dtype != op.dst.dtype:
            return None
        if src[0] is dst[0] and not (
            src[1] + op.src.size <= dst[1] or dst[1] + op.dst.size <= src[1]
        ):
            return None  # (one base: the groups' reads and writes never overlap)
        writes = "inc" if op.inc else "set"
        return ("copy", _side_key(op.src, shared), _side_key(op.dst, shared), writes)
    key = synapse_key(op)
    if key is not None and not op.state["X"].is_view:
        if _flat_range(op.input) is None or _flat_range(op.output) is None:
            return None
        sides = (_side_key(op.input, shared), _side_key(op.output, shared))
        return ("synapse", key, *sides, "inc" if op.mode == "inc" else "set")
    key = pes_key(op)
    if key is not None:
        if any(_flat_range(s) is None for s in (op.pre_filtered, op.error, op.delta)):
            return None
        # deltas are concatenated, or views that follow each other
        delta = op.delta.base if op.delta.is_view else "own"
        sides = (_side_key(op.pre_filtered, shared), _side_key(op.error, shared))
        return ("pes", key, *sides, delta)
    if type(op) is DotInc and op.A.ndim == 2 and not op.A.is_view and not op.A.sparse:
        (m, n), x, y = op.A.shape, _flat_range(op.X), _flat_range(op.Y)
        if x is None or y is None or op.X.size != n or op.Y.size != m:
            return None
        if op.A.dtype != op.X.dtype:
            return None
        # inputs (and outputs that are views) at offsets alike modulo the
        # block size: blocks of one view of their base
        y_key = (y[0], y[1] % m) if op.Y.is_view else None
        return ("dot", op.A.shape, x[0], x[1] % n, y_key)
    return None


def _side_key(sig, shared):
    """Copies gather from (or scatter into) one base, or signals of their own
    of one shape, each used once, which are concatenated first."""
    if sig.is_view or shared[sig] > 1:
        return sig.base
    return ("own", sig.dtype.str, sig.shape[1:], sig.ndim)


def _unique_destinations(ops) -> list:
    """The operators of ``ops`` whose destinations overlap none before them."""
    written, unique = {}, []  # base -> a mask of its elements written so far
    for op in ops:
        dst = _destination(op)
        base, start = _flat_range(dst)
        if base not in written:
            written[base] = np.zeros(base.size, bool)
        elements = written[base][start : start + dst.size]
        if not elements.any():
            elements[:] = True
            unique.append(op)
    return unique


def gather_merge(ops):
    """Merge a run from `gather_merges`: ``(merged operator, replacements)``."""
    if type(ops[0]) is Copy:
        return _gather_copies(ops)
    if synapse_key(ops[0]) is not None:
        return _gather_synapses(ops)
    if pes_key(ops[0]) is not None:
        return _gather_pes(ops)
    return _gather_dots(ops)


def _covering(sigs):
    """The view of their base from the first signal to the end of the last,
    and each signal's element indices in it."""
    starts = [_flat_range(sig)[1] for sig in sigs]
    first = min(starts)
    end = max(start + sig.size for start, sig in zip(starts, sigs, strict=True))
    indices = [
        i - first
        for start, sig in zip(starts, sigs, strict=True)
        for i in range(start, start + sig.size)
    ]
    return _flat(sigs[0].base, first, end), indices


def _gather_side(sigs, replacements):
    """One flat signal holding ``sigs`` and the element indices of each in it:
    views are gathered from their base; signals of their own are concatenated
    (their replacements added to ``replacements``)."""
    if any(sig.is_view for sig in sigs) or len(set(sigs)) < len(sigs):
        return _covering(sigs)
    merged, sigr = SigMerger.merge(sigs)
    replacements.update(sigr)
    return merged.reshape(merged.size), list(range(merged.size))


def _gather_copies(ops):
    replacements = {}
    src, src_slice = _gather_side([op.src for op in ops], replacements)
    dst, dst_slice = _gather_side([op.dst for op in ops], replacements)
    merged = Copy(src, dst, src_slice=src_slice, dst_slice=dst_slice, inc=ops[0].inc)
    return merged, replacements


def _gather_synapses(ops):
    replacements = {}
    u, u_index = _gather_side([op.input for op in ops], replacements)
    y, y_index = _gather_side([op.output for op in ops], replacements)
    return _merged_synapse(ops, u, y, replacements, u_index, y_index)


def _gather_pes(ops):
    replacements = {}
    pre, pre_index = _gather_side([op.pre_filtered for op in ops], replacements)
    error, error_index = _gather_side([op.error for op in ops], replacements)
    if ops[0].delta.is_view:  # (in memory order: see _adjacent_deltas)
        start = _flat_range(ops[0].delta)[1]
        shape = (sum(op.delta.shape[0] for op in ops),) + ops[0].delta.shape[1:]
        delta = _flat(ops[0].delta.base, start, start + int(np.prod(shape)))
        delta = delta.reshape(shape)
    else:
        delta, delta_sigr = SigMerger.merge([op.delta for op in ops])
        replacements.update(delta_sigr)
    merged = MergedSimPES(
        pre,
        error,
        delta,
        ops[0].learning_rate,
        n_rules=len(ops),
        pre_index=np.array(pre_index, dtype=np.int64),
        error_index=np.array(error_index, dtype=np.int64),
    )
    return merged, replacements


def _block_view(base, starts, size):
    """The view of ``base`` from the first of ``starts`` to the last plus ``size``,
    and the block index of each start in it."""
    first = min(starts)
    view = _flat(base, first, max(starts) + size)
    return view, [(start - first) // size for start in starts]


def _gather_dots(ops):
    first = ops[0]
    m, n = first.A.shape
    replacements = {}
    if first.Y.is_view:  # each product adds to its block row of one base
        Y, rows = _block_view(first.Y.base, [_flat_range(op.Y)[1] for op in ops], m)
    else:  # each product sets a new output, concatenated in order
        Y, y_sigr = SigMerger.merge([op.Y for op in ops])
        replacements.update(y_sigr)
        rows = list(range(len(ops)))
    X, columns = _block_view(first.X.base, [_flat_range(op.X)[1] for op in ops], n)
    # blocks in row order, as block-sparse (BSR) matrices store them
    order = sorted(range(len(ops)), key=rows.__getitem__)
    ops = [ops[i] for i in order]
    data = np.array([op.A.initial_value for op in ops], dtype=first.A.dtype)
    readonly = all(op.A.readonly for op in ops)
    A = Signal(
        data,
        name=f"bsr_gathered<{ops[0].A.name}, ..., {ops[-1].A.name}>",
        readonly=readonly,
    )
    replacements.update(
        (
            op.A,
            Signal(
                data[i],
                name=f"{op.A.name}[{i}]",
                base=A,
                offset=i * A.itemsize * m * n,
                readonly=readonly,
            ),
        )
        for i, op in enumerate(ops)
    )
    counts = np.bincount([rows[i] for i in order], minlength=Y.size // m)
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    indices = np.array([columns[i] for i in order], dtype=np.int64)
    reshape = reshape_dot(
        first.A.initial_value,
        first.X.initial_value,
        first.Y.initial_value,
        tag=first.tag,
    )
    merged = BsrDotInc(A, X, Y, indices=indices, indptr=indptr, reshape=reshape)
    return merged, replacements
