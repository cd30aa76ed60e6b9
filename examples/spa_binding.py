"""Semantic pointers with nengo_spa: many scenes bound and queried in one batched run.

A scene is one semantic pointer that holds two facts, bound with their roles
by circular convolution: ``scene = COLOR * color + SHAPE * shape``. The
network is asked a question that changes every 0.25 s, COLOR then SHAPE, and
answers by unbinding: ``answer = scene * ~question``. Its ensembles are
spiking LIF neurons (about 20,000 of them).

The colour and the shape come from two input Nodes. With
``nengo_jax.Simulator(model, minibatch_size=16)`` and ``data=`` for those
Nodes, one run answers the questions about all 16 scenes (four colours times
four shapes) at once, each batch item with its own scene; the question is the
same for all of them. The first scene also runs on ``nengo.Simulator``, to
compare.

The script reports how many answers are right (the vocabulary item most
similar to the answer at the end of each question is the one asked for), and
saves ``examples/spa_binding.png``: the answer's similarity to each colour and
shape over time, for the first scene on both simulators and for three other
scenes of the same run. ``--quick`` runs four scenes for one pair of questions.
"""

import argparse
import os
import pathlib
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import nengo  # noqa: E402
import nengo_spa as spa  # noqa: E402
import numpy as np  # noqa: E402

import nengo_jax  # noqa: E402

HERE = pathlib.Path(__file__).parent
SEED = 0
DIMENSIONS = 32
COLORS = ["RED", "BLUE", "GREEN", "YELLOW"]
SHAPES = ["CIRCLE", "SQUARE", "TRIANGLE", "STAR"]
QUESTION_S = 0.25  # each question is asked for this long


def make_vocab(dimensions=DIMENSIONS, seed=SEED):
    vocab = spa.Vocabulary(dimensions, pointer_gen=np.random.RandomState(seed))
    vocab.populate(";".join(COLORS + SHAPES + ["COLOR", "SHAPE"]))
    return vocab


def question(t):
    """COLOR for the first QUESTION_S of every 2 * QUESTION_S, then SHAPE."""
    return "COLOR" if (t % (2 * QUESTION_S)) < QUESTION_S else "SHAPE"


def make_model(vocab, color="RED", shape="CIRCLE", seed=SEED):
    """The network; its input Nodes give ``color`` and ``shape`` unless replaced.

    Returns the network, the two input Nodes and the probe of the answer.
    """
    with spa.Network(seed=seed) as model:
        color_in = nengo.Node(vocab[color].v, label="color")
        shape_in = nengo.Node(vocab[shape].v, label="shape")
        color_state = spa.State(vocab, label="color state")
        shape_state = spa.State(vocab, label="shape state")
        nengo.Connection(color_in, color_state.input)
        nengo.Connection(shape_in, shape_state.input)
        scene = spa.State(vocab, label="scene")
        color_state * spa.sym.COLOR + shape_state * spa.sym.SHAPE >> scene
        asked = spa.Transcode(question, output_vocab=vocab, label="question")
        answer = spa.State(vocab, label="answer")
        scene * ~asked >> answer
        probe = nengo.Probe(answer.output, synapse=0.03)
    return model, color_in, shape_in, probe


def similarities(vocab, answers, keys):
    """Dot products of the answers (..., d) with the vocabulary items ``keys``."""
    return answers @ np.array([vocab[k].v for k in keys]).T


def main(quick=False, plot_path=HERE / "spa_binding.png"):
    """Run the scenes batched and the first on Nengo; returns the scores."""
    scenes = [(c, s) for c in COLORS for s in SHAPES]
    if quick:
        scenes = scenes[::5]  # four scenes, no colour or shape repeated
    duration = 2 * QUESTION_S * (1 if quick else 2)
    vocab = make_vocab()
    model, color_in, shape_in, probe = make_model(vocab, *scenes[0])

    start = time.perf_counter()
    with nengo.Simulator(model, seed=SEED, progress_bar=False) as ref:
        ref.run(duration)
    nengo_s = time.perf_counter() - start

    n_steps = int(round(duration / ref.dt))
    data = {
        node: np.stack([np.tile(vocab[scene[i]].v, (n_steps, 1)) for scene in scenes])
        for i, node in enumerate((color_in, shape_in))
    }
    start = time.perf_counter()
    with nengo_jax.Simulator(
        model, minibatch_size=len(scenes), seed=SEED, progress_bar=False
    ) as sim:
        sim.run(duration, data=data)
    jax_s = time.perf_counter() - start

    keys = COLORS + SHAPES
    ours = similarities(vocab, sim.data[probe], keys)  # (scenes, steps, keys)
    theirs = similarities(vocab, ref.data[probe], keys)
    # the answer at the end of each question, against the fact asked for
    ends = np.arange(1, int(round(duration / QUESTION_S)) + 1)
    end_steps = (ends * QUESTION_S / sim.dt).round().astype(int) - 1
    expected = np.array(
        [[keys.index(scene[i % 2]) for i in range(len(ends))] for scene in scenes]
    )
    given = np.argmax(ours[:, end_steps], axis=-1)
    at_ends = ours[:, end_steps]  # (scenes, questions, keys)
    correct_sim = np.take_along_axis(at_ends, expected[..., None], -1)[..., 0]
    others = np.where(np.eye(len(keys), dtype=bool)[expected], -np.inf, at_ends)
    result = {
        "scenes": scenes,
        "n_correct": int(np.sum(given == expected)),
        "n_questions": int(expected.size),
        "min_correct_similarity": float(correct_sim.min()),
        # how far the right answer is ahead of the most similar wrong one
        "min_margin": float(np.min(correct_sim - others.max(axis=-1))),
        "max_similarity_diff": float(np.max(np.abs(ours[0] - theirs))),
        "nengo_s": nengo_s,
        "nengo_jax_s": jax_s,
    }
    if plot_path is not None:
        t = sim.trange()
        plot(plot_path, t, ours, theirs, scenes, keys, result)
    return result


def plot(path, t, ours, theirs, scenes, keys, result, n_show=4):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = np.linspace(0, len(scenes) - 1, n_show).round().astype(int)
    fig, axes = plt.subplots(1, n_show, figsize=(4.2 * n_show, 4.2), sharey=True)
    for ax, item in zip(axes, shown, strict=True):
        color, shape = scenes[item]
        for start in np.arange(0, t[-1], 2 * QUESTION_S):
            ax.axvspan(start + QUESTION_S, start + 2 * QUESTION_S, color="0.93")
        others = [keys.index(k) for k in keys if k not in (color, shape)]
        lines = [
            ax.plot(t, ours[item][:, others], color="0.6", lw=0.7)[0],
            ax.plot(t, ours[item][:, keys.index(color)], color="tab:red", lw=1.5)[0],
            ax.plot(t, ours[item][:, keys.index(shape)], color="tab:blue", lw=1.5)[0],
        ]
        if item == shown[0]:
            handles = lines
        ax.set_title(f"batch item {item}: {color} and {shape}", fontsize=10)
        ax.set_xlabel("time (s); shaded: asked SHAPE")
    ax = axes[0]
    ax.plot(t, theirs[:, keys.index(scenes[0][0])], "--", color="k", lw=0.8)
    handles += ax.plot(t, theirs[:, keys.index(scenes[0][1])], "--", color="k", lw=0.8)
    ax.set_ylabel("similarity of the answer (dot product)")
    ax.legend(
        handles,
        ["other colours and shapes", "the scene's colour", "the scene's shape"]
        + ["nengo.Simulator (item 0 only)"],
        fontsize=8,
        loc="lower left",
    )
    fig.suptitle(
        f"nengo_jax.Simulator(minibatch_size={len(scenes)}): scene = COLOR * colour "
        f"+ SHAPE * shape, answer = scene * ~question; {result['n_correct']} of "
        f"{result['n_questions']} answers right"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="four scenes, 0.5 s")
    args = parser.parse_args()
    res = main(quick=args.quick)
    print(
        f"{res['n_correct']} of {res['n_questions']} answers right for "
        f"{len(res['scenes'])} scenes (similarity to the right answer at least "
        f"{res['min_correct_similarity']:.2f}, ahead of the next by at least "
        f"{res['min_margin']:.2f}); the first scene's similarities "
        f"differ from nengo.Simulator's by at most {res['max_similarity_diff']:.3f}"
    )
    print(
        f"nengo.Simulator, one scene: {res['nengo_s']:.1f} s; nengo_jax.Simulator, "
        f"{len(res['scenes'])} scenes at once: {res['nengo_jax_s']:.1f} s "
        "(both include building the model; nengo_jax's includes compiling)"
    )
