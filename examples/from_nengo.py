"""The seed tutorial's network on nengo.Simulator and nengo_jax.Simulator.

A WhiteSignal input x drives two 20-neuron LIF ensembles computing sin(x^2).
The script runs the network on both simulators, reports how far their
outputs are apart, then runs three ramp inputs at once (``minibatch_size=3``,
inputs fed through ``data=``), and saves a plot to ``examples/from_nengo.png``.
"""

import pathlib
import time

import matplotlib.pyplot as plt
import nengo
import numpy as np

import nengo_jax

seed = 0
with nengo.Network(seed=seed) as net:
    inpt = nengo.Node(nengo.processes.WhiteSignal(1, 5, rms=0.3), label="x")
    square = nengo.Ensemble(20, 1)
    sin = nengo.Ensemble(20, 1)
    outpt = nengo.Node(size_in=1)
    nengo.Connection(inpt, square)
    nengo.Connection(square, sin, function=np.square)
    nengo.Connection(sin, outpt, function=np.sin)
    inpt_p = nengo.Probe(inpt)
    outpt_p = nengo.Probe(outpt, synapse=0.01)

with nengo.Simulator(net, seed=seed, progress_bar=False) as ref:
    ref.run(1.0)

with nengo_jax.Simulator(net, seed=seed, progress_bar=False) as sim:
    start = time.perf_counter()
    sim.run(1.0)
    print(f"nengo_jax: first run (with compile) {time.perf_counter() - start:.2f} s")
    start = time.perf_counter()
    sim.run(1.0)
    print(f"nengo_jax: second run {time.perf_counter() - start:.3f} s")
    ours_x = sim.data[inpt_p][:1000]
    ours_y = sim.data[outpt_p][:1000]

x_diff = np.max(np.abs(ours_x - ref.data[inpt_p]))
y_diff = np.max(np.abs(ours_y - ref.data[outpt_p]))
rms = np.sqrt(np.mean(ref.data[outpt_p] ** 2))
print(f"input:  max |nengo_jax - nengo| = {x_diff:.2e}")
print(f"output: max |nengo_jax - nengo| = {y_diff:.2e} (output RMS {rms:.3f})")

reps, n_steps = 3, 1000
ramps = (
    np.linspace(0.5, 1, reps)[:, None, None]
    * np.linspace(-1, 1, n_steps)[None, :, None]
)
with nengo_jax.Simulator(net, minibatch_size=reps, progress_bar=False) as batched:
    batched.run_steps(n_steps, data={inpt: ramps})
    t = batched.trange()
    batch_x, batch_y = batched.data[inpt_p], batched.data[outpt_p]
print(f"batched run: probe data shape {batch_y.shape} (minibatch, steps, dims)")

fig, axes = plt.subplots(1, reps + 1, figsize=(16, 3.5), sharey=True)
axes[0].plot(ref.trange(), np.sin(ref.data[inpt_p] ** 2), "k", label="sin(x^2)")
axes[0].plot(ref.trange(), ref.data[outpt_p], label="nengo.Simulator")
axes[0].plot(ref.trange(), ours_y, "--", label="nengo_jax.Simulator")
axes[0].set_title("WhiteSignal input")
axes[0].legend(fontsize=8)
for i in range(reps):
    axes[i + 1].plot(t, np.sin(batch_x[i] ** 2), "k", label="sin(x^2)")
    axes[i + 1].plot(t, batch_y[i], label="output")
    axes[i + 1].set_title(f"batch item {i}: ramp input")
for ax in axes:
    ax.set_xlabel("time (s)")
fig.tight_layout()
out = pathlib.Path(__file__).with_suffix(".png")
fig.savefig(out, dpi=80)
print(f"saved {out}")
