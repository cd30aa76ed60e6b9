"""The one input checker: every bad argument is refused by name, and changes nothing."""

import keras
import nengo
import numpy as np
import pytest
from nengo.exceptions import ValidationError

import nengo_jax
from tests.helpers import assert_same, committed

MB = 2


def two_input_net():
    with nengo.Network(seed=0) as net:
        net.a = nengo.Node(np.zeros(1), label="a")
        net.b = nengo.Node(np.zeros(1), label="b")
        net.ens = nengo.Ensemble(10, 1)
        nengo.Connection(net.a, net.ens, synapse=None)
        nengo.Connection(net.b, net.ens, synapse=None)
        net.p = nengo.Probe(net.ens, label="p")
    return net


@pytest.fixture
def sim():
    net = two_input_net()
    with nengo_jax.Simulator(net, minibatch_size=MB, progress_bar=False) as sim:
        sim.net = net
        sim.compile(keras.optimizers.SGD(0.1), loss={net.p: "mse"})
        sim.run_steps(3)
        yield sim


def refused(sim, call, attr, match):
    """``call(sim)`` raises a ValidationError about ``attr`` and changes nothing;
    the simulator still runs."""
    before = committed(sim)
    with pytest.raises(ValidationError, match=match) as info:
        call(sim)
    assert info.value.attr == attr
    assert_same(committed(sim), before)
    sim.run_steps(2)
    assert sim.n_steps == before["n_steps"] + 2


@pytest.mark.parametrize(
    "steps, match",
    [
        (2.7, r"whole number of steps \(an int\); got 2.7 of type float"),
        ("3", r"got '3' of type str"),
        (0.5, r"got 0.5 of type float"),
        (True, r"got True of type bool"),
        (-1, r"non-negative; got -1"),
    ],
)
def test_run_steps_takes_whole_numbers_of_steps(sim, steps, match):
    refused(sim, lambda s: s.run_steps(steps), "n_steps", match)


def test_numpy_integers_are_steps(sim):
    sim.run_steps(np.int64(2))
    sim.run_steps(np.array(2))
    assert sim.n_steps == 7


@pytest.mark.parametrize(
    "seconds, match",
    [
        (np.nan, r"finite number of seconds; got nan"),
        (np.inf, r"finite number of seconds; got inf"),
        ("0.1", r"number of seconds; got '0.1' of type str"),
        (-0.1, r"Must be positive \(got -0.1\)"),
        ([0.1], r"got \[0.1\] of type list"),
    ],
)
def test_run_takes_finite_seconds(sim, seconds, match):
    refused(sim, lambda s: s.run(seconds), "time_in_seconds", match)


def test_run_data_is_checked(sim):
    net, ok = sim.net, np.zeros((MB, 4, 1))
    bad_data = [
        ([ok], r"data must be a dict of object \(or label\) -> array; got list"),
        ({net.a: ok, "a": ok}, r"given twice in data \(as itself and by its label\)"),
        ({net.a: np.full((MB, 4, 1), np.nan)}, r"must be finite; got nan at index"),
        ({"a": np.full((MB, 4, 1), np.inf)}, r"must be finite; got inf"),
        ({net.a: np.full((MB, 4, 1), "x")}, r"must be numeric; got dtype <U1"),
        ({net.a: [[[0.0]], [[0.0], [1.0]]]}, r"must be an array; got a list"),
        ({net.a: np.zeros((4, 1))}, r"Add the batch axis"),
    ]
    for data, match in bad_data:
        refused(sim, lambda s, data=data: s.run_steps(4, data=data), "data", match)


def test_keras_data_is_checked(sim):
    net = sim.net
    x, y = np.zeros((MB, 4, 1)), np.zeros((MB, 4, 1))
    both = {net.a: x, net.b: x}
    bad = [
        (lambda s: s.fit(both, None), "y", r"fit needs targets y .*got y=None"),
        (lambda s: s.evaluate(both), "y", r"evaluate needs targets y"),
        (lambda s: s.predict([x, x, x]), "x", r"x has 3 arrays, for the network's 2"),
        (lambda s: s.predict(x[:1]), "x", r"must be at least the Simulator's minibat"),
        (
            lambda s: s.fit({net.a: x, "a": x, net.b: x}, {net.p: y}),
            "x",
            "given twice in x",
        ),
        (
            lambda s: s.fit(both, {net.p: np.full((MB, 4, 1), np.inf)}),
            "y",
            r"must be finite; got inf .*only for an output whose loss is .*nan_mse",
        ),
        (  # (NaN targets are "no target" only for nan_mse: see test_losses.py)
            lambda s: s.fit(both, {net.p: np.full((MB, 4, 1), np.nan)}),
            "y",
            r"must be finite; got nan .*only for an output whose loss is .*nan_mse",
        ),
        (
            lambda s: s.predict({net.a: np.full((MB, 4, 1), np.inf), net.b: x}),
            "x",
            "must be finite",
        ),
        (lambda s: s.predict(both, n_steps=2.5), "n_steps", "whole number of steps"),
    ]
    for call, attr, match in bad:
        refused(sim, call, attr, match)
    # the same calls, well formed, run
    sim.fit(both, {net.p: y}, verbose=0)
    assert sim.predict(both)[net.p].shape == (MB, 4, 1)


def test_one_array_for_the_one_input_node():
    with nengo.Network(seed=0) as net:
        inp = nengo.Node(np.zeros(1))
        p = nengo.Probe(inp)
    with nengo_jax.Simulator(net, minibatch_size=MB, progress_bar=False) as sim:
        x = np.ones((MB, 3, 1))
        np.testing.assert_array_equal(sim.predict(x)[p], x)
        # a nested list reads as one array
        np.testing.assert_array_equal(sim.predict(x.tolist())[p], x)


def test_keras_inputs_as_nengo_dl_reads_them(sim):
    """NengoDL (measured on 3.6): one array feeds the first input Node, a list
    feeds the input Nodes in order, and items beyond a multiple of the
    minibatch size are dropped with a warning."""
    net = sim.net
    a, b = np.full((MB, 4, 1), 0.5), np.full((MB, 4, 1), -0.25)
    both = sim.predict({net.a: a, net.b: b})[net.p]
    np.testing.assert_array_equal(sim.predict([a, b])[net.p], both)
    np.testing.assert_array_equal(sim.predict(a)[net.p], sim.predict({net.a: a})[net.p])
    np.testing.assert_array_equal(sim.predict([a])[net.p], sim.predict(a)[net.p])
    more = np.concatenate([a, a[:1]])
    match = rf"items \({MB + 1}\) is not a multiple .* first {MB} are used"
    with pytest.warns(UserWarning, match=match):
        out = sim.predict({net.a: more, net.b: np.concatenate([b, b[:1]])})[net.p]
    np.testing.assert_array_equal(out, both)
    with pytest.warns(UserWarning, match="not a multiple"):
        sim.fit(
            {net.a: more, net.b: np.concatenate([b, b[:1]])},
            {net.p: np.zeros((MB + 1, 4, 1))},
            verbose=0,
        )
