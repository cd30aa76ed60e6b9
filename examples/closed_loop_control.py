"""Closed-loop control with ``sim.step()``: a spiking controller moves an arm.

The plant is a one-joint arm turning in the horizontal plane (moment of
inertia 0.1 kg m², joint friction 0.2 N m s), simulated in plain Python. The
controller is a Nengo network: 300 spiking LIF neurons represent the angle
error and the angular velocity, and decode a PD torque from them. Each time
step, the script

1. calls ``sim.step()``: a Node reads the arm's current angle and velocity
   (and the target, which the script changes now and then), the neurons run
   one step, and a Node with an input stores the torque they decode;
2. moves the arm by one step under that torque (Euler).

The same loop runs with ``nengo.Simulator`` and ``nengo_jax.Simulator``, and
the script reports how far apart the two arms' trajectories are, how long the
arm takes to reach each target, and the time per step of each simulator. It
saves ``examples/closed_loop_control.png``: the angle, the torque and the
difference between the two simulators over time.
"""

import os
import pathlib
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import nengo  # noqa: E402
import numpy as np  # noqa: E402

import nengo_jax  # noqa: E402

HERE = pathlib.Path(__file__).parent
SEED = 0
DT = 0.001
KP, KD = 8.0, 1.2  # PD gains: N m / rad, N m s / rad
V_SCALE = 5.0  # rad/s represented as 1 by the ensemble


class Arm:
    """One joint turning in the horizontal plane: I q'' = torque - b q'."""

    def __init__(self, inertia=0.1, friction=0.2, dt=DT):
        self.inertia, self.friction, self.dt = inertia, friction, dt
        self.angle, self.velocity = 0.0, 0.0

    def step(self, torque):
        accel = (torque - self.friction * self.velocity) / self.inertia
        self.velocity += self.dt * accel
        self.angle += self.dt * self.velocity


def make_controller(arm, target, torque_out, seed=SEED):
    """The spiking PD controller, connected to ``arm`` through two Nodes.

    ``target`` is a one-element list the loop may change; the decoded torque is
    written into the one-element list ``torque_out`` every step.
    """

    def sense(t):
        return [target[0], arm.angle, arm.velocity / V_SCALE]

    def actuate(t, u):
        torque_out[0] = float(u[0])

    with nengo.Network(seed=seed) as net:
        sensors = nengo.Node(sense, label="sensors")
        # dimension 0: angle error (rad); dimension 1: velocity / V_SCALE
        state = nengo.Ensemble(300, 2, radius=1.2, label="error and velocity")
        nengo.Connection(sensors[0], state[0], synapse=None)
        nengo.Connection(sensors[1], state[0], transform=-1, synapse=None)
        nengo.Connection(sensors[2], state[1], synapse=None)
        motor = nengo.Node(actuate, size_in=1, label="motor")
        nengo.Connection(
            state,
            motor,
            function=lambda x: KP * x[0] - KD * V_SCALE * x[1],
            synapse=0.01,
        )
    return net


def schedule(duration):
    """Target angles (rad) and the times (s) the script sets them."""
    times = np.array([0.0, 0.1, 0.8, 1.5, 2.2])
    values = np.array([0.0, 0.8, -0.5, 0.3, -0.2])
    return times[times < duration], values[times < duration]


def control_loop(simulator, duration, seed=SEED):
    """Run the closed loop on ``simulator`` (a Simulator class) for ``duration``.

    Returns the times, the target, angle and torque per step, and the seconds
    per ``sim.step()`` call (the first 10 calls, which compile, left out).
    """
    arm, target, torque = Arm(), [0.0], [0.0]
    net = make_controller(arm, target, torque, seed)
    set_times, set_values = schedule(duration)
    n_steps = int(round(duration / DT))
    record = np.zeros((n_steps, 4))
    with simulator(net, dt=DT, seed=seed, progress_bar=False) as sim:
        for i in range(n_steps):
            if i == 10:
                start = time.perf_counter()
            t = (i + 1) * DT
            target[0] = set_values[np.searchsorted(set_times, t) - 1]
            sim.step()
            arm.step(torque[0])
            record[i] = t, target[0], arm.angle, torque[0]
    per_step = (time.perf_counter() - start) / (n_steps - 10)
    return record, per_step


def settling_times(record, tol=0.05):
    """Seconds after each target change until the angle stays within ``tol``."""
    t, target, angle = record[:, 0], record[:, 1], record[:, 2]
    changes = np.flatnonzero(np.diff(target)) + 1
    ends = list(changes[1:]) + [len(t)]
    out = []
    for c, end in zip(changes, ends, strict=True):
        outside = np.flatnonzero(np.abs(angle[c:end] - target[c]) > tol)
        settled = c + (outside[-1] + 1 if len(outside) else 0)
        out.append(np.inf if settled >= end else t[settled] - t[c])
    return out


def main(quick=False, plot_path=HERE / "closed_loop_control.png"):
    """The closed loop on nengo and nengo_jax; returns the comparison.

    Returns a dict: ``max_angle_diff`` (rad, between the two simulators),
    ``settling_s`` (per target change, nengo_jax), ``final_error`` (rad,
    nengo_jax, at the end), ``step_ms`` per simulator, ``duration``.
    """
    duration = 1.5 if quick else 3.0
    ref, ref_step = control_loop(nengo.Simulator, duration)
    ours, our_step = control_loop(nengo_jax.Simulator, duration)
    result = {
        "max_angle_diff": float(np.max(np.abs(ours[:, 2] - ref[:, 2]))),
        "settling_s": settling_times(ours),
        "settling_s_nengo": settling_times(ref),
        "final_error": float(abs(ours[-1, 2] - ours[-1, 1])),
        "step_ms": {"nengo": 1000 * ref_step, "nengo_jax": 1000 * our_step},
        "duration": duration,
    }
    if plot_path is not None:
        plot(plot_path, ref, ours, result)
    return result


def plot(path, ref, ours, result):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(17, 4.2))
    t = ours[:, 0]
    colors = {"nengo": "tab:orange", "nengo_jax": "tab:blue"}
    ax = axes[0]
    ax.plot(t, ours[:, 1], color="k", lw=1, ls=":", label="target")
    ax.plot(t, ref[:, 2], color=colors["nengo"], lw=3, label="nengo.Simulator")
    ax.plot(t, ours[:, 2], "--", color=colors["nengo_jax"], label="nengo_jax.Simulator")
    ax.set_ylabel("arm angle (rad)")
    ax.set_title("Arm angle under the spiking PD controller")
    ax = axes[1]
    ax.plot(t, ref[:, 3], color=colors["nengo"], lw=3, label="nengo.Simulator")
    ax.plot(t, ours[:, 3], "--", color=colors["nengo_jax"], label="nengo_jax.Simulator")
    ax.set_ylabel("torque decoded from spikes (N m)")
    ax.set_title("Controller output (10 ms synapse)")
    ax = axes[2]
    ax.plot(t, ours[:, 2] - ref[:, 2], color="tab:purple")
    ax.set_ylabel("nengo_jax − nengo, angle (rad)")
    ax.set_title(
        f"Difference between the simulators (max {result['max_angle_diff']:.1e} rad)"
    )
    ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    ms = result["step_ms"]
    ax.text(
        0.02,
        0.92,
        f"time per sim.step(): nengo {ms['nengo']:.2f} ms, "
        f"nengo_jax {ms['nengo_jax']:.2f} ms",
        transform=ax.transAxes,
        fontsize=8,
    )
    for ax in axes:
        ax.set_xlabel("time (s)")
    for ax in axes[:2]:
        ax.legend(fontsize=8, loc="upper right")
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
    settle = ", ".join(f"{s:.2f}" for s in res["settling_s"])
    print(
        f"max |angle nengo_jax - angle nengo| = {res['max_angle_diff']:.2e} rad; "
        f"settling times (within 0.05 rad) {settle} s; final error "
        f"{res['final_error']:.3f} rad; per step: nengo "
        f"{res['step_ms']['nengo']:.2f} ms, nengo_jax "
        f"{res['step_ms']['nengo_jax']:.2f} ms (total "
        f"{time.perf_counter() - start:.1f} s)"
    )
