"""The seed tutorial (NengoDL's "from Nengo") on nengo_jax.

A WhiteSignal input x drives two 20-neuron LIF ensembles computing sin(x^2).
The script

1. runs the network on nengo.Simulator and nengo_jax.Simulator and reports how
   far their outputs are apart;
2. runs three ramp inputs at once (``minibatch_size=3``, inputs through
   ``data=``);
3. trains the encoders and biases with Keras (``compile``/``fit``, RMSprop),
   spiking LIF neurons swapped for LIFRate while training, and reports the
   spiking model's test error before and after (``evaluate``);

and saves a plot to ``examples/from_nengo.png``.
"""

import os
import pathlib
import time

# Keras picks its backend when first imported: nengo_jax trains on JAX
os.environ.setdefault("KERAS_BACKEND", "jax")

import jax.numpy as jnp  # noqa: E402
import keras  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import nengo  # noqa: E402
import numpy as np  # noqa: E402

import nengo_jax as nengo_dl  # noqa: E402

SEED = 0


def tutorial_net(seed=SEED):
    """The network of the tutorial: sin(x^2) through two ensembles.

    The seed ran on Nengo 2.8, whose Ensemble defaults differ from Nengo 4's:
    intercepts from Uniform(-1, 1) (Nengo 4: Uniform(-1, 0.9)), and encoders and
    evaluation points from UniformHypersphere (Nengo 4: ScatteredHypersphere,
    which also draws from the random stream differently). With Nengo 2.8's
    defaults set here, Nengo 4 builds the seed's network: the same gains,
    biases, encoders and decoders as Nengo 2.8 builds for the same seed.
    """
    with nengo.Network(seed=seed) as net:
        net.config[nengo.Ensemble].intercepts = nengo.dists.Uniform(-1, 1)
        net.config[nengo.Ensemble].encoders = nengo.dists.UniformHypersphere(
            surface=True
        )
        net.config[nengo.Ensemble].eval_points = nengo.dists.UniformHypersphere()
        net.inpt = nengo.Node(nengo.processes.WhiteSignal(1, 5, rms=0.3), label="x")
        square = nengo.Ensemble(20, 1)
        sin = nengo.Ensemble(20, 1)
        net.outpt = nengo.Node(size_in=1)
        nengo.Connection(net.inpt, square)
        nengo.Connection(square, sin, function=np.square)
        nengo.Connection(sin, net.outpt, function=np.sin)
        net.inpt_p = nengo.Probe(net.inpt)
        net.outpt_p = nengo.Probe(net.outpt, synapse=0.01)
    return net


def train_tutorial(net, seed=SEED, epochs=25, progress_bar=False):
    """The tutorial's training section, with Keras's compile/fit/evaluate.

    Encoders and biases train on rates (no synapses inside, one-step examples);
    the spiking model is tested on 100-step inputs through a filtered probe.
    Returns the spiking test error before and after training, the training
    History, and the spiking output of a 1 s run before and after training.
    """
    # as the seed does: this seeds the data and the shuffling of the training
    # examples each epoch (Keras shuffles with NumPy's global generator)
    np.random.seed(seed)
    # no synapses inside (training runs rates); a filtered and an unfiltered probe
    for conn in net.all_connections:
        conn.synapse = None
    with net:
        outpt_p_nofilt = nengo.Probe(net.outpt)
    net.outpt_p.synapse = 0.04
    # train encoders and biases only
    with net:
        nengo_dl.configure_settings(trainable=False)
        net.config[nengo.Ensemble].trainable = True

    vals = np.random.uniform(-1, 1, size=(4096, 1, 1))
    test_vals = np.tile(np.random.uniform(-1, 1, size=(1024, 1, 1)), (1, 100, 1))

    def test_mse(targets, outputs):
        # the spiking output after it settles: the last 10 of 100 steps
        return jnp.mean(jnp.square(outputs[:, -10:] - targets[:, -10:]))

    with nengo_dl.Simulator(
        net, minibatch_size=32, seed=seed, progress_bar=progress_bar
    ) as sim:

        def spiking_test_error():
            sim.compile(loss={net.outpt_p: test_mse})
            result = sim.evaluate(
                {net.inpt: test_vals}, {net.outpt_p: np.sin(test_vals**2)}, verbose=0
            )
            return result["loss"]

        def spiking_run():
            sim.soft_reset(include_probes=True)
            sim.run(1.0)
            return sim.trange(), sim.data[net.inpt_p][0], sim.data[net.outpt_p][0]

        before, untrained = spiking_test_error(), spiking_run()
        sim.compile(
            optimizer=keras.optimizers.RMSprop(0.01), loss={outpt_p_nofilt: "mse"}
        )
        history = sim.fit(
            {net.inpt: vals},
            {outpt_p_nofilt: np.sin(vals**2)},
            epochs=epochs,
            verbose=0,
        )
        after, trained = spiking_test_error(), spiking_run()
    return before, after, history, (untrained, trained)


def main():
    net = tutorial_net()
    with nengo.Simulator(net, seed=SEED, progress_bar=False) as ref:
        ref.run(1.0)
    with nengo_dl.Simulator(net, seed=SEED, progress_bar=False) as sim:
        start = time.perf_counter()
        sim.run(1.0)
        print(
            f"nengo_jax: first run (with compile) {time.perf_counter() - start:.2f} s"
        )
        start = time.perf_counter()
        sim.run(1.0)
        print(f"nengo_jax: second run {time.perf_counter() - start:.3f} s")
        ours_x = sim.data[net.inpt_p][:1000]
        ours_y = sim.data[net.outpt_p][:1000]
    x_diff = np.max(np.abs(ours_x - ref.data[net.inpt_p]))
    y_diff = np.max(np.abs(ours_y - ref.data[net.outpt_p]))
    rms = np.sqrt(np.mean(ref.data[net.outpt_p] ** 2))
    print(f"input:  max |nengo_jax - nengo| = {x_diff:.2e}")
    print(f"output: max |nengo_jax - nengo| = {y_diff:.2e} (output RMS {rms:.3f})")

    reps, n_steps = 3, 1000
    ramps = (
        np.linspace(0.5, 1, reps)[:, None, None]
        * np.linspace(-1, 1, n_steps)[None, :, None]
    )
    with nengo_dl.Simulator(net, minibatch_size=reps, progress_bar=False) as batched:
        batched.run_steps(n_steps, data={net.inpt: ramps})
        t = batched.trange()
        batch_x, batch_y = batched.data[net.inpt_p], batched.data[net.outpt_p]
    print(f"batched run: probe data shape {batch_y.shape} (minibatch, steps, dims)")

    start = time.perf_counter()
    before, after, history, (untrained, trained) = train_tutorial(net)
    losses = history.history["loss"]
    print(
        f"training: {len(losses)} epochs of 4096 examples in "
        f"{time.perf_counter() - start:.1f} s (training loss {losses[0]:.5f} -> "
        f"{losses[-1]:.5f})"
    )
    print(
        f"spiking test error: {before:.5f} before training, {after:.5f} after "
        f"({100 * (1 - after / before):.0f}% lower)"
    )
    plot(
        ref, ours_y, net, t, batch_x, batch_y, untrained, trained, before, after, losses
    )


def plot(
    ref, ours_y, net, t, batch_x, batch_y, untrained, trained, before, after, losses
):
    fig, axes = plt.subplots(1, 4, figsize=(18, 4))
    target = "black"
    ax = axes[0]
    ax.plot(
        ref.trange(),
        np.sin(ref.data[net.inpt_p] ** 2),
        color=target,
        label="target sin(x²)",
    )
    ax.plot(
        ref.trange(),
        ref.data[net.outpt_p],
        color="tab:orange",
        lw=2,
        label="nengo.Simulator",
    )
    ax.plot(ref.trange(), ours_y, "--", color="tab:blue", label="nengo_jax.Simulator")
    ax.set_title("Same network, same output")
    ax.set_ylabel("decoded output")
    ax = axes[1]
    for i in range(len(batch_y)):
        (line,) = ax.plot(
            t, batch_y[i], label=f"item {i}: ramp to ±{0.5 + 0.25 * i:.2f}"
        )
        ax.plot(t, np.sin(batch_x[i] ** 2), ":", color=line.get_color())
    ax.set_title("Three inputs at once (minibatch_size=3)")
    ax.set_ylabel("decoded output (dotted: target)")
    ax = axes[2]
    times, x, y0 = untrained
    _, _, y1 = trained
    ax.plot(times, np.sin(x**2), color=target, label="target sin(x²)")
    ax.plot(
        times, y0, color="tab:gray", label=f"before training (test MSE {before:.4f})"
    )
    ax.plot(
        times, y1, color="tab:green", label=f"after training (test MSE {after:.4f})"
    )
    ax.set_title("Spiking output, trained as rates")
    ax.set_ylabel("decoded output (probe synapse 0.04 s)")
    for ax in axes[:3]:
        ax.set_xlabel("time (s)")
        ax.legend(fontsize=8, loc="upper center")
    ax = axes[3]
    ax.semilogy(np.arange(1, len(losses) + 1), losses, "o-", color="tab:green")
    ax.set_title("Training (rate neurons, RMSprop)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss (MSE)")
    fig.tight_layout()
    out = pathlib.Path(__file__).with_suffix(".png")
    fig.savefig(out, dpi=80)
    print(f"saved {out}")


if __name__ == "__main__":
    main()
