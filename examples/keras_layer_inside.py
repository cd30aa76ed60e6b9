"""Keras layers inside a Nengo model, trained end to end, run with spiking neurons.

A Nengo network classifies handwritten digits (scikit-learn's 8x8 images, no
download): a Keras ``Conv2D`` layer (a `nengo_jax.TensorNode`, added with
`nengo_jax.Layer`) feeds an Ensemble of spiking LIF neurons, whose spikes,
filtered by a lowpass synapse, feed a Keras ``Dense`` readout of 10 logits. The
script

1. runs the untrained network with spiking neurons, each image shown for
   ``n_steps`` steps, and reports its test accuracy (chance: 10%);
2. trains the Keras layers' weights and the neurons' biases together with
   ``sim.compile``/``sim.fit``: the spiking LIF neurons run as their rate
   approximation (LIFRate) while training, one step per image;
3. runs the trained network with spiking neurons again (``sim.predict``) and
   reports the accuracy; the trained Keras layers hold the trained weights;

and saves ``examples/keras_layer_inside.png``: the training loss per epoch,
the test accuracy before and after training, and the spiking network's output
over time for one image before and after training.
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
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

HERE = pathlib.Path(__file__).parent
SEED = 0
MINIBATCH = 32


def load_data(n_train, n_test, seed=SEED):
    """Flattened images in [0, 1], (n, 64), and one-hot labels, stratified."""
    digits = load_digits()
    x = (digits.data / 16.0).astype("float32")
    y = np.eye(10, dtype="float32")[digits.target]
    return train_test_split(
        x,
        y,
        train_size=n_train,
        test_size=n_test,
        stratify=digits.target,
        random_state=seed,
    )


def make_net(seed=SEED):
    """Image -> Keras Conv2D -> spiking LIF neurons -> Keras Dense -> 10 logits.

    Returns the network, its input Node, the output probe (unfiltered, for
    training), the probe of the lowpass-filtered output (for the spiking runs)
    and the spike probe of the LIF neurons.
    """
    keras.utils.set_random_seed(seed)
    with nengo.Network(seed=seed) as net:
        # neurons as in a deep network: they start firing at zero input, and fire
        # at 200 Hz at input 1; amplitude scales each spike to 200 * 0.01 = 2 / s
        net.config[nengo.Ensemble].max_rates = nengo.dists.Choice([200])
        net.config[nengo.Ensemble].intercepts = nengo.dists.Choice([0])
        net.config[nengo.Connection].synapse = None
        image = nengo.Node(np.zeros(64), label="image")
        conv = nengo_jax.Layer(keras.layers.Conv2D(8, 3, name="conv"))(
            image, shape_in=(8, 8, 1)
        )
        lif = nengo_jax.Layer(nengo.LIF(amplitude=0.01))(conv, label="lif")
        logits = nengo_jax.Layer(keras.layers.Dense(10, name="readout"))(
            lif, synapse=None
        )
        out_p = nengo.Probe(logits, label="logits")
        out_filt_p = nengo.Probe(logits, synapse=0.01, label="logits_filtered")
        spike_p = nengo.Probe(lif, label="spikes")
    return net, image, out_p, out_filt_p, spike_p


def steps(x, n_steps):
    """Images as Nengo input data: (n, n_steps, 64), the same at every step."""
    return np.repeat(x[:, None, :], n_steps, axis=1)


def accuracy(out, y):
    return float(np.mean(np.argmax(out, axis=-1) == np.argmax(y, axis=-1)))


def main(quick=False, plot_path=HERE / "keras_layer_inside.png", verbose=0):
    """Spiking test accuracy before and after end-to-end training.

    Returns a dict: ``accuracy_before``/``accuracy_after`` (spiking, the
    filtered output at the last of ``n_steps`` steps), ``loss`` (per epoch),
    ``train_s`` and ``mean_rate_hz`` (the LIF neurons' mean rate, trained).
    """
    n_train, n_test, epochs = (480, 160, 8) if quick else (1440, 352, 20)
    n_steps = 40
    x_train, x_test, y_train, y_test = load_data(n_train, n_test)
    net, image, out_p, out_filt_p, spike_p = make_net()
    with nengo_jax.Simulator(
        net, minibatch_size=MINIBATCH, seed=SEED, progress_bar=False
    ) as sim:

        def spiking_run():
            data = sim.predict({image: steps(x_test, n_steps)}, verbose=0)
            return data[out_filt_p], data[spike_p]

        out_before, _ = spiking_run()
        sim.compile(
            keras.optimizers.Adam(2e-3),
            loss={out_p: keras.losses.CategoricalCrossentropy(from_logits=True)},
        )
        start = time.perf_counter()
        history = sim.fit(
            {image: steps(x_train, 1)},
            {out_p: y_train[:, None]},
            epochs=epochs,
            shuffle=True,
            verbose=verbose,
        )
        train_s = time.perf_counter() - start
        out_after, spikes = spiking_run()
    result = {
        "accuracy_before": accuracy(out_before[:, -1], y_test),
        "accuracy_after": accuracy(out_after[:, -1], y_test),
        "loss": history.history["loss"],
        "train_s": train_s,
        "n_steps": n_steps,
        "mean_rate_hz": float(np.mean(spikes > 0) / sim.dt),
        "n_neurons": spikes.shape[-1],
    }
    if plot_path is not None:
        plot(plot_path, result, x_test, y_test, out_before, out_after, sim.dt)
    return result


def plot(path, result, x_test, y_test, out_before, out_after, dt, item=0):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        1, 5, figsize=(19, 4), gridspec_kw={"width_ratios": [1, 1, 0.6, 1.3, 1.3]}
    )
    ax = axes[0]
    losses = result["loss"]
    ax.plot(np.arange(1, len(losses) + 1), losses, "o-", color="tab:green")
    ax.set_yscale("log")
    ax.set_title("Training (LIF as LIFRate, Adam)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss (cross-entropy)")
    ax = axes[1]
    before, after = result["accuracy_before"], result["accuracy_after"]
    bars = ax.bar(
        ["before\ntraining", "after\ntraining"],
        [100 * before, 100 * after],
        color=["tab:gray", "tab:green"],
    )
    ax.bar_label(bars, fmt="%.1f%%", padding=4)
    ax.axhline(10, color="k", ls=":", label="chance (10%)")
    ax.set_ylim(0, 110)
    ax.set_ylabel("spiking test accuracy (%)")
    ax.set_title(f"{len(y_test)} test images, {result['n_steps']} steps each")
    ax.legend(loc="upper left", fontsize=8)
    ax = axes[2]
    ax.imshow(x_test[item].reshape(8, 8), cmap="gray_r")
    ax.set_title(f"test image (label {np.argmax(y_test[item])})")
    ax.axis("off")
    t = np.arange(1, out_before.shape[1] + 1) * dt * 1000
    label = int(np.argmax(y_test[item]))
    for ax, out, when in zip(
        axes[3:], (out_before, out_after), ("before", "after"), strict=True
    ):
        for d in range(10):
            ax.plot(
                t,
                out[item, :, d],
                color="tab:red" if d == label else "tab:gray",
                lw=2 if d == label else 0.8,
                label=f"digit {d} (true label)" if d == label else None,
            )
        ax.plot([], [], color="tab:gray", lw=0.8, label="other digits")
        pred = int(np.argmax(out[item, -1]))
        ax.set_title(f"Spiking output {when} training: predicts {pred}")
        ax.set_xlabel("time (ms)")
        ax.set_ylabel("logit (spikes filtered, τ = 10 ms)")
        ax.legend(fontsize=8, loc="upper left")
    fig.suptitle(
        "A Nengo network with Keras layers inside: image → Keras Conv2D → "
        f"{result['n_neurons']} spiking LIF neurons → Keras Dense → 10 logits"
    )
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
    res = main(quick=args.quick, verbose=0)
    print(
        f"spiking test accuracy: {100 * res['accuracy_before']:.1f}% before "
        f"training, {100 * res['accuracy_after']:.1f}% after "
        f"(loss {res['loss'][0]:.3f} -> {res['loss'][-1]:.3f}, "
        f"training {res['train_s']:.1f} s, mean rate {res['mean_rate_hz']:.0f} Hz, "
        f"total {time.perf_counter() - start:.1f} s)"
    )
