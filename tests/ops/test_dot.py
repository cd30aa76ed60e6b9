"""Matrix products, copies and elementwise products against nengo.Simulator.

Pure Node networks (Node functions of time, ``synapse=None``): no neurons, so
the results must agree to float32 rounding. At ``minibatch_size=4`` every batch
item gets its own input (``data=``) and is compared with its own Nengo run.
"""

import nengo
import numpy as np
import pytest
import scipy.sparse
from nengo import rc
from nengo.builder import Model
from nengo.builder.operator import (
    BsrDotInc,
    Copy,
    DotInc,
    ElementwiseInc,
    SparseDotInc,
)
from nengo.builder.signal import Signal, SignalDict
from nengo.exceptions import BuildError

from nengo_jax import Simulator
from nengo_jax.ops.dot import SparseDotIncBuilder
from nengo_jax.program.layout import sparse_coords
from nengo_jax.testing import assert_allclose

N_STEPS = 3
B = 4
DT = 0.001


class Stimulus:
    """A Node output of time that can be switched to recorded data per run."""

    def __init__(self, size):
        self.size = size
        self.data = None

    def __call__(self, t):
        if self.data is not None:
            return self.data[int(round(t / DT)) - 1]
        return np.sin(np.arange(self.size) * 1.3 + 40 * t) + 0.2


def sim_args(obj):
    """``(network, kwargs)`` for a Simulator of a network or of a built Model."""
    return (None, {"model": obj}) if isinstance(obj, Model) else (obj, {})


def compare(make, minibatch_size, feed=True):
    """Run ``make()`` on both simulators; ``make`` gives (net or model, stim, probes).

    ``make`` is called again for every Nengo run, since Nengo's optimizer
    rewrites the model it simulates.
    """
    obj, stim, probes = make()
    inputs, data = [None], None
    if minibatch_size is not None and feed:
        rng = np.random.RandomState(0)
        inputs = rng.uniform(-1, 1, size=(B, N_STEPS, stim.size_out))
        data = {stim: inputs}
    net, kwargs = sim_args(obj)
    with Simulator(
        net, dt=DT, minibatch_size=minibatch_size, progress_bar=False, **kwargs
    ) as sim:
        sim.run_steps(N_STEPS, data=data)
        ours = {k: sim.data[p] for k, p in probes.items()}
    if minibatch_size is None:
        ours = {k: v[None] for k, v in ours.items()}

    for b in range(ours[next(iter(ours))].shape[0]):
        obj, stim, probes = make()
        stim.output.data = None if data is None else inputs[b]
        net, kwargs = sim_args(obj)
        with nengo.Simulator(net, dt=DT, progress_bar=False, **kwargs) as ref_sim:
            ref_sim.run_steps(N_STEPS)
        for k, p in probes.items():
            ref = ref_sim.data[p]
            assert np.abs(ref).max() > 0.05, f"{k} is trivially zero"
            assert ours[k].shape[1:] == ref.shape, k
            assert_allclose(ours[k][b], ref, atol=2e-5, err_msg=k)


def connection_network():
    """Transforms and slices as Nengo's connection builder makes them."""
    rng = np.random.RandomState(5)
    n = 6
    coo = scipy.sparse.coo_matrix(
        ([1.0, 2.0, -0.5, 0.25, 3.0], ([0, 2, 2, 0, 3], [1, 5, 0, 1, 3])), shape=(4, n)
    )  # (0, 1) twice: duplicates are summed
    cases = {
        "dense": dict(transform=rng.randn(4, n), size_out=4),
        "scalar": dict(transform=-0.7, size_out=n),
        "vector": dict(transform=rng.randn(n), size_out=n),
        "scipy-csr": dict(
            transform=nengo.transforms.Sparse(
                (5, n), init=scipy.sparse.random(5, n, 0.4, random_state=rng).tocsr()
            ),
            size_out=5,
        ),
        "scipy-coo-duplicates": dict(
            transform=nengo.transforms.Sparse((4, n), init=coo), size_out=4
        ),
        "nengo-sparse": dict(
            transform=nengo.transforms.Sparse(
                (3, n),
                indices=[[0, 5], [2, 0], [1, 1], [2, 4], [0, 5]],
                init=rng.randn(5),
            ),
            size_out=3,
        ),
        "nengo-sparse-dist": dict(
            transform=nengo.transforms.Sparse(
                (3, n),
                indices=[[0, 1], [1, 2], [2, 3]],
                init=nengo.dists.Uniform(-1, 2),
            ),
            size_out=3,
        ),
        "fancy-repeated": dict(pre=[0, 0, 2], post=[1, 1, 0], size_out=3),
        "negative": dict(pre=[-1, -3, 1], post=[-1, 0, -2], size_out=4),
        "boolean": dict(
            pre=np.array([True, False, True, True, False, False]),
            post=np.array([False, True, True, True]),
            size_out=4,
        ),
        "steps": dict(pre=slice(None, None, -2), post=slice(4, None, -2), size_out=5),
        "sliced-dense": dict(
            pre=[4, 1, -1], post=[2, 0, 1], size_out=3, transform=rng.randn(3, 3)
        ),
    }
    with nengo.Network(seed=3) as net:
        stim = nengo.Node(Stimulus(n), label="stim")
        probes = {}
        for name, case in cases.items():
            transform = case.get("transform", 1.0)
            out = nengo.Node(size_in=case["size_out"], label=name)
            pre = stim if "pre" not in case else stim[case["pre"]]
            post = out if "post" not in case else out[case["post"]]
            nengo.Connection(pre, post, transform=transform, synapse=None)
            probes[name] = nengo.Probe(out)
    return net, stim, probes


def test_connection_network_has_the_ops():
    net, _, _ = connection_network()
    model = Model(dt=DT)
    model.build(net)
    types = [type(op) for op in model.operators]
    for op_type in (DotInc, SparseDotInc, ElementwiseInc):
        assert op_type in types
    sparse = [op.A.initial_value for op in model.operators if type(op) is SparseDotInc]
    assert any(scipy.sparse.issparse(A) for A in sparse)
    assert any(isinstance(A, nengo.transforms.SparseMatrix) for A in sparse)
    # both ways of multiplying: dense (small matrices) and gathered
    ratios = [np.prod(A.shape) / len(sparse_coords(A)[0]) for A in sparse]
    assert min(ratios) <= SparseDotIncBuilder.DENSE_RATIO < max(ratios)
    copies = [op for op in model.operators if type(op) is Copy]
    assert any(op.inc and op.dst_slice is not None for op in copies)
    assert any(op.src_slice is not None for op in copies)


@pytest.mark.parametrize("minibatch_size", [None, B])
def test_connection_products(minibatch_size):
    compare(connection_network, minibatch_size)


def spiking_sparse_vs_dense(shape, indices, seed=10):
    """Probe data of a LIF ensemble fed through a sparse transform, and through
    the same transform given dense (Nengo's ``test_sparse``, at a seed where
    a gather and scatter once flipped a spike)."""
    weights = np.random.RandomState(seed).uniform(0.25, 0.75, size=len(indices))
    dense = np.zeros(shape)
    dense[tuple(np.transpose(indices))] = weights
    outputs = []
    for transform in (nengo.transforms.Sparse(shape, indices, init=weights), dense):
        with nengo.Network(seed=seed) as net:
            signal = nengo.processes.WhiteSignal(period=1, high=10, seed=seed + 1)
            u = nengo.Node(signal, size_out=shape[1])
            a = nengo.Ensemble(100, shape[0])
            nengo.Connection(u, a, synapse=None, transform=transform)
            probe = nengo.Probe(a, synapse=0.03)
        with Simulator(net, progress_bar=False) as sim:
            sim.run(0.5)
        outputs.append(sim.data[probe])
    return outputs


def test_small_sparse_transform_equals_dense_to_the_last_bit():
    # 8 elements, 4 nonzero: multiplied as a dense matrix
    indices = [[0, 0], [1, 1], [0, 2], [1, 3]]
    sparse, dense = spiking_sparse_vs_dense((2, 4), indices)
    assert np.abs(dense).max() > 0.1
    np.testing.assert_array_equal(sparse, dense)


def bsr_blocks():
    """A general block-sparse matrix: 3 x 4 blocks of 2 x 3, some rows with several."""
    indptr = np.array([0, 2, 2, 5])  # block row 1 is empty
    indices = np.array([3, 0, 1, 3, 2])  # unsorted, block column 3 used twice
    blocks = np.random.RandomState(7).randn(5, 2, 3)
    return blocks, indices, indptr


def hand_built_model():
    """Operators with shapes that Nengo's own builders rarely make."""
    with nengo.Network() as net:
        stim = nengo.Node(Stimulus(12), label="stim")
        sizes = {
            "dot-matrix-column": 3,
            "dot-scalar-A": 4,
            "dot-vector-A": 1,
            "dot-scalar-X": 3,
            "ew-outer": 12,
            "ew-rows": 6,
            "ew-scalar-X": 4,
            "ew-vector": 4,
            "bsr": 6,
        }
        outs = {k: nengo.Node(size_in=s, label=k) for k, s in sizes.items()}
        probes = {k: nengo.Probe(node) for k, node in outs.items()}
    model = Model(dt=DT)
    model.build(net)
    x = model.sig[stim]["out"]
    y = {k: model.sig[node]["in"] for k, node in outs.items()}
    rng = np.random.RandomState(6)

    def const(value):
        return Signal(np.asarray(value, dtype=float), readonly=True)

    ops = [
        DotInc(
            const(rng.randn(3, 4)),
            x[:4].reshape((4, 1)),
            y["dot-matrix-column"].reshape((3, 1)),
        ),
        DotInc(const(1.5), x[2:6], y["dot-scalar-A"]),
        DotInc(const(rng.randn(5)), x[3:8], y["dot-vector-A"]),
        DotInc(const(rng.randn(3)), x[5].reshape(()), y["dot-scalar-X"]),
        ElementwiseInc(
            x[:3].reshape((3, 1)), x[4:8].reshape((1, 4)), y["ew-outer"].reshape((3, 4))
        ),
        ElementwiseInc(
            const(rng.randn(1, 3)), x[6:8].reshape((2, 1)), y["ew-rows"].reshape((2, 3))
        ),
        ElementwiseInc(const(rng.randn(4)), x[9].reshape(()), y["ew-scalar-X"]),
        ElementwiseInc(x[8:12], x[:4], y["ew-vector"]),
    ]
    blocks, indices, indptr = bsr_blocks()
    ops.append(
        BsrDotInc(
            const(blocks), x, y["bsr"], indices=indices, indptr=indptr, reshape=False
        )
    )
    for op in ops:
        model.add_op(op)
    return model, stim, probes


@pytest.mark.parametrize("minibatch_size", [None, B])
def test_hand_built_ops(minibatch_size):
    compare(hand_built_model, minibatch_size)


def test_bsr_reference_is_scipy():
    """The hand-built BSR operator means what scipy means by it."""
    blocks, indices, indptr = bsr_blocks()
    dense = scipy.sparse.bsr_matrix((blocks, indices, indptr), shape=(6, 12)).toarray()
    assert np.count_nonzero(dense[2:4]) == 0
    assert np.count_nonzero(dense[:2, 9:12]) == 6


def optimized_model():
    """Same-shaped DotIncs on different inputs, which Nengo's optimizer merges."""
    rng = np.random.RandomState(8)
    with nengo.Network(seed=2) as net:
        stim = nengo.Node(Stimulus(9), label="stim")
        probes = {}
        for i in range(3):
            out = nengo.Node(size_in=2, label=f"out{i}")
            nengo.Connection(
                stim[3 * i : 3 * i + 3], out, transform=rng.randn(2, 3), synapse=None
            )
            probes[f"out{i}"] = nengo.Probe(out)
    with nengo.Simulator(net, dt=DT, progress_bar=False) as sim:
        pass
    return sim.model, stim, probes


@pytest.mark.parametrize("minibatch_size", [None, B])
def test_bsr_from_nengo_optimizer(minibatch_size):
    model, _, _ = optimized_model()
    assert any(type(op) is BsrDotInc for op in model.operators)
    # the optimizer merged the Node outputs into one base, so data= cannot
    # replace one of them: every batch item runs the Node function
    compare(optimized_model, minibatch_size, feed=False)


def test_copy_repeated_dst_without_inc_raises(monkeypatch):
    # fail_fast would make Nengo raise the same error while building the model
    monkeypatch.setitem(rc["nengo.Simulator"], "fail_fast", "False")
    with nengo.Network() as net:
        stim = nengo.Node(Stimulus(3))
    model = Model(dt=DT)
    model.build(net)
    dst = Signal(shape=2, name="dst")
    op = Copy(model.sig[stim]["out"], dst, dst_slice=[1, -1, 0])
    model.add_op(op)
    signals = SignalDict()
    op.init_signals(signals)
    with pytest.raises(BuildError, match="repeated indices in ``dst_slice``"):
        op.make_step(signals, DT, None)  # what nengo.Simulator does
    with pytest.raises(BuildError, match="repeated indices in ``dst_slice``"):
        Simulator(None, model=model, progress_bar=False)
