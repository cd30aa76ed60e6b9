"""Trained parameters: sim.data, get_params, save/load, freeze, and resets."""

import io
import os
import pickle
import tracemalloc
import zipfile

import keras
import nengo
import numpy as np
import pytest
from nengo.exceptions import SimulatorClosed, ValidationError

import nengo_jax
from nengo_jax.testing import assert_allclose
from tests.helpers import MB, STEPS, objects, train, weights_net


def signal(sim, obj, attr):
    owner = obj.neurons if attr == "bias" else obj
    return np.array(sim.signals[sim.model.sig[owner][attr]])


def raw_params(sim):
    return {key: np.array(value) for key, value in sim._params.items()}


def assert_params_equal(a, b):
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def assert_get_params_equal(a, b, order_a, order_b, **tols):
    """Compare get_params of two networks object by object, in order."""
    for obj_a, obj_b in zip(order_a, order_b, strict=True):
        assert a[obj_a].keys() == b[obj_b].keys()
        for name in a[obj_a]:
            assert_allclose(a[obj_a][name], b[obj_b][name], **tols)


# -- sim.data ---------------------------------------------------------------------


def test_seed_example_sim_data_shows_trained_values(capsys):
    # the example from the documentation, as written (Nengo 4 gives this
    # connection no weights: it has no transform)
    with nengo.Network() as net:
        node = nengo.Node([0])
        ens = nengo.Ensemble(10, 1)
        conn = nengo.Connection(node, ens)
        nengo.Probe(ens)
    with nengo_jax.Simulator(net, progress_bar=False) as sim:
        print(sim.data[conn].weights)
        print(sim.data[ens].bias)
        print(sim.data[ens].encoders)
        print(sim.data[ens])
    assert "BuiltEnsemble" in capsys.readouterr().out

    # ...and after training
    net = weights_net()
    with nengo_jax.Simulator(net, minibatch_size=MB, progress_bar=False) as sim:
        built_ens, built_conn = sim.model.params[net.ens], sim.model.params[net.c_out]
        assert sim.data[net.ens] is built_ens  # untrained: Nengo's own arrays
        train(sim, net)
        data = sim.data[net.ens]
        for name in ("bias", "scaled_encoders"):
            attr = "encoders" if name == "scaled_encoders" else name
            assert_allclose(getattr(data, name), signal(sim, net.ens, attr))
            assert not np.allclose(getattr(data, name), getattr(built_ens, name))
        assert_allclose(
            data.encoders,
            data.scaled_encoders * net.ens.radius / built_ens.gain[:, None],
        )
        np.testing.assert_array_equal(data.gain, built_ens.gain)
        np.testing.assert_array_equal(data.eval_points, built_ens.eval_points)
        # max_rates and intercepts follow the trained biases
        rates, intercepts = net.ens.neuron_type.max_rates_intercepts(
            data.gain, data.bias
        )
        assert_allclose(data.max_rates, rates)
        assert_allclose(data.intercepts, intercepts)
        for conn in (net.c_in, net.c_out):
            weights = sim.data[conn].weights
            assert_allclose(weights, signal(sim, conn, "weights"))
            assert not np.allclose(weights, sim.model.params[conn].weights)
        assert sim.data[net.c_out].transform is built_conn.transform
        with pytest.raises(ValueError, match="read-only"):
            sim.data[net.ens].bias[0] = 1.0
        # the built values come back with the built parameters
        sim.reset()
        assert sim.data[net.ens] is built_ens
        assert sim.data[net.c_out] is built_conn


def pes_net():
    with nengo.Network(seed=0) as net:
        net.stim = nengo.Node([0.7])
        pre = nengo.Ensemble(10, 1)
        post = nengo.Node(size_in=1)
        nengo.Connection(net.stim, pre)
        net.conn = nengo.Connection(
            pre, post, learning_rule_type=nengo.PES(1e-3), function=lambda x: 0
        )
        error = nengo.Node(size_in=1)
        nengo.Connection(post, error)
        nengo.Connection(net.stim, error, transform=-1)
        nengo.Connection(error, net.conn.learning_rule)
        net.p = nengo.Probe(post)
    return net


@pytest.mark.parametrize("minibatch_size", [None, 2])
def test_learned_weights_count_as_parameters(tmp_path, minibatch_size):
    """NengoDL (measured on 3.6): sim.data shows the weights a learning rule
    changed (one per batch item with a minibatch_size), save_params saves them,
    reset(include_trainable=False) and soft_reset keep them, reset() restores
    the built ones."""
    net = pes_net()
    conn = net.conn
    with nengo_jax.Simulator(
        net, minibatch_size=minibatch_size, progress_bar=False
    ) as sim:
        batch = () if minibatch_size is None else (minibatch_size,)
        built = np.array(sim.data[conn].weights)
        assert built.shape == batch + (1, 10)
        sim.run_steps(50)
        learned = np.array(sim.data[conn].weights)
        assert learned.shape == batch + (1, 10)
        signal = np.array(sim.signals[sim.model.sig[conn]["weights"]])
        np.testing.assert_array_equal(learned, signal)  # (sim.signals agrees)
        assert not np.allclose(learned, built)
        assert_get_params_equal(
            sim.get_params(conn), {conn: {"weights": learned}}, [conn], [conn]
        )
        sim.save_params(tmp_path / "learned")

        sim.reset(include_trainable=False)
        np.testing.assert_array_equal(sim.data[conn].weights, learned)
        sim.soft_reset()
        np.testing.assert_array_equal(sim.data[conn].weights, learned)
        sim.reset()
        np.testing.assert_array_equal(sim.data[conn].weights, built)
        sim.load_params(tmp_path / "learned")
        np.testing.assert_array_equal(sim.data[conn].weights, learned)
        # learning continues from the loaded weights, as from the kept ones
        sim.run_steps(10)
        loaded = np.array(sim.data[conn].weights)
        sim.load_params(tmp_path / "learned")
        sim.reset(include_trainable=False)
        sim.run_steps(10)
        np.testing.assert_array_equal(sim.data[conn].weights, loaded)


# -- named export -----------------------------------------------------------------


def test_get_params():
    net = weights_net()
    with nengo_jax.Simulator(net, minibatch_size=MB, progress_bar=False) as sim:
        train(sim, net, epochs=1)
        params = sim.get_params()
        assert set(params) == {net.ens, net.c_in, net.c_out}
        assert set(params[net.ens]) == {"encoders", "scaled_encoders", "gain", "bias"}
        assert set(params[net.c_in]) == {"weights"}
        assert_allclose(params[net.ens]["bias"], signal(sim, net.ens, "bias"))
        assert_allclose(
            params[net.ens]["scaled_encoders"], signal(sim, net.ens, "encoders")
        )
        assert_allclose(params[net.c_out]["weights"], sim.data[net.c_out].weights)
        # copies the caller owns
        params[net.ens]["bias"][:] = 0
        assert not np.allclose(sim.data[net.ens].bias, 0)
        # a subset, by object or list
        assert set(sim.get_params(net.ens)) == {net.ens}
        assert set(sim.get_params([net.c_in, net.ens])) == {net.c_in, net.ens}
        with pytest.raises(ValidationError, match="Expected a Network"):
            sim.get_params("ens")
        with pytest.raises(ValidationError, match="not part of the network"):
            sim.get_params(nengo.Ensemble(5, 1, add_to_container=False))


# -- saving and loading -------------------------------------------------------------


def test_save_load_into_a_rebuilt_network(tmp_path):
    path = tmp_path / "params"
    x = np.random.RandomState(3).uniform(-1, 1, size=(MB, STEPS, 1))
    net = weights_net(parallel=True)
    with nengo_jax.Simulator(net, minibatch_size=MB, progress_bar=False) as sim:
        train(sim, net)
        sim.save_params(path)  # ".npz" is added, as by np.savez
        trained = sim.get_params()
        expected = sim.predict({net.inp: x})[net.p]
        evaluated = sim.evaluate({net.inp: x}, {net.p: x**2}, verbose=0)["loss"]
    assert sorted(os.listdir(tmp_path)) == ["params.npz"]

    # new objects: Nengo's optimizer merges signals into other arrays
    net2 = weights_net(parallel=True)
    with nengo_jax.Simulator(net2, minibatch_size=MB, progress_bar=False) as sim2:
        sim2.load_params(str(path) + ".npz")
        assert_get_params_equal(
            trained, sim2.get_params(), objects(net), objects(net2), atol=0, rtol=0
        )
        assert_allclose(sim2.predict({net2.inp: x})[net2.p], expected)
        # training continues from the loaded parameters
        sim2.compile(keras.optimizers.Adam(0.02), loss={net2.p: "mse"})
        loss = sim2.evaluate({net2.inp: x}, {net2.p: x**2}, verbose=0)["loss"]
        assert loss == pytest.approx(evaluated, rel=1e-5)
        n_arrays = len(sim2._params)
    # without Nengo's optimizer every signal has an array of its own
    with nengo_jax.Simulator(net2, optimize=False, progress_bar=False) as sim3:
        assert len(sim3._params) > n_arrays
        sim3.load_params(path)
        assert_get_params_equal(
            trained, sim3.get_params(), objects(net), objects(net2), atol=0, rtol=0
        )


def test_rate_parameters_load_into_the_spiking_twin(tmp_path):
    path = tmp_path / "rate.npz"
    rate = weights_net(nengo.LIFRate())
    with nengo_jax.Simulator(rate, minibatch_size=MB, progress_bar=False) as sim:
        train(sim, rate)
        sim.save_params(path)
        trained = sim.get_params()

    spiking = weights_net(nengo.LIF())  # built separately
    with nengo_jax.Simulator(spiking, progress_bar=False) as sim:
        before = sim.get_params()
        sim.load_params(path)
        loaded = sim.get_params()
        sim.run_steps(200)
        spikes = sim.data[spiking.p]
    assert_get_params_equal(
        trained, loaded, objects(rate), objects(spiking), atol=0, rtol=0
    )
    assert not np.allclose(
        before[spiking.ens]["bias"], loaded[spiking.ens]["bias"], atol=1e-3
    )
    # the spiking network computes with the trained parameters
    with nengo.Simulator(spiking, progress_bar=False) as ref:
        ref.run_steps(200)
    assert not np.allclose(spikes, ref.data[spiking.p], atol=1e-3)


def test_save_load_with_state_continues_exactly(tmp_path):
    path = tmp_path / "state.npz"
    net = weights_net(nengo.LIF())
    with nengo_jax.Simulator(net, minibatch_size=2, progress_bar=False) as sim:
        sim.run_steps(30)
        sim.save_params(path, include_state=True)
        sim.run_steps(20)
        expected = sim.data[net.p][:, 30:]
    net2 = weights_net(nengo.LIF())
    with nengo_jax.Simulator(net2, minibatch_size=2, progress_bar=False) as sim2:
        sim2.load_params(path, include_state=True)
        assert sim2.n_steps == 30
        assert sim2.time == pytest.approx(0.03)
        sim2.run_steps(20)
        assert_allclose(sim2.data[net2.p], expected)
    # the state needs the same minibatch size; nothing changes otherwise
    with nengo_jax.Simulator(weights_net(nengo.LIF()), progress_bar=False) as sim3:
        before = {k: np.array(v) for k, v in sim3._state.items()}
        mismatch = r"shape \(1, 20\) here but \(2, 20\)"
        with pytest.raises(ValidationError, match=mismatch):
            sim3.load_params(path, include_state=True)
        assert_params_equal(before, {k: np.array(v) for k, v in sim3._state.items()})
        assert sim3.n_steps == 0
        sim3.load_params(path)  # the parameters alone load


def structure_error_cases():
    def other_size():
        return weights_net(n_neurons=21)

    def extra_connection():
        net = weights_net()
        with net:
            nengo.Connection(net.inp, net.out, transform=2.0, label="extra")
        return net

    def fewer_ensembles():
        with nengo.Network(seed=0) as net:
            net.inp = nengo.Node(np.sin)
            net.out = nengo.Node(size_in=1)
            nengo.Connection(net.inp, net.out, transform=1.0)
        return net

    def missing_connection():
        with nengo.Network(seed=0) as net:
            inp = nengo.Node(np.sin)
            ens = nengo.Ensemble(20, 1, neuron_type=nengo.LIFRate())
            nengo.Connection(inp, ens, transform=1.0)
        return net

    return [
        (
            other_size,
            r"ensemble0.encoders \(Ensemble 'ens'\) has shape \(21, 1\) here but "
            r"\(20, 1\) in the file",
        ),
        (
            extra_connection,
            r"connection2.weights \(Connection 'extra'\) with shape \(\) here "
            "corresponds to nothing in the file",
        ),
        (
            fewer_ensembles,
            r"connection0.weights \(Connection\) with shape \(\) here corresponds "
            r"to ensemble0.encoders \(Ensemble 'ens'\) with shape \(20, 1\)",
        ),
        (
            missing_connection,
            r"the file has connection1.weights \(Connection\) with shape \(1, 20\), "
            "which this network does not have",
        ),
    ]


@pytest.mark.parametrize(
    "make, match", structure_error_cases(), ids=lambda v: getattr(v, "__name__", "")
)
def test_other_structure_is_refused_and_nothing_changes(tmp_path, make, match):
    path = tmp_path / "params.npz"
    with nengo_jax.Simulator(weights_net(seed=1), progress_bar=False) as sim:
        sim.save_params(path)
    with nengo_jax.Simulator(make(), progress_bar=False) as sim:
        before = raw_params(sim)
        with pytest.raises(ValidationError, match=match):
            sim.load_params(path)
        assert_params_equal(before, raw_params(sim))


class Malicious:
    """Unpickling this would set ``UNPICKLED``."""

    def __reduce__(self):
        return (_unpickled, ())


UNPICKLED = []


def _unpickled():
    UNPICKLED.append(True)
    return "boom"


def npy_bytes(array):
    f = io.BytesIO()
    np.save(f, array)
    return f.getvalue()


def bad_files(good):
    data = good.read_bytes()
    arrays = dict(np.load(good))
    members = {f"{name}.npy": npy_bytes(value) for name, value in arrays.items()}
    bias = members["ensemble0.bias.npy"]
    corrupt = bytearray(data)  # a bit of the bias flipped (np.savez stores as is)
    corrupt[data.find(bias) + len(bias) - 1] ^= 1
    weights = members["connection1.weights.npy"]
    return {
        "missing": None,
        "truncated": data[: len(data) // 2],
        "empty": b"",
        "text": b"these are not parameters\n",
        "npy": ("npy", np.arange(3.0)),
        "pickle": pickle.dumps({"ensemble0.encoders": np.zeros((20, 1))}),
        "no marker": ("npz", {k: v for k, v in arrays.items() if k != "__format__"}),
        "object array": ("npz", {**arrays, "ensemble0.bias": np.array([Malicious()])}),
        "missing array": (
            "npz",
            {k: v for k, v in arrays.items() if k != "connection1.weights"},
        ),
        "bad header": (
            "zip",
            {**members, "ensemble0.bias.npy": b"\x93NUMPY\x01\x00\x10\x00{'descr': ?"},
        ),
        "truncated array": (
            "zip",
            {**members, "connection1.weights.npy": weights[:-8]},
        ),
        # found only when the data is read: the header and sizes are right
        "corrupt data": bytes(corrupt),
    }


UNREADABLE = "Cannot read .*bad.npz.* corrupt, truncated or not an .npz file"
IN_ARRAY = UNREADABLE + ": its array "


@pytest.mark.parametrize(
    "case, error, match",
    [
        ("missing", FileNotFoundError, "No parameter file at .*bad.npz"),
        ("truncated", ValidationError, UNREADABLE),
        ("empty", ValidationError, UNREADABLE),
        ("text", ValidationError, UNREADABLE),
        ("npy", ValidationError, UNREADABLE),
        ("pickle", ValidationError, UNREADABLE),
        (
            "object array",
            ValidationError,
            IN_ARRAY + "'ensemble0.bias': it holds dtype object, not numbers",
        ),
        ("bad header", ValidationError, IN_ARRAY + "'ensemble0.bias': ValueError"),
        (
            "truncated array",
            ValidationError,
            IN_ARRAY + r"'connection1.weights': it has \d+ bytes, where its header "
            r"\(shape \(1, 20\), dtype float32\) makes \d+",
        ),
        (
            "corrupt data",
            ValidationError,
            IN_ARRAY + "'ensemble0.bias': BadZipFile: Bad CRC-32",
        ),
        ("no marker", ValidationError, "bad.npz' is not a nengo_jax parameter file"),
        (
            "missing array",
            ValidationError,
            r"damaged: arrays \['connection1.weights'\]",
        ),
    ],
)
def test_bad_files_are_refused_and_nothing_changes(tmp_path, case, error, match):
    # the good file has other values (another seed), so any write would show
    good = tmp_path / "good.npz"
    with nengo_jax.Simulator(weights_net(seed=1), progress_bar=False) as sim:
        sim.save_params(good)
    content = bad_files(good)[case]
    path = tmp_path / "bad.npz"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, tuple) and content[0] == "npy":
        with open(path, "wb") as f:
            np.save(f, content[1])
    elif isinstance(content, tuple) and content[0] == "zip":
        with zipfile.ZipFile(path, "w") as f:
            for name, member in content[1].items():
                f.writestr(name, member)
    elif isinstance(content, tuple):
        with open(path, "wb") as f:
            np.savez(f, **content[1])
    with nengo_jax.Simulator(
        weights_net(), minibatch_size=MB, progress_bar=False
    ) as sim:
        sim.run_steps(3)
        before, state = raw_params(sim), {k: np.array(v) for k, v in sim._state.items()}
        with pytest.raises(error, match=match):
            sim.load_params(path, include_state=case == "truncated")
        assert_params_equal(before, raw_params(sim))
        assert_params_equal(state, {k: np.array(v) for k, v in sim._state.items()})
        assert sim.n_steps == 3
        assert not UNPICKLED
        sim.load_params(good)  # the good file does change the parameters
        assert not np.array_equal(
            sim.get_params()[sim.model.toplevel.ens]["bias"],
            sim.model.params[sim.model.toplevel.ens].bias.astype(np.float32),
        )


def test_load_reads_only_the_arrays_the_index_names(tmp_path, monkeypatch):
    """A small file holding a large compressed array that the index does not
    name loads without reading that array, and one whose named array has the
    wrong shape is refused from its header, before its data is read.

    Checked both ways: which zip members are opened (a recording
    ``ZipFile.open``), and the peak memory traced while loading (NumPy reports
    its arrays to ``tracemalloc``); reading the 50 MiB array would show.
    """
    good = tmp_path / "good.npz"
    with nengo_jax.Simulator(weights_net(seed=1), progress_bar=False) as sim:
        sim.save_params(good)
        trained = raw_params(sim)
    arrays = dict(np.load(good))
    big = np.zeros(50 * 2**20 // 8)  # 50 MiB, compressed to ~50 KB
    unused, misshapen = tmp_path / "unused.npz", tmp_path / "misshapen.npz"
    np.savez_compressed(unused, **arrays, unused=big)
    np.savez_compressed(misshapen, **{**arrays, "connection1.weights": big[None]})
    del big
    assert unused.stat().st_size < 200_000

    opened = []
    zip_open = zipfile.ZipFile.open

    def recording_open(self, name, *args, **kwargs):
        opened.append(getattr(name, "filename", name))
        return zip_open(self, name, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "open", recording_open)

    peaks = []

    def load(sim, path):
        opened.clear()
        tracemalloc.start()
        try:
            sim.load_params(path)
        finally:
            peaks.append(tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()

    with nengo_jax.Simulator(weights_net(), progress_bar=False) as sim:
        load(sim, unused)
        assert peaks[-1] < 5 * 2**20  # (measured: 0.08 MiB; 51 MiB before)
        assert "unused.npy" not in opened
        assert "connection1.weights.npy" in opened
        assert_params_equal(trained, raw_params(sim))
        sim.reset()
        before = raw_params(sim)
        with pytest.raises(
            ValidationError,
            match=r"connection1.weights \(Connection\) has shape \(1, 20\) here but "
            r"\(1, 6553600\) in the file",
        ):
            load(sim, misshapen)
        # opened once, for its header (which is not the data)
        assert opened.count("connection1.weights.npy") == 1
        assert peaks[-1] < 5 * 2**20
        assert_params_equal(before, raw_params(sim))


def test_state_from_a_file_without_state_is_refused(tmp_path):
    path = tmp_path / "params.npz"
    with nengo_jax.Simulator(weights_net(), progress_bar=False) as sim:
        sim.save_params(path)
        sim.run_steps(2)
        before = raw_params(sim)
        with pytest.raises(ValidationError, match="holds no simulation state"):
            sim.load_params(path, include_state=True)
        assert_params_equal(before, raw_params(sim))
        assert sim.n_steps == 2


def test_save_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "params.npz"
    net = weights_net()
    with nengo_jax.Simulator(net, minibatch_size=MB, progress_bar=False) as sim:
        sim.save_params(path)
        saved = path.read_bytes()
        train(sim, net, epochs=1)

        def interrupted(file, **arrays):
            file.write(b"PK\x03\x04 half a zip file")
            raise KeyboardInterrupt

        monkeypatch.setattr(np, "savez", interrupted)
        with pytest.raises(KeyboardInterrupt):
            sim.save_params(path)
        monkeypatch.undo()
        # the good file is still there, and no temporary file is left behind
        assert path.read_bytes() == saved
        assert os.listdir(tmp_path) == ["params.npz"]
        sim.save_params(path)  # overwrites
        assert path.read_bytes() != saved
        assert os.listdir(tmp_path) == ["params.npz"]


@pytest.mark.skipif(os.name == "nt", reason="POSIX permissions")
@pytest.mark.parametrize("umask, mode", [(0o077, 0o600), (0o022, 0o644)])
def test_saved_file_permissions_follow_the_umask(tmp_path, umask, mode):
    """As with ``np.savez``: a new file gets 0o666 less the umask (not the
    0o600 of a temporary file, nor a fixed 0o644); an overwritten file keeps
    its mode."""
    path = tmp_path / "params.npz"
    with nengo_jax.Simulator(weights_net(), progress_bar=False) as sim:
        old = os.umask(umask)
        try:
            sim.save_params(path)
            np.savez(tmp_path / "numpy.npz", x=np.zeros(1))
            assert os.stat(path).st_mode & 0o777 == mode
            assert os.stat(tmp_path / "numpy.npz").st_mode & 0o777 == mode
            os.chmod(path, 0o640)
            sim.save_params(path)
            assert os.stat(path).st_mode & 0o777 == 0o640
        finally:
            os.umask(old)
    assert sorted(os.listdir(tmp_path)) == ["numpy.npz", "params.npz"]


def test_closed_simulator_refuses(tmp_path):
    sim = nengo_jax.Simulator(weights_net(), progress_bar=False)
    sim.save_params(tmp_path / "p")
    sim.close()
    for call in (
        lambda: sim.save_params(tmp_path / "q"),
        lambda: sim.load_params(tmp_path / "p"),
        sim.get_params,
        lambda: sim.freeze_params(sim.model.toplevel),
    ):
        with pytest.raises(SimulatorClosed):
            call()


# -- back into Nengo --------------------------------------------------------------


def test_reset_restores_only_what_it_names(tmp_path):
    net = weights_net()
    with nengo_jax.Simulator(net, minibatch_size=MB, progress_bar=False) as sim:
        initial = raw_params(sim)
        train(sim, net, epochs=1)
        trained = raw_params(sim)
        sim.save_params(tmp_path / "trained")
        assert not all(np.array_equal(initial[k], trained[k]) for k in initial)

        sim.run_steps(4)
        sim.reset(include_trainable=False)
        assert_params_equal(trained, raw_params(sim))
        assert sim.n_steps == 0 and sim.data[net.p].shape == (MB, 0, 1)

        sim.run_steps(4)
        sim.reset(include_probes=False)
        assert_params_equal(initial, raw_params(sim))
        assert sim.n_steps == 0 and sim.data[net.p].shape == (MB, 4, 1)

        sim.load_params(tmp_path / "trained")
        assert_params_equal(trained, raw_params(sim))
        sim.soft_reset()  # keeps parameters and probe data
        assert_params_equal(trained, raw_params(sim))
        assert sim.data[net.p].shape == (MB, 4, 1)
        sim.soft_reset(include_trainable=True, include_probes=True)
        assert_params_equal(initial, raw_params(sim))
        assert sim.data[net.p].shape == (MB, 0, 1)


def test_reset_include_processes():
    with nengo.Network(seed=0) as net:
        stim = nengo.Node(0.8)
        ens = nengo.Ensemble(
            20, 1, neuron_type=nengo.PoissonSpiking(nengo.LIFRate()), label="ens"
        )
        nengo.Connection(stim, ens)
        p = nengo.Probe(ens.neurons)
    with nengo_jax.Simulator(net, progress_bar=False) as sim:
        sim.run_steps(30)
        first = sim.data[p].copy()
        sim.reset()
        sim.run_steps(30)
        np.testing.assert_array_equal(sim.data[p], first)  # restarted
        sim.reset(include_processes=False)
        sim.run_steps(30)
        assert not np.array_equal(sim.data[p], first)  # went on
        sim.reset(seed=sim.seed + 1)
        sim.run_steps(30)
        assert not np.array_equal(sim.data[p], first)


def test_include_non_trainable_is_include_state(tmp_path):
    """NengoDL's deprecated spelling still works (with its warning)."""
    net = weights_net()
    with nengo_jax.Simulator(net, progress_bar=False) as sim:
        sim.run_steps(5)
        with pytest.warns(DeprecationWarning, match="use include_state"):
            sim.save_params(tmp_path / "p", include_non_trainable=True)
        steps = sim.n_steps
        sim.reset()
        with pytest.warns(DeprecationWarning, match="use include_state"):
            sim.load_params(tmp_path / "p", include_non_trainable=True)
        assert sim.n_steps == steps == 5
