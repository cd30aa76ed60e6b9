"""nengo_jax.dists: sample shapes and statistics against their targets, NengoDL
3.6's values (measured on it, as noted), parameters and their validation, and
use as Nengo parameters in a Simulator."""

import copy
import math
import pickle

import nengo
import numpy as np
import pytest
from nengo.exceptions import ReadonlyError, ValidationError

import nengo_jax
from nengo_jax.dists import Glorot, He, TruncatedNormal, VarianceScaling


def truncated_variance(c):
    """Variance of a standard normal restricted to ``[-c, c]``."""
    density = math.exp(-c * c / 2) / math.sqrt(2 * math.pi)
    return 1 - 2 * c * density / math.erf(c / math.sqrt(2))


#: Variance of a standard normal cut at two standard deviations (0.7737...).
TRUNC2 = truncated_variance(2.0)

#: A (n, d) = (fan_out, fan_in) sample shape, and its fans.
N, D = 1000, 400
FANS = {"fan_in": D, "fan_out": N, "fan_avg": (N + D) / 2}


def rng():
    return np.random.RandomState(7)


def test_exported():
    assert nengo_jax.dists.Glorot is Glorot
    for cls in (VarianceScaling, Glorot, He, TruncatedNormal):
        assert issubclass(cls, nengo.dists.Distribution)
    assert issubclass(Glorot, VarianceScaling) and issubclass(He, VarianceScaling)


@pytest.mark.parametrize(
    "dist",
    [
        VarianceScaling(),
        VarianceScaling(2, "fan_in", "normal"),
        VarianceScaling(0.5, "fan_out", "uniform"),
        Glorot(),
        Glorot(distribution="normal"),
        He(),
        He(distribution="uniform"),
        TruncatedNormal(),
        TruncatedNormal(1, 2, 0.5),
    ],
)
def test_shapes(dist):
    for n, d, shape in [(5, None, (5,)), (5, 1, (5, 1)), (5, 3, (5, 3))]:
        x = dist.sample(n, d, rng=rng())
        assert x.shape == shape and x.dtype == np.float64
        assert np.all(np.isfinite(x))
    # Empty samples (NengoDL 3.6 divides by a zero fan here).
    assert dist.sample(0, rng=rng()).shape == (0,)
    assert dist.sample(0, 3, rng=rng()).shape == (0, 3)
    assert dist.sample(3, 0, rng=rng()).shape == (3, 0)


@pytest.mark.parametrize("scale", [0.5, 3])
@pytest.mark.parametrize("mode", ["fan_in", "fan_out", "fan_avg"])
def test_variance_scaling_uniform(scale, mode):
    x = VarianceScaling(scale, mode, "uniform").sample(N, D, rng=rng())
    variance = scale / FANS[mode]
    limit = math.sqrt(3 * variance)
    assert x.shape == (N, D)
    assert abs(x.mean()) < 0.02 * math.sqrt(variance)
    assert x.var() == pytest.approx(variance, rel=0.02)
    assert np.all(np.abs(x) <= limit) and np.abs(x).max() > 0.999 * limit


@pytest.mark.parametrize("scale", [0.5, 3])
@pytest.mark.parametrize("mode", ["fan_in", "fan_out", "fan_avg"])
def test_variance_scaling_normal_is_truncated_and_uncorrected(scale, mode):
    x = VarianceScaling(scale, mode, "normal").sample(N, D, rng=rng())
    stddev = math.sqrt(scale / FANS[mode])
    assert abs(x.mean()) < 0.02 * stddev
    # A normal with stddev sqrt(scale / fan), redrawn beyond 2 stddev; its
    # variance is not scaled back up to scale / fan (as in NengoDL 3.6).
    assert x.var() == pytest.approx(TRUNC2 * stddev**2, rel=0.02)
    assert np.all(np.abs(x) <= 2 * stddev) and np.abs(x).max() > 0.99 * 2 * stddev


@pytest.mark.parametrize("distribution", ["uniform", "normal"])
def test_fans_of_1d_samples(distribution):
    """``sample(n)`` has a fan-in of 1 and a fan-out of n, as ``sample(n, 1)``."""
    n = 200_000
    factor = 1 if distribution == "uniform" else TRUNC2
    for mode, fan in [("fan_in", 1), ("fan_out", n), ("fan_avg", (n + 1) / 2)]:
        dist = VarianceScaling(2, mode, distribution)
        x = dist.sample(n, rng=rng())
        assert x.shape == (n,)
        assert x.var() == pytest.approx(factor * 2 / fan, rel=0.02)
        np.testing.assert_array_equal(dist.sample(n, 1, rng=rng())[:, 0], x)


#: VarianceScaling(2, mode, distribution).sample(n, d, rng=RandomState(0)):
#: (variance, largest magnitude), measured on NengoDL 3.6.
VARIANCE_SCALING_MEASURED = {
    ("fan_in", "uniform", 1000, 500): (4.001583e-03, 1.095443e-01),
    ("fan_in", "uniform", 2000, None): (2.087313e00, 2.448552e00),
    ("fan_in", "normal", 1000, 500): (3.089285e-03, 1.264908e-01),
    ("fan_in", "normal", 2000, None): (1.523969e00, 2.826503e00),
    ("fan_out", "uniform", 1000, 500): (2.000791e-03, 7.745951e-02),
    ("fan_out", "uniform", 2000, None): (1.043656e-03, 5.475129e-02),
    ("fan_out", "normal", 1000, 500): (1.544643e-03, 8.944254e-02),
    ("fan_out", "normal", 2000, None): (7.619847e-04, 6.320253e-02),
    ("fan_avg", "uniform", 1000, 500): (2.667722e-03, 8.944254e-02),
    ("fan_avg", "uniform", 2000, None): (2.086269e-03, 7.741066e-02),
    ("fan_avg", "normal", 1000, 500): (2.059523e-03, 1.032793e-01),
    ("fan_avg", "normal", 2000, None): (1.523208e-03, 8.935954e-02),
}


@pytest.mark.parametrize("key", sorted(VARIANCE_SCALING_MEASURED, key=str))
def test_variance_scaling_matches_nengo_dl(key):
    """The same draws from the same rng as NengoDL 3.6 (values measured on it)."""
    mode, distribution, n, d = key
    x = VarianceScaling(2, mode, distribution).sample(
        n, d, rng=np.random.RandomState(0)
    )
    variance, largest = VARIANCE_SCALING_MEASURED[key]
    assert x.var() == pytest.approx(variance, rel=2e-6)
    assert np.abs(x).max() == pytest.approx(largest, rel=2e-6)


def test_samples_match_nengo_dl():
    # Measured on NengoDL 3.6, each .sample(2, 3, rng=np.random.RandomState(1));
    # the same bits (NumPy's legacy streams are reproducible across platforms).
    measured = {
        TruncatedNormal(0.5, 2, 1.0): [
            [-0.14483440802701497, -0.2681087093368313, 1.1380781921141971],
            [0.0012592490451798222, 0.1551435848991285, 0.5844274934311857],
        ],
        He(): [
            [0.9378162329678931, -0.35319773009935107, -0.3049401033476625],
            [-0.6194787228338868, 0.499643327749359, 1.0073675417556105],
        ],
        Glorot(): [
            [-0.18179567920383133, 0.4827067801166762, -1.095194532340451],
            [-0.43306763541422166, -0.77391906762114, -0.893141389877536],
        ],
    }
    for dist, values in measured.items():
        x = dist.sample(2, 3, rng=np.random.RandomState(1))
        np.testing.assert_array_equal(x, values)


@pytest.mark.parametrize("distribution", ["uniform", "normal"])
@pytest.mark.parametrize("scale", [0.5, 1, 2])
def test_glorot_and_he_are_variance_scaling(distribution, scale):
    glorot = Glorot(scale, distribution)
    assert (glorot.scale, glorot.mode, glorot.distribution) == (
        scale,
        "fan_avg",
        distribution,
    )
    np.testing.assert_array_equal(
        glorot.sample(N, D, rng=rng()),
        VarianceScaling(scale, "fan_avg", distribution).sample(N, D, rng=rng()),
    )
    # He's scale is a gain on the standard deviation: the variance multiplier
    # (its ``scale`` attribute, as in NengoDL 3.6) is its square.
    he = He(scale, distribution)
    assert (he.scale, he.mode, he.distribution) == (scale**2, "fan_in", distribution)
    x = he.sample(N, D, rng=rng())
    np.testing.assert_array_equal(
        x, VarianceScaling(scale**2, "fan_in", distribution).sample(N, D, rng=rng())
    )
    factor = 1 if distribution == "uniform" else TRUNC2
    assert x.var() == pytest.approx(factor * scale**2 / D, rel=0.02)


def test_defaults():
    # Measured on NengoDL 3.6 (signatures and attributes).
    vs = VarianceScaling()
    assert (vs.scale, vs.mode, vs.distribution) == (1, "fan_avg", "uniform")
    glorot = Glorot()
    assert (glorot.scale, glorot.mode, glorot.distribution) == (1, "fan_avg", "uniform")
    he = He()
    assert (he.scale, he.mode, he.distribution) == (1, "fan_in", "normal")
    tn = TruncatedNormal()
    assert (tn.mean, tn.stddev, tn.limit) == (0, 1, 2)
    # The default limit is two standard deviations.
    assert TruncatedNormal(stddev=0.5).limit == 1.0
    assert TruncatedNormal(1, 3).limit == 6
    # Default He: variance 1 / fan_in before truncation.
    x = he.sample(N, D, rng=rng())
    assert x.var() == pytest.approx(TRUNC2 / D, rel=0.02)
    assert np.abs(x).max() <= 2 / math.sqrt(D)


@pytest.mark.parametrize(
    "mean, stddev, limit",
    [(0, 1, None), (1, 2, 3), (-2, 0.5, 0.25), (3, 1, 3.5), (0.5, 0.1, 0.3)],
)
def test_truncated_normal(mean, stddev, limit):
    dist = TruncatedNormal(mean, stddev, limit)
    limit = 2 * stddev if limit is None else limit
    assert dist.limit == limit
    x = dist.sample(N, D, rng=rng())
    assert np.all(np.abs(x - mean) <= limit)
    assert np.abs(x - mean).max() > 0.99 * limit
    assert x.mean() == pytest.approx(mean, abs=0.01 * stddev)
    variance = stddev**2 * truncated_variance(limit / stddev)
    assert x.var() == pytest.approx(variance, rel=0.02)
    y = dist.sample(200_000, rng=rng())
    assert y.shape == (200_000,) and np.all(np.abs(y - mean) <= limit)


def test_truncated_normal_matches_nengo_dl():
    # Measured on NengoDL 3.6, each .sample(1000, 500, rng=RandomState(0)):
    # (mean, variance, min, max).
    measured = {
        TruncatedNormal(): (1.849393e-03, 7.723213e-01, -1.999932, 1.999996),
        TruncatedNormal(1, 2, 3): (1.002791, 2.201979, -1.999970, 3.999998),
    }
    for dist, (mean, var, low, high) in measured.items():
        x = dist.sample(1000, 500, rng=np.random.RandomState(0))
        assert x.mean() == pytest.approx(mean, rel=2e-6)
        assert x.var() == pytest.approx(var, rel=2e-6)
        assert x.min() == pytest.approx(low, rel=2e-6)
        assert x.max() == pytest.approx(high, rel=2e-6)


def test_zero_scale_gives_zeros():
    for dist in [
        VarianceScaling(0),
        VarianceScaling(0, "fan_in", "normal"),
        Glorot(0, "normal"),
        He(0),
    ]:
        np.testing.assert_array_equal(dist.sample(4, 3, rng=rng()), np.zeros((4, 3)))
    # A uniform one still draws from the rng, as on NengoDL 3.6 (measured: the
    # next draw after Glorot(0).sample(2, 2, rng=RandomState(0)) is the fifth).
    r = np.random.RandomState(0)
    np.testing.assert_array_equal(Glorot(0).sample(2, 2, rng=r), np.zeros((2, 2)))
    assert r.uniform() == 0.4236547993389047
    # stddev 0 with an explicit limit: every sample is the mean.
    np.testing.assert_array_equal(
        TruncatedNormal(1.5, 0, 1).sample(4, rng=rng()), np.full(4, 1.5)
    )


def test_parameters():
    # mode and distribution are lower-cased (as on NengoDL 3.6).
    dist = VarianceScaling(2.5, "FAN_IN", "Normal")
    assert (dist.mode, dist.distribution) == ("fan_in", "normal")
    # Reprs, measured on NengoDL 3.6 (except He's, see below).
    assert repr(VarianceScaling()) == "VarianceScaling()"
    assert (
        repr(dist) == "VarianceScaling(scale=2.5, mode='fan_in', distribution='normal')"
    )
    assert repr(Glorot()) == "Glorot()"
    assert repr(Glorot(2, "normal")) == "Glorot(scale=2, distribution='normal')"
    assert repr(He()) == "He()"
    assert repr(TruncatedNormal()) == "TruncatedNormal(limit=2)"
    assert (
        repr(TruncatedNormal(1, 2, 3)) == "TruncatedNormal(mean=1, stddev=2, limit=3)"
    )
    assert repr(TruncatedNormal(stddev=0.5)) == "TruncatedNormal(stddev=0.5, limit=1.0)"
    # He's repr shows the scale given, so that it evaluates to an equal
    # distribution (NengoDL 3.6 shows the squared scale: "He(scale=9, ...)").
    assert repr(He(3, "uniform")) == "He(scale=3, distribution='uniform')"
    for dist in [He(3, "uniform"), He(0.5), Glorot(2, "normal"), TruncatedNormal(1, 2)]:
        assert eval(repr(dist)) == dist
    # Equality and hashing by type and parameters.
    assert Glorot() == Glorot() and hash(Glorot()) == hash(Glorot())
    assert Glorot() != Glorot(2) and Glorot() != VarianceScaling()
    assert He(2) == He(2) and He() != Glorot()
    assert TruncatedNormal() == TruncatedNormal(limit=2)
    # Frozen, and copied or pickled whole.
    with pytest.raises(ReadonlyError, match="scale is read-only"):
        Glorot().scale = 2
    with pytest.raises(ReadonlyError):
        TruncatedNormal().limit = 1
    for dist in [He(3, "uniform"), Glorot(0.5), TruncatedNormal(1, 2, 3)]:
        for other in [copy.copy(dist), pickle.loads(pickle.dumps(dist))]:
            assert other == dist and repr(other) == repr(dist)
            np.testing.assert_array_equal(
                other.sample(3, 2, rng=rng()), dist.sample(3, 2, rng=rng())
            )


@pytest.mark.parametrize(
    "make, message",
    [
        # Messages measured on NengoDL 3.6.
        (
            lambda: VarianceScaling(scale=-1),
            "VarianceScaling.scale: Value must be greater than or equal to 0",
        ),
        (lambda: VarianceScaling(scale="a"), "VarianceScaling.scale: Must be a number"),
        (
            lambda: VarianceScaling(scale=None),
            "VarianceScaling.scale: Parameter is not",
        ),
        (
            lambda: VarianceScaling(mode="foo"),
            r"VarianceScaling.mode: String 'foo' must be one of \['fan_in', 'fan_out'",
        ),
        (
            lambda: VarianceScaling(distribution="truncated_normal"),
            "VarianceScaling.distribution: String 'truncated_normal' must be one of "
            r"\['uniform', 'normal'\]",
        ),
        (lambda: Glorot(scale=-1), "Glorot.scale: Value must be greater than or"),
        (lambda: Glorot(distribution="foo"), "Glorot.distribution: String 'foo'"),
        (lambda: He(distribution="foo"), "He.distribution: String 'foo'"),
        (lambda: He(scale="a"), "He.scale: Must be a number"),
        (lambda: TruncatedNormal(stddev=-1), "TruncatedNormal.stddev: Value must be"),
        (lambda: TruncatedNormal(stddev=0), "TruncatedNormal.limit: Value must be gr"),
        (
            lambda: TruncatedNormal(limit=0),
            r"TruncatedNormal.limit: .* than 0 \(got 0\)",
        ),
        (lambda: TruncatedNormal(limit=-1), "TruncatedNormal.limit: Value must be gr"),
        (lambda: TruncatedNormal(mean=None), "TruncatedNormal.mean: Parameter is not"),
        (lambda: TruncatedNormal(mean="a"), "TruncatedNormal.mean: Must be a number"),
    ],
)
def test_validation(make, message):
    with pytest.raises(ValidationError, match=message):
        make()


def test_he_negative_scale_is_its_square():
    # As on NengoDL 3.6, He takes any gain and squares it.
    assert He(-2) == He(2) and He(-2).scale == 4


def test_dists_as_nengo_parameters():
    """Transforms, Dense and Convolution inits, encoders and intercepts.

    The weights and outputs are NengoDL 3.6's for the same network and seed
    (measured on it; it keeps float32 weights, hence the tolerance).
    """
    dists = nengo_jax.dists
    with nengo.Network(seed=0) as net:
        a = nengo.Node([0.5, -0.25])
        b = nengo.Node(size_in=3)
        c1 = nengo.Connection(a, b, transform=dists.Glorot())
        c2 = nengo.Connection(a, b, transform=nengo.Dense((3, 2), init=dists.He()))
        c3 = nengo.Connection(
            a,
            b[:2],
            transform=nengo.Dense((2, 2), init=dists.TruncatedNormal(stddev=0.3)),
        )
        e = nengo.Ensemble(
            4,
            2,
            encoders=dists.VarianceScaling(mode="fan_out", distribution="normal"),
            normalize_encoders=False,
            intercepts=dists.TruncatedNormal(0, 0.3),
        )
        c4 = nengo.Connection(a, e.neurons, transform=dists.He(distribution="uniform"))
        img = nengo.Node(np.linspace(-1, 1, 16))
        conv_out = nengo.Node(size_in=8)
        c5 = nengo.Connection(
            img,
            conv_out,
            transform=nengo.Convolution(
                2, (4, 4, 1), kernel_size=(3, 3), init=dists.Glorot()
            ),
        )
        p = nengo.Probe(b)
        p_conv = nengo.Probe(conv_out)
    assert c1.transform.init == dists.Glorot()

    measured = {
        c1: [
            [-0.030568784102797508, 0.4068753123283386],
            [1.063843846321106, -0.6669148802757263],
            [0.1827458143234253, 1.0529028177261353],
        ],
        c2: [
            [1.4125115871429443, 0.24839484691619873],
            [1.0633763074874878, 0.8896011114120483],
            [-1.0476438999176025, 0.34975114464759827],
        ],
        c3: [
            [0.05906965956091881, 0.24286121129989624],
            [-0.21523797512054443, -0.15157516300678253],
        ],
        c4: [
            [0.07028012722730637, -1.082924723625183],
            [-0.38632506132125854, -0.7557517290115356],
            [-0.6357328295707703, -0.38670822978019714],
            [0.3480103015899658, -0.22394947707653046],
        ],
        c5: np.reshape(
            [
                [-0.9972473382949829, 0.8011980056762695, -0.08501109480857849],
                [-0.12712247669696808, 0.8992055058479309, 0.5055023431777954],
                [0.9785377383232117, -0.5107030868530273, -0.3273547887802124],
                [-1.1013665199279785, -0.5896281003952026, -1.0151423215866089],
                [-0.577699601650238, -1.035051703453064, -0.690895676612854],
                [-0.5871162414550781, 0.018057702109217644, 0.45947161316871643],
            ],
            (3, 3, 1, 2),
        ),
    }
    with nengo_jax.Simulator(net, seed=0, progress_bar=False) as sim:
        for conn, weights in measured.items():
            np.testing.assert_allclose(sim.data[conn].weights, weights, rtol=1e-6)
        np.testing.assert_allclose(
            sim.data[e].encoders,
            [
                [-0.353647917509079, 0.36300963163375854],
                [0.3185720443725586, 0.7003792524337769],
                [0.15884453058242798, 0.15794186294078827],
                [-0.2518663704395294, -0.8970049023628235],
            ],
            rtol=1e-6,
        )
        np.testing.assert_allclose(
            sim.data[e].intercepts,
            [
                0.3072686493396759,
                -0.2056974470615387,
                0.2277408093214035,
                0.11656308174133301,
            ],
            rtol=1e-6,
        )
        sim.run_steps(3)
        np.testing.assert_allclose(
            sim.data[p][-1],
            [0.1635124832391739, 0.3093101382255554, -0.2581765055656433],
            rtol=1e-5,
        )
        np.testing.assert_allclose(
            sim.data[p_conv][-1],
            [0.003700957167893648, -0.09445913136005402, -0.056610047817230225]
            + [-0.20920225977897644, -0.23754310607910156, -0.5534317493438721]
            + [-0.29785412549972534, -0.6681748628616333],
            rtol=1e-5,
        )
