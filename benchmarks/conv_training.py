r"""Time training of convolutional networks, beside NengoDL 3.6 when present.

Two networks on 256 random 28x28 images, 10 classes, minibatch 32, Adam(1e-3),
sparse categorical cross-entropy on the last layer's output at every step:

- ``converted``: a Keras CNN (Conv2D 32 3x3, Conv2D 64 3x3 stride 2, both
  ReLU, Dense 10) through ``Converter``: Nengo convolutions between ReLU
  ensembles (the Keras-to-SNN example's kind of network);
- ``layers``: the same stack built with ``Layer`` (Keras ``Conv2D`` and
  ``Dense`` in TensorNodes, LIF neurons between them, max rate 100 Hz), as
  NengoDL's spiking-MNIST example builds it.

Each is fitted for 3 epochs of 1 and of 10 steps per example; *first epoch s*
includes compiling, *steady epoch s* is the median of the other two. With
``--oracle`` (NengoDL's venv python from ``../shared/tools/nengo-dl-oracle``)
each row also runs on NengoDL 3.6 (TensorFlow 2.12, CPU) in its own process,
the two simulators taking turns. ``--reproducer`` adds the pure-JAX cause: a
small conv stack's gradient inside ``lax.scan``, through
``jax.lax.conv_general_dilated`` and through ``nengo_jax.maths.conv.conv``::

    .venv/bin/python benchmarks/conv_training.py --reproducer \
        --oracle /tmp/nengo-dl-oracle/bin/python \
        --out benchmarks/results/conv-training-cpu-$(date +%F).md
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

# Keras picks its backend when first imported: nengo_jax trains on JAX
os.environ.setdefault("KERAS_BACKEND", "jax")

ITEMS, MINIBATCH, EPOCHS = 256, 32, 3


def build(kind, dl, keras):
    """The network, its input Node and its output probe (``keras`` is Keras, or
    TensorFlow's for NengoDL)."""
    import nengo

    lib = keras.layers
    if kind == "converted":
        inp = lib.Input((28, 28, 1))
        h = lib.Conv2D(32, 3, activation="relu")(inp)
        h = lib.Conv2D(64, 3, strides=2, activation="relu")(h)
        out = lib.Dense(10)(lib.Flatten()(h))
        converter = dl.Converter(keras.Model(inp, out))
        return converter.net, converter.inputs[inp], converter.outputs[out]
    with nengo.Network(seed=0) as net:
        net.config[nengo.Ensemble].max_rates = nengo.dists.Choice([100])
        net.config[nengo.Ensemble].intercepts = nengo.dists.Choice([0])
        node = nengo.Node(np.zeros(28 * 28))
        x = dl.Layer(lib.Conv2D(32, 3))(node, shape_in=(28, 28, 1))
        x = dl.Layer(nengo.LIF(amplitude=0.01))(x)
        x = dl.Layer(lib.Conv2D(64, 3, strides=2))(x, shape_in=(26, 26, 32))
        x = dl.Layer(nengo.LIF(amplitude=0.01))(x)
        out = dl.Layer(lib.Dense(10))(x)
        probe = nengo.Probe(out)
    return net, node, probe


def time_fits(kind, n_steps, simulator):
    """Epoch times of one fit workload, in this process."""
    if simulator == "nengo_dl":
        import nengo_dl as dl
        import tensorflow as tf

        keras = tf.keras
    else:
        import keras

        import nengo_jax as dl
    net, node, probe = build(kind, dl, keras)
    rng = np.random.RandomState(0)
    x = np.tile(rng.rand(ITEMS, 1, 28 * 28), (1, n_steps, 1))
    y = np.tile(rng.randint(0, 10, size=(ITEMS, 1, 1)), (1, n_steps, 1))
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    with dl.Simulator(net, minibatch_size=MINIBATCH, progress_bar=False) as sim:
        sim.compile(optimizer=keras.optimizers.Adam(1e-3), loss={probe: loss})
        times = []
        for _ in range(EPOCHS):
            start = time.perf_counter()
            sim.fit({node: x}, {probe: y}, epochs=1, verbose=0)
            times.append(time.perf_counter() - start)
    return times


def reproducer():
    """Gradient of a conv stack inside ``lax.scan`` (5 steps), two ways."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    from nengo_jax.maths.conv import conv

    numbers = lax.ConvDimensionNumbers((0, 3, 1, 2), (3, 2, 0, 1), (0, 3, 1, 2))
    key = jax.random.PRNGKey(0)
    xs = jax.random.normal(key, (5, 32, 28, 28, 1))
    ws = (
        jax.random.normal(key, (3, 3, 1, 32)) * 0.1,
        jax.random.normal(key, (3, 3, 32, 64)) * 0.1,
    )

    def lax_conv(x, w, s):
        return lax.conv_general_dilated(x, w, s, "VALID", dimension_numbers=numbers)

    def our_conv(x, w, s):
        return conv(x, w, s, [(0, 0), (0, 0)], (1, 1), numbers)

    results = {}
    for name, convolve in (
        ("lax.conv_general_dilated", lax_conv),
        ("maths.conv", our_conv),
    ):

        def loss(ws, xs, convolve=convolve):
            def step(total, x):
                h = jax.nn.relu(convolve(x, ws[0], (1, 1)))
                h = jax.nn.relu(convolve(h, ws[1], (2, 2)))
                return total + jnp.sum(h**2), None

            return lax.scan(step, 0.0, xs)[0]

        grad = jax.jit(jax.grad(loss))
        jax.block_until_ready(grad(ws, xs))
        start = time.perf_counter()
        for _ in range(3):
            jax.block_until_ready(grad(ws, xs))
        results[name] = (time.perf_counter() - start) / 3
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--oracle", help="NengoDL's venv (or its python), optional: see oracle.py"
    )
    parser.add_argument("--reproducer", action="store_true")
    parser.add_argument("--out", help="also write the Markdown report here")
    parser.add_argument("--one", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:  # (a child process: one workload, JSON epoch times)
        kind, n_steps, simulator = args.one
        print(json.dumps(time_fits(kind, int(n_steps), simulator)))
        return

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from oracle import find_oracle, oracle_line
    from report import machine_lines

    if args.oracle:  # a venv folder or its python; an error if no nengo_dl
        try:
            args.oracle = find_oracle(args.oracle)
        except ValueError as e:
            raise SystemExit(f"error: {e}") from None
    lines = machine_lines("Training convolutional networks (fit epochs)")
    if args.oracle:
        lines.append(oracle_line(args.oracle))
    lines += [
        "",
        f"{ITEMS} images, minibatch {MINIBATCH}, {EPOCHS} epochs per row; each "
        "simulator in its own process, taking turns.",
        "",
        "| network | steps | simulator | first epoch s | steady epoch s |",
        "|---|---|---|---|---|",
    ]
    simulators = [("nengo_jax", sys.executable)]
    if args.oracle:
        simulators.append(("nengo_dl", args.oracle))
    for kind in ("converted", "layers"):
        for n_steps in (1, 10):
            for name, python in simulators:
                out = subprocess.run(
                    [
                        python,
                        os.path.abspath(__file__),
                        "--one",
                        kind,
                        str(n_steps),
                        name,
                    ],
                    capture_output=True,
                    text=True,
                    env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
                )
                if out.returncode:
                    raise RuntimeError(
                        f"{kind} {n_steps} {name} failed:\n{out.stderr[-3000:]}"
                    )
                times = json.loads(out.stdout.strip().splitlines()[-1])
                row = (
                    f"| {kind} | {n_steps} | {name} | {times[0]:.2f} | "
                    f"{statistics.median(times[1:]):.2f} |"
                )
                print(row, flush=True)
                lines.append(row)
    if args.reproducer:
        lines += [
            "",
            "Pure JAX: gradient of the same conv stack over a 5-step "
            "`lax.scan`, minibatch 32 (seconds per call):",
            "",
        ]
        for name, seconds in reproducer().items():
            lines.append(f"- {name}: {seconds:.3f} s")
            print(lines[-1], flush=True)
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
