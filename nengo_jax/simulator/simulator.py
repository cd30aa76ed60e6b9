"""The `Simulator`: builds a Nengo network and runs it as a JAX program."""

from __future__ import annotations

import contextlib
import logging
import warnings
from types import MappingProxyType

import numpy as np
from nengo import Node
from nengo.builder import Model
from nengo.cache import get_default_decoder_cache
from nengo.exceptions import ReadonlyError, SimulatorClosed, ValidationError
from nengo.utils.numpy import maxint
from nengo.utils.progress import Progress, ProgressTracker

import nengo_jax.ops  # noqa: F401  (registers the operator builders)
from nengo_jax.config import Settings
from nengo_jax.optimizer import own_copy, plan_operators
from nengo_jax.program.cache import use_compilation_cache
from nengo_jax.program.program import (
    RNG_KEY,
    compile_program,
    enable_x64,
    new_rng_state,
)
from nengo_jax.simulator.data import SignalValues, SimulationData
from nengo_jax.simulator.distribution import placement
from nengo_jax.simulator.freeze import FreezeMethods
from nengo_jax.simulator.gradients import GradientCheck
from nengo_jax.simulator.inputs import InputChecker, check_seconds, keras_names
from nengo_jax.simulator.legacy import LegacyTraining
from nengo_jax.simulator.params import ParamsMethods, learned_signals
from nengo_jax.simulator.runtime import Recorded, Runtime, Snapshot, gc_paused
from nengo_jax.simulator.training import KerasMethods

logger = logging.getLogger(__name__)


class Simulator(
    KerasMethods, GradientCheck, LegacyTraining, ParamsMethods, FreezeMethods
):
    """Simulate a Nengo network with JAX.

    A drop-in replacement for `nengo.Simulator`: the same calls give the same
    results (to float32 rounding). In addition, ``minibatch_size`` simulates that
    many independent copies of the network at once, ``data`` replaces the
    output of input Nodes at run time, and the Keras calls (`compile`, `fit`,
    `evaluate`, `predict`) train and evaluate the model with deep-learning
    methods.

    Parameters
    ----------
    network : nengo.Network or None
        The network to simulate. If None, ``model`` must hold a built model.
    dt : float
        Length of a timestep, in seconds.
    seed : int
        Seed for all stochastic operators (noise, processes). Defaults to
        ``network.seed + 1`` if the network is seeded, otherwise random.
    model : nengo.builder.Model
        A model to build into (or an already built model if ``network`` is None).
        It keeps the operators Nengo built: the Simulator optimizes a copy,
        which is ``sim.model``.
    device : str, list or keras.distribution.DataParallel
        A JAX device (e.g. ``"cpu"``, ``"gpu:1"``), or several that split the
        minibatch (a list, or a Keras distribution; see the user guide, "Several
        devices"); None: Keras's global distribution if set, else one device.
    unroll_simulation : int
        How many timesteps the time loop unrolls (``lax.scan``'s ``unroll``).
    minibatch_size : int
        Number of batch items simulated together; None simulates one, and probe
        data then has no batch axis, as in Nengo.
    progress_bar : bool or nengo.utils.progress.ProgressBar
        Progress bar for the build and the runs.
    optimize : bool
        Whether to merge operators before building (with the ``planner`` and
        ``sorter`` of ``configure_settings``; see `nengo_jax.graph_optimizer`),
        as `nengo.Simulator` merges with its optimizer. Much faster compiles
        and runs.
    tensorboard : str
        Directory for the TensorBoard logs of `train`'s ``summaries``.
    """

    def __init__(
        self,
        network,
        dt=0.001,
        seed=None,
        model=None,
        device=None,
        unroll_simulation=1,
        minibatch_size=None,
        progress_bar=True,
        optimize=True,
        tensorboard=None,
    ):
        self.closed = True  # until the build succeeds
        self.tensorboard = None if tensorboard is None else str(tensorboard)
        self.progress_bar = progress_bar
        self.unroll_simulation = int(unroll_simulation)
        if self.unroll_simulation < 1:
            raise ValidationError(
                f"Must be a positive integer; got {unroll_simulation!r}",
                attr="unroll_simulation",
                obj=self,
            )
        if minibatch_size is not None and int(minibatch_size) < 1:
            raise ValidationError(
                f"Must be a positive integer or None; got {minibatch_size!r}",
                attr="minibatch_size",
                obj=self,
            )
        self._batch_given = minibatch_size is not None
        self.minibatch_size = 1 if minibatch_size is None else int(minibatch_size)
        self._placement = placement(device, self.minibatch_size)
        self.device = self._placement.first_device
        use_compilation_cache()  # (on disk: a script run again compiles nothing)
        self.optimize = optimize
        given = model is not None
        self.model = (
            model
            if given
            else Model(
                dt=float(dt),
                label=f"{network}, dt={dt:f}",
                decoder_cache=get_default_decoder_cache(),
            )
        )
        self.settings = Settings.from_network(
            network if network is not None else self.model.toplevel
        )
        with (
            gc_paused(),
            ProgressTracker(progress_bar, Progress("Building", "Build")) as pt,
        ):
            if network is not None:
                self.model.build(network, progress=pt.next_stage("Building", "Build"))
            if given:  # (merged on a copy: it keeps what Nengo built, as NengoDL)
                self.model = own_copy(self.model)
            with self._jax_scope():
                self._build(pt)

        if seed is None:  # (as nengo.Simulator chooses it)
            seeded = network is not None and network.seed is not None
            seed = network.seed + 1 if seeded else np.random.randint(maxint)
        self.data = SimulationData(self)
        self.closed = False
        self.reset(seed=seed)

    def _build(self, progress):
        """Merge and order the operators, and make their builders and the program."""
        model = self.model
        # what trains and what probes keep, decided once (config changes later
        # change nothing)
        self.settings = self.settings.resolved(model)
        # simplify, then plan and merge (unless optimize=False or the noop
        # planner): merged operators and contiguous signals make a much smaller
        # program
        plan = plan_operators(
            model, self.settings, merge=self.optimize, progress=progress
        )
        self._ops = plan.operators
        #: operator -> its place in the order nengo.Simulator seeds operators
        self._seed_rank = {op: i for i, op in enumerate(plan.seeding_order)}
        self._optimizer_report = plan.report
        logger.info("Optimized %s: %s", model, plan.report)
        self._node_index = {
            obj: i for i, obj in enumerate(model.sig) if isinstance(obj, Node)
        }
        program, self._probe_keys = compile_program(
            model,
            plan,
            self.settings,
            minibatch_size=self.minibatch_size,
            unroll=self.unroll_simulation,
            device=self.device,
        )
        self._layout = program.layout
        #: what learning rules change, that NengoDL treats as parameters
        self._learned = learned_signals(model, program.layout)
        input_nodes = [
            node
            for node in self._node_index
            if node.size_in == 0 and node.output is not None
        ]
        last_keys = {key for key, _ in program.last_only}
        node_names, probe_names = keras_names(input_nodes, model.probes)
        self._inputs = InputChecker(
            model=model,
            minibatch_size=self.minibatch_size,
            dtype=self._layout.dtype,
            input_nodes=node_names,
            probe_names=probe_names,
            last_only=frozenset(
                p for p, key in self._probe_keys.items() if key in last_keys
            ),
            use_loop=self.settings.use_loop,
            unroll=self.unroll_simulation,
        )
        self._runtime = Runtime(
            program,
            self._probe_keys,
            dt=model.dt,
            scope=self._jax_scope,
            learning_phase=self.settings.learning_phase,
            on_params=self._write_layers,
            placement=self._placement,
        )

    unroll = property(lambda self: self.unroll_simulation, doc="unroll_simulation")

    @property
    def _program(self):
        return self._runtime.program

    @property
    def _params(self):
        """The committed parameters (read-only use: see `Runtime`)."""
        return self._runtime.snapshot.params

    @property
    def _state(self):
        """The committed state (read-only use: see `Runtime`)."""
        return self._runtime.snapshot.state

    # -- properties ---------------------------------------------------------------

    @property
    def dt(self):
        """(float) The length of a timestep, in seconds."""
        return self.model.dt

    @dt.setter
    def dt(self, _):
        raise ReadonlyError(attr="dt", obj=self)

    @property
    def n_steps(self):
        """(int) The number of timesteps simulated since the last reset."""
        return self._runtime.snapshot.n_steps

    @property
    def time(self):
        """(float) The simulated time since the last reset."""
        return self.n_steps * self.dt

    @property
    def seed(self):
        """(int) The seed of the stochastic operators."""
        return self._seed

    @property
    def step_order(self):
        """(list) The operators in the order they run each timestep."""
        return list(self._ops)

    @property
    def optimizer_report(self):
        """(OptimizerReport) Operators before and after simplifying and merging."""
        return self._optimizer_report

    @property
    def signals(self):
        """(SignalValues) Current values of the model's signals, read-only NumPy."""
        return SignalValues(self)

    @property
    def compile_count(self):
        """(int) How many times the simulation program has been compiled."""
        return self._program.trace_count

    # -- lifecycle ----------------------------------------------------------------

    def __enter__(self):
        if self.closed:
            raise SimulatorClosed("Cannot re-open after the simulator is closed")
        return self

    def __exit__(self, exc_type, exc_value, traceback):
        self.close()

    def __del__(self):
        if not getattr(self, "closed", True):
            warnings.warn(
                f"Simulator with model={self.model} was deallocated while open. "
                "Close simulators (or use them in a `with` block) to free their "
                "resources.",
                ResourceWarning,
                stacklevel=2,
            )

    def __getstate__(self):
        snapshot = self._runtime.snapshot
        return {
            "model": self.model,
            "dt": self.dt,
            "seed": self.seed,
            "progress_bar": self.progress_bar,
            "tensorboard": self.tensorboard,
            "optimize": self.optimize,
            "minibatch_size": self.minibatch_size if self._batch_given else None,
            "unroll_simulation": self.unroll_simulation,
            "closed": self.closed,
            "n_steps": snapshot.n_steps,
            "params": None if self.closed else self._placement.to_host(snapshot.params),
            "state": None if self.closed else self._placement.to_host(snapshot.state),
            "probes": {p: r.values() for p, r in snapshot.probes.items()},
        }

    def __setstate__(self, state):
        """Rebuild from the model; state, parameters and probe data carry over.

        As in Nengo, host-side process state (e.g. a filtered noise's filter)
        restarts.
        """
        self.__init__(
            None,
            model=state["model"],
            dt=state["dt"],
            seed=state["seed"],
            progress_bar=state["progress_bar"],
            tensorboard=state.get("tensorboard"),
            optimize=False,  # the pickled model is already optimized
            minibatch_size=state["minibatch_size"],
            unroll_simulation=state["unroll_simulation"],
        )
        self.optimize = state["optimize"]
        probes = MappingProxyType(
            {p: Recorded.of(*chunks) for p, chunks in state["probes"].items()}
        )
        self._runtime.commit(probes=probes)
        if state["closed"]:
            self.close()
            return
        self._runtime.commit(
            params=self._to_device(state["params"]),
            state=self._to_device(state["state"]),
            n_steps=state["n_steps"],
        )

    def close(self):
        """Close the simulator; later runs raise `SimulatorClosed`.

        ``sim.data`` stays readable after closing, with the trained parameters
        and what learning rules learned (kept on the host; the device arrays
        are released).
        """
        runtime = getattr(self, "_runtime", None)
        if runtime is not None and runtime.snapshot is not None and not self.closed:
            learned = {self._layout.view(sig).key for sig in self._learned}
            with runtime.call("close"):
                snapshot = runtime.snapshot
                runtime.commit(
                    params=self._placement.to_host(snapshot.params),
                    state=self._placement.to_host(
                        {k: snapshot.state[k] for k in learned}
                    ),
                )
        self.closed = True
        self._keras = None
        if runtime is not None:
            runtime.program.release()

    def reset(
        self,
        seed=None,
        include_trainable=True,
        include_probes=True,
        include_processes=True,
    ):
        """Restore the initial simulation state, and what the arguments name.

        The time and the neuron, synapse and learning-rule state always
        restart (but see ``include_trainable`` for what learning rules learned).

        Parameters
        ----------
        seed : int
            A new seed for stochastic operators (noise and processes), used from
            their next reset on; the built parameters (encoders, decoders...) do
            not change.
        include_trainable : bool
            Whether to restore the built parameters, undoing training and
            `load_params`, and the weights and encoders that learning rules
            changed (False keeps them, as in NengoDL).
        include_probes : bool
            Whether to clear the probe data.
        include_processes : bool
            Whether to restart the random number generators of processes and
            stochastic neurons. Processes without input are computed on the
            host as functions of the step number, so they restart with the time
            either way.
        """
        if self.closed:
            raise SimulatorClosed("Cannot reset a closed Simulator.")
        runtime = self._runtime
        with runtime.call("reset"):
            old = runtime.snapshot
            if seed is not None:
                self._seed = int(seed)
            params = old.params if old is not None else None
            if include_trainable or params is None:
                params = self._to_device(self._layout.initial_params())
            state = self._layout.initial_state(self.minibatch_size)
            if not include_trainable and old is not None:
                # what learning rules learned counts as parameters (NengoDL)
                for sig in self._learned:
                    value = self._layout.read(
                        lambda key: np.asarray(old.state[key]), sig, batched=True
                    )
                    self._layout.write(state.__getitem__, sig, value)
            if include_processes or old is None:
                rng = np.random.RandomState(self._seed)
                # draw seeds in nengo.Simulator's order
                rank = self._seed_rank
                for builder in sorted(
                    self._program.builders,
                    key=lambda b: rank.get(b.op, len(rank)),
                ):
                    builder.reset_host(rng, self.minibatch_size)
                state[RNG_KEY] = new_rng_state(self._seed)
                if self._keras is not None:
                    self._keras.stream_cache.clear()
            else:
                state[RNG_KEY] = old.state[RNG_KEY]
            probes = old.probes if old is not None else None
            if include_probes or probes is None:
                probes = self._no_probe_data()
            runtime.commit(
                Snapshot(
                    params=params,
                    state=self._to_device(state),
                    n_steps=0,
                    probes=probes,
                )
            )
        if include_probes:
            self.data.reset()

    def soft_reset(
        self, include_trainable=False, include_probes=False, include_processes=True
    ):
        """`reset` that by default keeps the parameters and the probe data.

        Parameters
        ----------
        include_trainable : bool
            Whether to restore the built parameters.
        include_probes : bool
            Whether to clear the probe data.
        include_processes : bool
            Whether to restart the random number generators of processes.
        """
        self.reset(
            include_trainable=include_trainable,
            include_probes=include_probes,
            include_processes=include_processes,
        )

    def clear_probes(self):
        """Delete all probe data."""
        with self._runtime.call("clear probes"):
            self._runtime.commit(probes=self._no_probe_data())
        self.data.reset()

    def _no_probe_data(self):
        return MappingProxyType({probe: Recorded.of() for probe in self.model.probes})

    def _to_device(self, tree):
        with self._jax_scope():
            return self._placement.put(tree)

    def _jax_scope(self):
        """JAX's 64-bit mode, scoped to this simulator, when dtype is float64."""
        x64 = self.settings.dtype == "float64"
        return enable_x64() if x64 else contextlib.nullcontext()

    # -- running ------------------------------------------------------------------

    def run(self, time_in_seconds, data=None, progress_bar=None, stateful=None):
        """Simulate for ``time_in_seconds`` (rounded to a whole number of steps).

        Parameters
        ----------
        time_in_seconds : float
            How long to simulate; must not be negative.
        data : dict
            Input Node (or its label) -> array of shape
            ``(minibatch_size, n_steps, node.size_out)`` replacing its output.
        progress_bar, stateful
            As in `run_steps`.
        """
        time_in_seconds = check_seconds(time_in_seconds)
        steps = int(np.round(time_in_seconds / self.dt))
        if steps == 0:
            warnings.warn(
                f"{time_in_seconds} results in running for 0 timesteps. Simulator "
                f"still at time {self.time}.",
                stacklevel=2,
            )
            return
        self.run_steps(steps, data=data, progress_bar=progress_bar, stateful=stateful)

    def step(self, data=None, stateful=None):
        """Advance the simulation by one timestep (``data`` and ``stateful`` as
        in `run_steps`, ``data`` arrays with one step)."""
        self.run_steps(1, data=data, progress_bar=False, stateful=stateful)

    def run_steps(self, n_steps, data=None, progress_bar=None, stateful=None):
        """Simulate for ``n_steps`` timesteps.

        Parameters
        ----------
        n_steps : int
            Number of timesteps.
        data : dict
            Input Node (or its label) -> array of shape
            ``(minibatch_size, n_steps, node.size_out)`` replacing its output.
        progress_bar : bool or ProgressBar
            Overrides the Simulator's progress bar for this run.
        stateful : bool or None
            Whether the run advances the simulation (None: the ``stateful``
            setting, True by default): False runs from the current state and
            time, records the probes, and leaves the state, time and ``n_steps``
            as they were (as NengoDL). True is ignored, with a warning, when
            ``configure_settings(stateful=False)`` makes every run stateless.
        """
        if self.closed:
            raise SimulatorClosed("Simulator cannot run because it is closed.")
        n_steps = self._inputs.steps(n_steps)
        if n_steps == 0:
            return
        node_data = self._inputs.run_data(data, n_steps)
        if stateful is None:
            stateful = self.settings.stateful
        elif stateful and not self.settings.stateful:
            warnings.warn(
                "stateful=True is ignored: this Simulator keeps no state between "
                "runs (configure_settings(stateful=False))",
                UserWarning,
                stacklevel=2,
            )
        stateful = bool(stateful) and self.settings.stateful
        if progress_bar is None:
            progress_bar = self.progress_bar
        if progress_bar is False:  # the common interactive case: no tracker
            self._run(n_steps, node_data, stateful)
            return
        with ProgressTracker(
            progress_bar, Progress("Simulating", "Simulation", n_steps)
        ) as pt:
            self._run(n_steps, node_data, stateful)
            pt.total_progress.step(n_steps)

    def _run(self, n_steps, node_data, stateful=True):
        """Run through the runtime: all or nothing (see `Runtime.run`)."""
        # order the fed signals by their Node's build order: one compile per set
        nodes = sorted(node_data, key=self._node_index.__getitem__)
        fed = {self.model.sig[node]["out"]: node_data[node] for node in nodes}
        with gc_paused(), self._runtime.call("run"):
            self._runtime.run(n_steps, fed, stateful=stateful)

    def _probe_array(self, probe):
        chunks = self._runtime.snapshot.probes[probe].values()
        sig = self.model.sig[probe]["in"]
        if chunks:
            value = np.concatenate(chunks, axis=1)
        else:
            value = np.zeros((self.minibatch_size, 0) + sig.shape, self._layout.dtype)
        return value if self._batch_given else value[0]

    def trange(self, sample_every=None, dt=None):
        """Times of the probe samples (starting at ``dt``, not 0).

        Parameters
        ----------
        sample_every : float
            Sampling period of the probe; None gives every timestep.
        dt : float
            Nengo's deprecated name of ``sample_every``.
        """
        if dt is not None:
            if sample_every is not None:
                raise ValidationError(
                    "Cannot specify both `dt` and `sample_every`. "
                    "Use `sample_every` only.",
                    attr="dt",
                    obj=self,
                )
            warnings.warn(
                "`dt` is deprecated. Use `sample_every` instead.",
                DeprecationWarning,
                stacklevel=2,
            )
            sample_every = dt
        period = 1 if sample_every is None else sample_every / self.dt
        steps = np.arange(1, self.n_steps + 1)
        return self.dt * steps[steps % period < 1]
