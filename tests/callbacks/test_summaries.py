"""NengoSummaries: NengoDL's tags and histograms, read back from the event files."""

import sys

import keras
import nengo
import numpy as np
import pytest
from nengo.exceptions import SimulatorClosed

import nengo_jax
from nengo_jax.callbacks import NengoSummaries
from nengo_jax.callbacks.summaries import summary_tag
from tests.callbacks.events import buckets, event_files, histograms, read_events


def summary_net():
    """The network measured on NengoDL 3.6 (labels with characters it drops)."""
    with nengo.Network(seed=0) as net:
        net.inp = nengo.Node([0.5], label="in")
        net.ens = nengo.Ensemble(5, 1, label="my ens: 1")
        net.b = nengo.Ensemble(4, 1)
        nengo.Connection(net.inp, net.ens)
        net.conn = nengo.Connection(net.ens, net.b, label="c 1")
        net.c2 = nengo.Connection(
            net.ens.neurons, net.b.neurons, transform=np.arange(20).reshape(4, 5) / 100
        )
        net.p = nengo.Probe(net.b)
    net.summarized = [net.ens, net.ens.neurons, net.conn, net.c2, net.b.neurons]
    return net


def fit(sim, callbacks, epochs=2, learning_rate=0.0):
    sim.compile(optimizer=keras.optimizers.SGD(learning_rate), loss="mse")
    x, y = np.ones((4, 3, 1)), np.ones((4, 3, 1))
    sim.fit(x, y, epochs=epochs, callbacks=callbacks, verbose=0)


def one_hot(*indices):
    counts = [0] * 30
    for i in indices:
        counts[i] += 1
    return counts


#: NengoDL 3.6's histograms of `summary_net`'s objects, untrained: tag ->
#: (left edge, right edge, counts of the 30 buckets)
NENGO_DL = {
    "Ensemble_my_ens__1_encoders": (-19.492218, 32.73283, one_hot(0, 5, 16, 26, 29)),
    "Ensemble.neurons_my_ens__1_bias": (
        -16.124084,
        5.743709,
        one_hot(0, 9, 25, 28, 29),
    ),
    "Connection_c_1_weights": (-0.0017114948, 0.0010249108, one_hot(0, 1, 26, 29, 29)),
    "Connection_None_weights": (
        0.0,
        0.19,
        [1, 1, 0, 1, 1, 0, 1, 1, 0, 1, 0, 1, 1, 0, 1]
        + [1, 0, 1, 1, 0, 1, 0, 1, 1, 0, 1, 1, 0, 1, 1],
    ),
    "Ensemble.neurons_None_bias": (-21.13391, 3.1865916, one_hot(0, 14, 27, 29)),
}


def test_tags_and_histograms_match_nengodl(tmp_path):
    net = summary_net()
    with nengo_jax.Simulator(net, minibatch_size=2) as sim:
        fit(sim, [NengoSummaries(tmp_path, sim, net.summarized)])

    (file,) = event_files(tmp_path)  # (in log_dir itself, as NengoDL)
    hists = histograms(read_events(file))
    assert set(hists) == set(NENGO_DL)
    for tag, (left, right, counts) in NENGO_DL.items():
        assert [step for step, _ in hists[tag]] == [0, 1]
        for _, proto in hists[tag]:
            found = buckets(proto)
            assert found[:2] == pytest.approx((left, right), rel=1e-5, abs=1e-9)
            assert found[2] == counts, tag


def test_values_follow_training(tmp_path):
    net = summary_net()
    recorded = []

    class Record(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            recorded.append(
                sim.data.get_params((net.ens, "encoders"), (net.ens.neurons, "bias"))
            )

    with nengo_jax.Simulator(net, minibatch_size=2) as sim:
        summaries = NengoSummaries(tmp_path, sim, [net.ens, net.ens.neurons])
        fit(sim, [Record(), summaries], epochs=3, learning_rate=50.0)

    (file,) = event_files(tmp_path)
    hists = histograms(read_events(file))
    for tag, index in (
        ("Ensemble_my_ens__1_encoders", 0),
        ("Ensemble.neurons_my_ens__1_bias", 1),
    ):
        steps, protos = zip(*hists[tag], strict=True)
        assert steps == (0, 1, 2)
        for epoch, proto in enumerate(protos):
            values = np.asarray(recorded[epoch][index], dtype=np.float64)
            counts, edges = np.histogram(values, bins=30)
            assert buckets(proto) == pytest.approx((edges[0], edges[-1], list(counts)))
            assert proto.sum == pytest.approx(values.sum(), rel=1e-12)
    # training changed the biases, so each epoch's histogram is its own
    assert recorded[0][1].tolist() != recorded[2][1].tolist()


def test_reuse_in_second_fit(tmp_path):
    """One instance serves several fits (NengoDL's raises on the second)."""
    net = summary_net()
    with nengo_jax.Simulator(net) as sim:
        summaries = NengoSummaries(tmp_path, sim, [net.conn])
        fit(sim, [summaries], epochs=2)
        fit(sim, [summaries], epochs=3)
    first, second = event_files(tmp_path)
    for file, epochs in ((first, 2), (second, 3)):
        (items,) = histograms(read_events(file)).values()
        assert [step for step, _ in items] == list(range(epochs))


def test_nothing_written_before_training(tmp_path):
    net = summary_net()
    with nengo_jax.Simulator(net) as sim:
        NengoSummaries(tmp_path / "logs", sim, net.summarized)
    assert not (tmp_path / "logs").exists()


@pytest.mark.parametrize(
    "label, tag",
    [
        ("my ens/1 x:\u00e9", "Ensemble_my_ens/1_x__encoders"),
        ("a>b", "Ensemble_ab_encoders"),
        ("  sp", "Ensemble___sp_encoders"),
        ("x:y;z", "Ensemble_x_yz_encoders"),
        ("1.2-3", "Ensemble_1.2-3_encoders"),
        ("/lead", "Ensemble_/lead_encoders"),
        ("[x](y)", "Ensemble_xy_encoders"),
        ("tab\tx", "Ensemble_tabx_encoders"),
        ("\u4e2d", "Ensemble__encoders"),
        (None, "Ensemble_None_encoders"),
    ],
)
def test_tags_as_nengodl(label, tag):
    """Measured on NengoDL 3.6."""
    assert summary_tag("Ensemble", label, "encoders") == tag


def test_tag_characters_as_nengodl():
    """Of ASCII, NengoDL keeps these, turns space and colon into _, drops the rest
    (and drops non-ASCII letters and digits too)."""
    kept = "-./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"
    for code in list(range(1, 128)) + [0xE9, 0x661, 0xB2, 0xAA, 0x212A]:
        char = chr(code)
        middle = summary_tag("E", f"a{char}b", "x")[len("E_a") : -len("b_x")]
        expected = char if char in kept else "_" if char in " :" else ""
        assert middle == expected, repr(char)


@pytest.mark.parametrize(
    "make_obj",
    [
        lambda net: net.inp,
        lambda net: net.p,
        lambda net: net.ens.neurons[:2],
        lambda net: net.ens[0],
        lambda net: net,
        lambda net: "x",
        lambda net: 3,
    ],
)
def test_refuses_other_objects(make_obj):
    net = summary_net()
    obj = make_obj(net)
    with nengo_jax.Simulator(net) as sim:
        with pytest.raises(ValueError, match="Summaries.objects: must contain") as e:
            NengoSummaries("logs", sim, [net.ens, obj])
    assert repr(obj) in str(e.value)


def test_refuses_objects_without_the_parameter():
    net = summary_net()
    with net:
        direct = nengo.Ensemble(2, 1, neuron_type=nengo.Direct())
        nengo.Connection(net.inp, direct)
    with nengo.Network():
        other = nengo.Ensemble(3, 1, label="other")
    with nengo_jax.Simulator(net) as sim:
        for obj, attr in ((other, "encoders"), (direct.neurons, "bias")):
            with pytest.raises(ValueError, match=f"has no '{attr}' parameter") as e:
                NengoSummaries("logs", sim, [obj])
            assert repr(obj) in str(e.value)
        # a Direct-mode Ensemble has encoders
        NengoSummaries("logs", sim, [direct])


def test_bad_arguments(tmp_path):
    net = summary_net()
    with pytest.raises(ValueError, match=r"sim: must be a nengo_jax.Simulator; got"):
        NengoSummaries(tmp_path, object(), [net.ens])
    with nengo_jax.Simulator(net) as sim:
        with pytest.raises(ValueError, match=r"objects: must be a list.*got NoneType"):
            NengoSummaries(tmp_path, sim, None)
    with pytest.raises(SimulatorClosed, match="NengoSummaries needs an open"):
        NengoSummaries(tmp_path, sim, [net.ens])


def test_missing_tensorboardx(tmp_path, monkeypatch):
    net = summary_net()
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    with nengo_jax.Simulator(net) as sim:
        with pytest.raises(ImportError, match=r"NengoSummaries writes event files"):
            NengoSummaries(tmp_path, sim, [net.ens])
