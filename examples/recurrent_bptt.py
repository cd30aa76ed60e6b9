"""Training a recurrent spiking network through time: full and truncated BPTT.

A Nengo integrator (100 LIF neurons, recurrent synapse tau = 0.1 s) is built
with a deliberately wrong feedback: its recurrent connection computes 0.5 x
instead of x, so the value it holds leaks away with a time constant of 0.2 s
instead of staying put. Only that connection's decoders train, on sequences of
input pulses whose targets are the running integral of the input. The error
at one step depends on the recurrent weights through every earlier step, so
the gradient has to flow back through the whole simulation: backpropagation
through time (BPTT), here over ``n_steps`` = 1000 steps.

The script trains the same network two ways, from the same start:

- **full BPTT**: ``sim.fit`` on the whole 1000-step sequences;
- **truncated BPTT**: the sequences cut into 50-step windows, fitted in order
  with ``stateful=True``, so that each window starts from the state where the
  previous one ended, but the gradient stops at the window's start (NengoDL
  users do this to train long sequences with less memory). ``sim.soft_reset``
  before each epoch starts the sequences again from rest.

Both see every step of every sequence once per epoch, so their training losses
are comparable. Then each trained network runs with spiking neurons on test
sequences it has not seen. The script saves ``examples/recurrent_bptt.png``:
the spiking output on a test sequence before and after training, the training
loss per epoch of both, and the test error of the three networks.
"""

import os
import pathlib
import time

# Keras picks its backend when first imported: nengo_jax trains on JAX
os.environ.setdefault("KERAS_BACKEND", "jax")

import nengo_jax  # noqa: E402, I001 (nengo_jax before keras)
import keras  # noqa: E402
import nengo  # noqa: E402
import numpy as np  # noqa: E402

HERE = pathlib.Path(__file__).parent
SEED = 0
TAU = 0.1  # the integrator's recurrent synapse (s)
WRONG_FEEDBACK = 0.5  # the feedback computes 0.5 x; an integrator needs x


def make_net(seed=SEED):
    """A leaky integrator: input pulses -> recurrent LIF ensemble -> probe.

    Returns the network, its input Node, the recurrent Connection (the only
    trainable object) and the probe of the decoded value (lowpass 10 ms).
    """
    with nengo.Network(seed=seed) as net:
        stim = nengo.Node(np.zeros(1), label="stim")
        ens = nengo.Ensemble(100, 1, label="integrator")
        nengo.Connection(stim, ens, transform=TAU, synapse=TAU)
        recurrent = nengo.Connection(
            ens, ens, function=lambda x: WRONG_FEEDBACK * x, synapse=TAU
        )
        probe = nengo.Probe(ens, synapse=0.01, label="value")
        nengo_jax.configure_settings(trainable=False)
        net.config[recurrent].trainable = True
    return net, stim, recurrent, probe


def pulses(n, n_steps, dt=0.001, rng=None):
    """Input pulses (n, n_steps, 1) and their running integral, in [-0.9, 0.9].

    Each sequence holds four 50 ms pulses at random times; each pulse moves the
    integral to a new random value, which it should then hold.
    """
    rng = np.random.default_rng(SEED) if rng is None else rng
    width = int(0.05 / dt)
    x = np.zeros((n, n_steps, 1), dtype="float32")
    for i in range(n):
        starts = np.sort(rng.choice(n_steps // width - 1, 4, replace=False)) * width
        value = 0.0
        for start in starts:
            new = rng.uniform(-0.9, 0.9)
            x[i, start : start + width, 0] = (new - value) / (width * dt)
            value = new
    return x, np.cumsum(x, axis=1) * dt


def windows(x, length):
    """(n, n_steps, d) -> (n_steps // length * n, length, d), window-major.

    Minibatch k holds window k of all ``n`` sequences, so that a stateful fit
    with ``minibatch_size = n`` and ``shuffle=False`` goes through them in order.
    """
    n, n_steps, d = x.shape
    k = n_steps // length
    return x.reshape(n, k, length, d).transpose(1, 0, 2, 3).reshape(k * n, length, d)


def test_run(sim, stim, probe, x_test):
    """The spiking output on ``x_test`` from rest: (n, n_steps, 1)."""
    sim.soft_reset(include_probes=True)
    sim.run_steps(x_test.shape[1], data={stim: x_test})
    return sim.data[probe]


def train(net, stim, probe, x, y, x_test, window, epochs, lr):
    """Train with windows of ``window`` steps (all of them: full BPTT).

    Returns the training loss per epoch, the spiking test output after
    training and the training time.
    """
    n, n_steps, _ = x.shape
    with nengo_jax.Simulator(
        net, minibatch_size=n, seed=SEED, progress_bar=False
    ) as sim:
        truncated = window < n_steps
        # one update per window: the learning rate is scaled down by the number
        # of windows per sequence, so that both go as far per epoch, and it
        # decays tenfold over the training (Adam's constant steps would
        # otherwise circle the minimum)
        updates = epochs * n_steps // window
        schedule = keras.optimizers.schedules.ExponentialDecay(
            lr * window / n_steps, decay_steps=updates, decay_rate=0.1
        )
        sim.compile(keras.optimizers.Adam(schedule), loss={probe: "mse"})
        xw, yw = (windows(x, window), windows(y, window)) if truncated else (x, y)
        losses = []
        start = time.perf_counter()
        for _ in range(epochs):
            sim.soft_reset()  # every epoch starts the sequences from rest
            history = sim.fit(
                {stim: xw},
                {probe: yw},
                epochs=1,
                shuffle=False,
                stateful=truncated,
                verbose=0,
            )
            losses.append(history.history["loss"][0])
        train_s = time.perf_counter() - start
        out = test_run(sim, stim, probe, x_test)
    return losses, out, train_s


def main(quick=False, plot_path=HERE / "recurrent_bptt.png"):
    """Full vs truncated BPTT on the leaky integrator.

    Returns a dict: the spiking test MSE ``test_mse_before``,
    ``test_mse_full`` and ``test_mse_truncated``; the training losses per
    epoch ``loss_full`` and ``loss_truncated``; ``n_steps``, ``window`` and
    the training times ``train_s_full``/``train_s_truncated``.
    """
    n_seq, epochs = (16, 15) if quick else (32, 40)
    n_steps, window, lr = 1000, 50, 2e-5
    rng = np.random.default_rng(SEED)
    x, y = pulses(n_seq, n_steps, rng=rng)
    x_test, y_test = pulses(n_seq, n_steps, rng=rng)
    net, stim, _, probe = make_net()
    with nengo_jax.Simulator(
        net, minibatch_size=n_seq, seed=SEED, progress_bar=False
    ) as sim:
        out_before = test_run(sim, stim, probe, x_test)
        t = sim.trange()
    loss_full, out_full, s_full = train(
        net, stim, probe, x, y, x_test, n_steps, epochs, lr
    )
    loss_trunc, out_trunc, s_trunc = train(
        net, stim, probe, x, y, x_test, window, epochs, lr
    )

    def mse(out):
        return float(np.mean(np.square(out - y_test)))

    result = {
        "test_mse_before": mse(out_before),
        "test_mse_full": mse(out_full),
        "test_mse_truncated": mse(out_trunc),
        "loss_full": loss_full,
        "loss_truncated": loss_trunc,
        "n_steps": n_steps,
        "window": window,
        "train_s_full": s_full,
        "train_s_truncated": s_trunc,
    }
    if plot_path is not None:
        plot(plot_path, result, t, x_test, y_test, out_before, out_full, out_trunc)
    return result


def plot(path, result, t, x_test, y_test, before, full, trunc, item=0):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axd = plt.subplot_mosaic(
        [["input", "loss", "test"], ["output", "loss", "test"]],
        figsize=(17, 5),
        gridspec_kw={"width_ratios": [2, 1, 0.8], "height_ratios": [1, 3]},
    )
    colors = {"before": "tab:gray", "full": "tab:blue", "trunc": "tab:orange"}
    window, n_steps = result["window"], result["n_steps"]
    ax = axd["input"]
    ax.plot(t, x_test[item, :, 0], color="tab:purple")
    ax.set_ylabel("input (1/s)")
    ax.set_title("Integrator on an unseen test sequence (spiking LIF)")
    ax.tick_params(labelbottom=False)
    ax = axd["output"]
    ax.sharex(axd["input"])
    ax.plot(t, y_test[item], color="k", lw=2, label="target: ∫ input dt")
    ax.plot(t, before[item], color=colors["before"], label="before training (leaks)")
    ax.plot(t, full[item], color=colors["full"], label=f"full BPTT ({n_steps} steps)")
    ax.plot(
        t,
        trunc[item],
        "--",
        color=colors["trunc"],
        label=f"truncated BPTT ({window}-step windows)",
    )
    ax.set_xlabel("time (s)")
    ax.set_ylabel("decoded value (spiking, 10 ms lowpass)")
    ax.legend(fontsize=8, loc="best")
    ax = axd["loss"]
    epochs = np.arange(1, len(result["loss_full"]) + 1)
    ax.plot(epochs, result["loss_full"], "o-", ms=3, color=colors["full"], label="full")
    ax.plot(
        epochs,
        result["loss_truncated"],
        "s--",
        ms=3,
        color=colors["trunc"],
        label=f"truncated ({window} steps)",
    )
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss (MSE, LIFRate)")
    ax.set_title("Training through time")
    ax.legend(fontsize=8)
    ax = axd["test"]
    names = ["before", "full", "trunc"]
    values = [
        result["test_mse_before"],
        result["test_mse_full"],
        result["test_mse_truncated"],
    ]
    bars = ax.bar(
        ["before", "full\nBPTT", "truncated\nBPTT"],
        values,
        color=[colors[n] for n in names],
    )
    ax.bar_label(bars, fmt="%.4f", padding=2, fontsize=8)
    ax.set_yscale("log")
    ax.set_ylim(min(values) / 3, max(values) * 3)
    ax.set_ylabel("spiking test error (MSE)")
    ax.set_title(f"{len(y_test)} test sequences")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    print(f"saved {path}")


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a shorter run")
    args = parser.parse_args()
    start = time.perf_counter()
    res = main(quick=args.quick)
    print(
        f"spiking test MSE: {res['test_mse_before']:.4f} before, "
        f"{res['test_mse_full']:.4f} after full BPTT "
        f"({res['train_s_full']:.1f} s), {res['test_mse_truncated']:.4f} after "
        f"truncated BPTT ({res['train_s_truncated']:.1f} s); training loss full "
        f"{res['loss_full'][0]:.4f} -> {res['loss_full'][-1]:.4f}, truncated "
        f"{res['loss_truncated'][0]:.4f} -> {res['loss_truncated'][-1]:.4f} "
        f"(total {time.perf_counter() - start:.1f} s)"
    )
