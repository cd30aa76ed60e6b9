"""ConvInc and ConvTransposeInc against nengo.Simulator's NumPy convolutions."""

import jax
import jax.numpy as jnp
import nengo
import numpy as np
import pytest
from jax import lax
from nengo import rc
from nengo.builder import Model
from nengo.builder.operator import Copy
from nengo.builder.signal import Signal
from nengo.builder.transforms import ConvInc, conv2d
from nengo.exceptions import BuildError
from nengo.transforms import Convolution, ConvolutionTranspose

import nengo_jax.ops.conv  # noqa: F401  (registers the builders)
from nengo_jax import Simulator
from nengo_jax.maths.conv import conv
from nengo_jax.ops.conv import ConvIncBuilder
from nengo_jax.program.registry import BuildContext
from nengo_jax.testing import assert_allclose

N_STEPS = 3
B = 4


def spatial(shape, channels, channels_last):
    """A `.Convolution` input shape from its spatial part and channel count."""
    return tuple(shape) + (channels,) if channels_last else (channels,) + tuple(shape)


def transforms():
    """One transform for each feature (kept in one network: one compilation)."""
    rng = np.random.RandomState(3)
    out = {}
    for cl in (True, False):
        for pad in ("same", "valid"):
            out[f"1d-{pad}-cl{cl}"] = Convolution(
                3, spatial((7,), 2, cl), (3,), (1,), padding=pad, channels_last=cl
            )
            out[f"1d-stride-{pad}-cl{cl}"] = Convolution(
                2, spatial((8,), 3, cl), (4,), (3,), padding=pad, channels_last=cl
            )
            out[f"2d-stride-{pad}-cl{cl}"] = Convolution(
                4,
                spatial((6, 7), 2, cl),
                (3, 2),
                (2, 3),
                padding=pad,
                channels_last=cl,
                init=rng.randn(3, 2, 2, 4),
            )
            out[f"t1d-stride-{pad}-cl{cl}"] = ConvolutionTranspose(
                3, spatial((4,), 2, cl), None, (3,), (2,), padding=pad, channels_last=cl
            )
            out[f"t2d-stride-{pad}-cl{cl}"] = ConvolutionTranspose(
                2,
                spatial((3, 4), 3, cl),
                None,
                (2, 3),
                (3, 2),
                padding=pad,
                channels_last=cl,
                init=rng.randn(2, 3, 3, 2),
            )
        out[f"groups-cl{cl}"] = Convolution(
            6,
            spatial((5, 4), 4, cl),
            (3, 3),
            padding="same",
            channels_last=cl,
            groups=2,
        )
        out[f"depthwise-cl{cl}"] = Convolution(
            3,
            spatial((9,), 3, cl),
            (2,),
            (2,),
            padding="same",
            channels_last=cl,
            groups=3,
        )
        # an output larger than the smallest one that the strides allow
        out[f"t2d-outshape-cl{cl}"] = ConvolutionTranspose(
            2,
            spatial((3, 3), 2, cl),
            spatial((7, 8), 2, cl),
            (3, 3),
            (3, 3),
            padding="same",
            channels_last=cl,
        )
    # "same" with a kernel smaller than the stride: Nengo pads by zero, not -1
    out["same-small-kernel"] = Convolution(2, (10, 1), (1,), (4,), padding="same")
    out["t-same-small-kernel"] = ConvolutionTranspose(
        2, (3, 1), (10, 2), (1,), (4,), padding="same"
    )
    return out


def conv_network(size_in):
    """A Node of time through every transform; returns (net, stim, probes)."""
    with nengo.Network(seed=1) as net:
        stim = nengo.Node(
            lambda t: np.sin(np.arange(size_in) * 0.7 + 50 * t) + 0.1, label="stim"
        )
        probes = {}
        for name, transform in transforms().items():
            out = nengo.Node(size_in=transform.size_out, label=name)
            nengo.Connection(
                stim[: transform.size_in], out, transform=transform, synapse=None
            )
            probes[name] = nengo.Probe(out)
    return net, stim, probes


def run_nengo(net, probes, n_steps):
    with nengo.Simulator(net, progress_bar=False) as sim:
        sim.run_steps(n_steps)
    return {name: sim.data[p] for name, p in probes.items()}


def test_conv_ops_present():
    net, _, probes = conv_network(200)
    model = Model()
    model.build(net)
    types = {type(op) for op in model.operators}
    assert {nengo.builder.transforms.ConvInc} <= types
    assert {nengo.builder.transforms.ConvTransposeInc} <= types


@pytest.mark.parametrize("minibatch_size", [None, B])
def test_convolutions_match_nengo(minibatch_size):
    size_in = max(t.size_in for t in transforms().values())
    net, stim, probes = conv_network(size_in)
    with Simulator(net, minibatch_size=minibatch_size, progress_bar=False) as sim:
        if minibatch_size is None:
            sim.run_steps(N_STEPS)
            ours = {name: sim.data[p][None] for name, p in probes.items()}
            inputs = [None]
        else:
            # a different input for each batch item, so mixing items would show
            rng = np.random.RandomState(0)
            inputs = rng.uniform(-1, 1, size=(B, N_STEPS, size_in))
            sim.run_steps(N_STEPS, data={stim: inputs})
            ours = {name: sim.data[p] for name, p in probes.items()}

    for b, x in enumerate(inputs):
        if x is not None:
            stim.output = lambda t, x=x: x[int(round(t / 0.001)) - 1]
        ref = run_nengo(net, probes, N_STEPS)
        for name in probes:
            assert ours[name].shape[1:] == ref[name].shape, name
            assert np.abs(ref[name]).max() > 0.1, name
            assert_allclose(ours[name][b], ref[name], atol=2e-5, err_msg=name)


@pytest.mark.parametrize("minibatch_size", [None, B])
def test_kernel_written_by_an_operator(minibatch_size):
    """A kernel that an operator writes has a batch axis; each item uses its own."""
    conv = Convolution(3, (5, 2), (2,), (1,), padding="same")
    w0 = np.random.RandomState(2).randn(*conv.kernel_shape)

    def make_model():
        with nengo.Network() as net:
            stim = nengo.Node(lambda t: np.cos(np.arange(conv.size_in) + 30 * t))
            out = nengo.Node(size_in=conv.size_out)
            probe = nengo.Probe(out)
        model = Model(dt=0.001)
        model.build(net)
        W = Signal(w0.copy(), name="W")
        model.add_op(Copy(Signal(np.full(w0.shape, 0.25)), W, inc=True))
        model.add_op(ConvInc(W, model.sig[stim]["out"], model.sig[out]["in"], conv))
        return model, probe

    model, probe = make_model()
    with nengo.Simulator(None, model=model, progress_bar=False) as sim:
        sim.run_steps(N_STEPS)
        ref = sim.data[probe]
    model, probe = make_model()
    with Simulator(
        None, model=model, minibatch_size=minibatch_size, progress_bar=False
    ) as sim:
        sim.run_steps(N_STEPS)
        ours = sim.data[probe]
    ours = ours if minibatch_size else ours[None]
    for b in range(ours.shape[0]):
        assert_allclose(ours[b], ref, atol=2e-5)
    # the kernel grew each step, so a stale kernel would not match
    assert not np.allclose(ref[1] - ref[0], ref[2] - ref[1], atol=1e-3)


def test_conv3d_beyond_nengo(monkeypatch):
    """3-D convolutions (Nengo's NumPy simulator stops at 2-D) sum 2-D ones."""
    # fail_fast would run Nengo's own make_step, which refuses 3-D, at build time
    monkeypatch.setitem(rc["nengo.Simulator"], "fail_fast", "False")
    rng = np.random.RandomState(4)
    conv = Convolution(
        2,
        (3, 5, 4, 2),
        (2, 3, 2),
        (1, 2, 1),
        padding="valid",
        init=rng.randn(2, 3, 2, 2, 2),
    )
    x = rng.randn(*conv.input_shape.shape)
    with nengo.Network() as net:
        stim = nengo.Node(x.ravel())
        out = nengo.Node(size_in=conv.size_out)
        nengo.Connection(stim, out, transform=conv, synapse=None)
        probe = nengo.Probe(out)
    with Simulator(net, progress_bar=False) as sim:
        sim.run_steps(1)
        ours = sim.data[probe][0].reshape(conv.output_shape.shape)
    w = conv.init
    # depth is "valid" with stride 1: output depth i sums kernel slices j over
    # input depth i + j, each a 2-D convolution that Nengo computes itself
    desired = np.stack(
        [
            sum(
                conv2d(x[i + j][None], w[j], pad="VALID", stride=(2, 1))[0]
                for j in range(2)
            )
            for i in range(2)
        ]
    )
    assert_allclose(ours, desired, atol=2e-5)


def test_kernel_shape_mismatch_raises():
    conv = Convolution(3, (5, 2), (2,), (1,))
    op = ConvInc(
        Signal(np.zeros((3, 2, 3))), Signal(np.zeros(10)), Signal(np.zeros(12)), conv
    )
    ctx = BuildContext(
        model=None, layout=None, dt=0.001, minibatch_size=1, dtype="float32"
    )
    with pytest.raises(BuildError, match=r"kernel W .* must have shape \(2, 2, 3\)"):
        ConvIncBuilder(op, ctx)


@pytest.mark.parametrize(
    "nd, strides, padding, data_format",
    [
        (1, 1, "same", "channels_last"),
        (2, 2, "valid", "channels_last"),
        (2, 2, "same", "channels_first"),
        (3, (1, 2, 1), "same", "channels_last"),
    ],
)
def test_conv_gradients_equal_lax(nd, strides, padding, data_format):
    """`conv` and its gradients equal `jax.lax.conv_general_dilated`'s."""
    rng = np.random.RandomState(0)
    strides = (strides,) * nd if isinstance(strides, int) else strides
    last = data_format == "channels_last"
    spatial = (7, 6, 5)[:nd]
    x = rng.randn(*((2,) + spatial + (3,) if last else (2, 3) + spatial))
    w = rng.randn(*((3,) * nd + (3, 4)))
    axes = tuple(range(1, nd + 1)) if last else tuple(range(2, nd + 2))
    io = (0, nd + 1 if last else 1) + axes
    numbers = lax.ConvDimensionNumbers(io, (nd + 1, nd) + tuple(range(nd)), io)
    same = lax.padtype_to_pads(spatial, (3,) * nd, strides, padding.upper())
    # a transposed convolution's input dilation and cropping, too
    for dilation, pads in (((1,) * nd, same), ((2,) * nd, [(1, -1)] * nd)):

        def reference(x, w, dilation=dilation, pads=pads):
            y = lax.conv_general_dilated(
                x, w, strides, pads, lhs_dilation=dilation, dimension_numbers=numbers
            )
            return jnp.sum(jnp.sin(y))

        def ours(x, w, dilation=dilation, pads=pads):
            return jnp.sum(jnp.sin(conv(x, w, strides, pads, dilation, numbers)))

        assert_allclose(ours(x, w), reference(x, w), rtol=1e-5)
        for a, b in zip(
            jax.grad(ours, (0, 1))(x, w),
            jax.grad(reference, (0, 1))(x, w),
            strict=True,
        ):
            assert_allclose(a, b, atol=1e-4, rtol=1e-5)
