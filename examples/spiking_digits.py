"""A convolutional Keras network on handwritten digits, converted to spiking neurons.

The digits are scikit-learn's 8x8 images (no download). The script

1. builds a small convolutional network in Keras (two ReLU convolutions, a
   ReLU Dense layer and a linear readout);
2. converts it with ``nengo_jax.Converter`` and trains the converted network
   with ``sim.fit`` (rate neurons, one step per image), then reports its test
   accuracy;
3. copies the trained weights back into the Keras model and converts it again
   with spiking neurons: ``swap_activations`` makes every RectifiedLinear a
   SpikingRectifiedLinear, ``scale_firing_rates`` raises their firing rates
   (their output is scaled down to match), and a lowpass ``synapse`` filters
   the spikes. Each image is shown for ``n_steps`` steps, and the prediction is
   the output at the last step;

and saves ``examples/spiking_digits.png``: spike rasters of the Dense layer
and the output over time for a few test images. ``--quick`` trains for fewer
epochs on fewer images.
"""

import argparse
import os
import pathlib
import time

# Keras picks its backend when first imported: nengo_jax trains on JAX
os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import nengo  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

import nengo_jax  # noqa: E402

HERE = pathlib.Path(__file__).parent
SEED = 0
MINIBATCH = 32


def load_data(n_train=1440, n_test=352, seed=SEED):
    """Images scaled to [0, 1] as (n, 8, 8, 1) and one-hot labels, stratified."""
    digits = load_digits()
    x = (digits.images / 16.0).astype("float32")[..., None]
    y = np.eye(10, dtype="float32")[digits.target]
    x_train, x_test, y_train, y_test = train_test_split(
        x,
        y,
        train_size=n_train,
        test_size=n_test,
        stratify=digits.target,
        random_state=seed,
    )
    return x_train, y_train, x_test, y_test


def shifted(x, y):
    """The images and their 8 one-pixel shifts (zeros shifted in): 9x the data."""
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    xs = [
        np.roll(padded, (dy, dx), axis=(1, 2))[:, 1:-1, 1:-1]
        for dy in (-1, 0, 1)
        for dx in (-1, 0, 1)
    ]
    return np.concatenate(xs), np.tile(y, (9, 1))


def make_model(seed=SEED):
    """The Keras network: 8x8 image -> 10 logits."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1")(inp)
    x = keras.layers.Conv2D(32, 3, strides=2, activation="relu", name="conv2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(64, activation="relu", name="dense")(x)
    out = keras.layers.Dense(10, name="logits")(x)
    return keras.Model(inp, out)


def steps(x, n_steps):
    """Images as Nengo input data: (n, n_steps, 64), the same at every step."""
    return np.repeat(x.reshape(len(x), 1, -1), n_steps, axis=1)


def accuracy(out, y):
    return float(np.mean(np.argmax(out, axis=-1) == np.argmax(y, axis=-1)))


def train_rate(model, x_train, y_train, x_test, y_test, epochs, verbose=0):
    """Convert ``model``, train it with ``sim.fit``; the test accuracy.

    Training sees every image shifted by a pixel in each direction too. The
    trained weights are copied back into ``model``.
    """
    x_train, y_train = shifted(x_train, y_train)
    converter = nengo_jax.Converter(model)
    inp = converter.inputs[model.input]
    probe = converter.outputs[model.output]
    with nengo_jax.Simulator(
        converter.net, minibatch_size=MINIBATCH, seed=SEED, progress_bar=False
    ) as sim:
        sim.compile(
            keras.optimizers.Adam(1e-3),
            loss={probe: keras.losses.CategoricalCrossentropy(from_logits=True)},
        )
        history = sim.fit(
            {inp: steps(x_train, 1)},
            {probe: y_train[:, None]},
            epochs=epochs,
            shuffle=True,
            verbose=verbose,
        )
        out = sim.predict({inp: steps(x_test, 1)}, verbose=0)[probe][:, -1]
        converter.copy_params_to_keras(sim)
    return accuracy(out, y_test), history


def run_spiking(model, x_test, y_test, n_steps, scale, synapse):
    """Run ``model`` converted to spiking neurons; accuracy and the recordings."""
    converter = nengo_jax.Converter(
        model,
        swap_activations={nengo.RectifiedLinear(): nengo.SpikingRectifiedLinear()},
        scale_firing_rates=scale,
        synapse=synapse,
    )
    inp = converter.inputs[model.input]
    probe = converter.outputs[model.output]
    with converter.net:
        spikes = nengo.Probe(converter.layers[model.get_layer("dense")])
    with nengo_jax.Simulator(
        converter.net, minibatch_size=MINIBATCH, seed=SEED, progress_bar=False
    ) as sim:
        data = sim.predict({inp: steps(x_test, n_steps)}, verbose=0)
    return accuracy(data[probe][:, -1], y_test), data[probe], data[spikes], sim.dt


def plot(path, x_test, y_test, outputs, spikes, dt, accuracies, n_show=4):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t_ms = np.arange(1, outputs.shape[1] + 1) * dt * 1000
    fig, axes = plt.subplots(
        3,
        n_show,
        figsize=(3 * n_show, 7.5),
        gridspec_kw={"height_ratios": [0.8, 1, 1]},
    )
    for i in range(n_show):
        label = np.argmax(y_test[i])
        axes[0, i].imshow(x_test[i, :, :, 0], cmap="gray_r")
        axes[0, i].set_title(f"test image (label {label})")
        axes[0, i].axis("off")
        neuron, step = np.nonzero(spikes[i].T)
        axes[1, i].scatter(t_ms[step], neuron, marker="|", s=8, color="k")
        axes[1, i].set_xlim(0, t_ms[-1])
        axes[1, i].set_ylim(-1, spikes.shape[2])
        axes[1, i].set_xlabel("time (ms)")
        others = [d for d in range(10) if d != label]
        axes[2, i].plot(t_ms, outputs[i][:, others], color="0.6", lw=0.8)
        axes[2, i].plot(t_ms, outputs[i][:, label], color="tab:red", lw=2)
        axes[2, i].set_xlabel("time (ms)")
        pred = np.argmax(outputs[i, -1])
        axes[2, i].set_title(f"spiking output: predicts {pred}")
    axes[1, 0].set_ylabel("Dense layer neuron")
    axes[2, 0].set_ylabel("logit (spikes filtered, τ = 10 ms)")
    axes[2, 0].legend(
        axes[2, 0].lines[-1:] + axes[2, 0].lines[:1],
        ["true label", "other digits"],
        fontsize=8,
        loc="upper left",
    )
    rate_acc, spike_acc = accuracies
    fig.suptitle(
        f"Keras CNN converted to Nengo: {len(y_test)} test images, "
        f"{rate_acc:.1%} correct with rate neurons (after training), "
        f"{spike_acc:.1%} with spiking neurons"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(quick=False, plot_path=HERE / "spiking_digits.png", verbose=0):
    """Train, convert to spikes, report; returns the accuracies and timings."""
    n_train, n_test, epochs = (480, 160, 10) if quick else (1440, 352, 15)
    n_steps, scale, synapse = 30, 300, 0.01
    x_train, y_train, x_test, y_test = load_data(n_train, n_test)
    model = make_model()
    start = time.time()
    rate_acc, history = train_rate(
        model, x_train, y_train, x_test, y_test, epochs, verbose=verbose
    )
    train_s = time.time() - start
    start = time.time()
    spike_acc, outputs, spikes, dt = run_spiking(
        model, x_test, y_test, n_steps, scale, synapse
    )
    spike_s = time.time() - start
    if plot_path is not None:
        plot(
            plot_path,
            x_test,
            y_test,
            outputs,
            spikes,
            dt,
            (rate_acc, spike_acc),
        )
    return {
        "rate_accuracy": rate_acc,
        "spiking_accuracy": spike_acc,
        "loss": history.history["loss"],
        "train_s": train_s,
        "spiking_s": spike_s,
        "n_steps": n_steps,
        "scale_firing_rates": scale,
        "mean_rate_hz": float(np.mean(spikes > 0) / dt),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="fewer epochs and images (for CI)"
    )
    args = parser.parse_args()
    result = main(quick=args.quick, verbose=0)
    print(
        f"training loss {result['loss'][0]:.3f} -> {result['loss'][-1]:.3f} "
        f"({result['train_s']:.0f} s)"
    )
    print(f"rate test accuracy:     {result['rate_accuracy']:.1%}")
    print(
        f"spiking test accuracy:  {result['spiking_accuracy']:.1%} "
        f"({result['n_steps']} steps, scale_firing_rates="
        f"{result['scale_firing_rates']}, mean Dense-layer rate "
        f"{result['mean_rate_hz']:.0f} Hz; {result['spiking_s']:.0f} s)"
    )
