"""``configure_settings``: simulator options stored on a Network's config, and
the `Settings` a Simulator resolves from them once, when it is built.

Two options are also set per object: ``trainable`` and ``keep_history``. By
default (as in NengoDL) training changes connection weights (decoders or
neuron-to-neuron weights), ensemble encoders, neuron biases, and the trainable
weights of Keras layers in TensorNodes. Signals that an operator writes (e.g.
weights under an online learning rule) are simulation state, never trained.
``configure_settings(trainable=...)`` adds a ``trainable`` parameter to the
configurable objects of a network; an explicit value is looked up from the
object's own network up to the top-level one, the instance before its class in
each network. ``None`` means "no opinion".
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields

import nengo
import numpy as np
from nengo.ensemble import Neurons
from nengo.exceptions import (
    BuildError,
    ConfigError,
    NetworkContextError,
    ValidationError,
)
from nengo.params import BoolParam, Parameter

from nengo_jax.tensor_node import TensorNode, layer_weights

#: The classes that get a ``trainable`` config parameter (a Keras layer in a
#: TensorNode trains as its own ``trainable`` flags say, as in NengoDL).
TRAINABLE_CLASSES = (nengo.Ensemble, nengo.Connection, Neurons)


@dataclass(frozen=True)
class Settings:
    """The options of one simulator, resolved once at build time.

    See `configure_settings` for what each option means.
    """

    trainable: bool | None = None
    planner: object = None
    sorter: object = None
    simplifications: object = None
    inference_only: bool = False
    lif_smoothing: float | None = None
    dtype: str = "float32"
    keep_history: bool = True
    stateful: bool = True
    use_loop: bool = True
    learning_phase: bool | None = None
    #: In training, keep spikes on the forward pass and take gradients from the
    #: rate approximation (a straight-through estimator), instead of rates only.
    surrogate_gradients: bool = False
    #: Precision of float32 matrix products on accelerators: "highest" (exact
    #: float32, as Nengo computes) or "default" (allows TF32 on GPUs, faster).
    matmul_precision: str = "highest"
    #: ``(object, signal name)`` of each signal that training may change (before
    #: operators' state is excluded), from the ``trainable`` config when built.
    trained: frozenset = field(default=frozenset(), metadata={"resolved": True})
    #: The probes that keep only their last step (``keep_history`` False).
    last_only: frozenset = field(default=frozenset(), metadata={"resolved": True})

    @classmethod
    def from_network(cls, network) -> Settings:
        """The settings stored on ``network``'s config (defaults where unset)."""
        values = {}
        if network is not None and nengo.Network in network.config.params:
            params = network.config[nengo.Network]
            for f in fields(cls):
                if f.name in params._extra_params:
                    values[f.name] = getattr(params, f.name)
        settings = cls(**values)
        settings.validate()
        return settings

    def resolved(self, model) -> Settings:
        """These settings with the per-object choices of ``model``'s network.

        Called once, when the Simulator is built: config changes after that do
        not change what trains or what probes keep.
        """
        network = model.toplevel
        if network is None:
            return self
        chains = networks_of(network)
        return dataclasses.replace(
            self,
            trained=frozenset(trained_signals(model, chains, network)),
            last_only=frozenset(
                obj
                for obj, chain in chains.items()
                if isinstance(obj, nengo.Probe)
                and explicit_value(obj, chain, "keep_history") is False
            ),
        )

    def trainable_signals(self, model) -> list:
        """The signals of ``trained``, as they are in ``model`` now (merging
        replaces signals by views of merged ones)."""
        return [model.sig[obj][name] for obj, name in self.trained]

    def __post_init__(self):
        # a NumPy dtype (np.float64, np.dtype("float32")) names its precision
        if not isinstance(self.dtype, str):
            try:
                object.__setattr__(self, "dtype", np.dtype(self.dtype).name)
            except TypeError:
                pass  # (validate names the bad value)

    def validate(self):
        if self.inference_only and self.learning_phase:
            raise BuildError(
                "configure_settings(inference_only=True) builds no training "
                "version of the model, so learning_phase=True cannot run it"
            )
        if self.dtype not in ("float32", "float64"):
            raise ValidationError(
                f"dtype must be 'float32' or 'float64'; got {self.dtype!r}",
                attr="dtype",
            )
        if self.matmul_precision not in ("highest", "high", "default"):
            raise ValidationError(
                "matmul_precision must be 'highest', 'high' or 'default'; got "
                f"{self.matmul_precision!r}",
                attr="matmul_precision",
            )


OPTIONS = tuple(f.name for f in fields(Settings) if not f.metadata.get("resolved"))


def configure_settings(**options):
    """Set simulator options from inside a ``with network:`` block.

    Each call sets only the options it names. As in NengoDL, ``trainable``
    applies to the innermost network whose context is active (so a
    subnetwork can be frozen); every other option is set on the outermost one
    (the network being built), wherever it is called, and the Simulator reads
    them from its top-level network.

    Parameters
    ----------
    trainable : bool or None
        Adds a ``trainable`` config parameter to Ensembles, Connections and
        Neurons of the innermost active network with this default (None: the
        default choice, which trains connection weights, encoders and biases); then
        ``net.config[obj].trainable`` sets it per object or class. Default:
        not set (everything but what learning rules change trains).
    planner, sorter, simplifications
        Graph optimisation stages (see ``nengo_jax.graph_optimizer``).
        Defaults: the tree planner, `order_signals`, no simplifications.
    inference_only : bool
        Build without support for training. Default: False.
    lif_smoothing : float or None
        Train LIF neurons through SoftLIFRate with this ``sigma``. Default:
        None (LIFRate).
    dtype : "float32" or "float64" (or NumPy dtypes)
        Floating point precision of the simulation. Default: "float32".
    keep_history : bool
        Whether probes keep every step (False: only the last); adds a
        ``keep_history`` config parameter to the network's Probes, so that
        ``net.config[probe].keep_history`` sets it per probe. Default: True.
    stateful : bool
        Whether state carries over between calls. Default: True.
    use_loop : bool
        Whether to run a loop over time (False: exactly ``unroll_simulation``
        steps). Default: True.
    learning_phase : bool or None
        Force training (True) or inference (False) behaviour everywhere.
        Default: None (`fit` trains, every other call infers).
    surrogate_gradients : bool
        In training, keep spiking neurons spiking on the forward pass and
        backpropagate through their rate approximation (straight-through),
        rather than running them as rates. Default: False.
    matmul_precision : "highest", "high" or "default"
        Precision of float32 matrix products on GPUs ("default" allows TF32).
        Default: "highest".

    Raises
    ------
    nengo.exceptions.NetworkContextError
        If called outside a ``with network:`` block.
    nengo.exceptions.ConfigError
        If an option is unknown.
    nengo.exceptions.ValidationError
        If ``trainable`` or ``keep_history`` is not True, False or None.
    """
    if not nengo.Network.context:
        raise NetworkContextError(
            "configure_settings must be called within a Network context "
            "(`with net: nengo_jax.configure_settings(...)`)"
        )
    for name in options:
        if name not in OPTIONS:
            raise ConfigError(
                f"'{name}' is not a nengo_jax setting; valid settings are: "
                + ", ".join(OPTIONS)
            )
    if "trainable" in options:
        add_trainable(nengo.Network.context[-1].config, options["trainable"])
    config = nengo.Network.context[0].config
    if "keep_history" in options:
        add_object_setting(config, nengo.Probe, "keep_history", options["keep_history"])
    if nengo.Network not in config.params:
        config.configures(nengo.Network)
    params = config[nengo.Network]
    defaults = Settings()
    for name, value in options.items():
        if name not in params._extra_params:
            params.set_param(
                name, Parameter(name, default=getattr(defaults, name), optional=True)
            )
        setattr(params, name, value)


def add_trainable(config, default) -> None:
    """Give the trainable classes a ``trainable`` parameter in ``config``."""
    for cls in TRAINABLE_CLASSES:
        # Neurons (biases) follow their Ensemble unless set themselves
        add_object_setting(
            config, cls, "trainable", None if cls is Neurons else default
        )


def add_object_setting(config, cls, name, default) -> None:
    """Give ``cls`` a boolean config parameter ``name`` with this default."""
    if default is not None and not isinstance(default, bool):
        raise ValidationError(
            f"{name} must be True, False or None; got {default!r}", attr=name
        )
    if cls not in config.params:
        config.configures(cls)
    params = config[cls]
    if name not in params._extra_params:
        params.set_param(name, BoolParam(name, default=default, optional=True))
    else:
        setattr(params, name, default)


def networks_of(network) -> dict:
    """Each object of ``network`` -> its chain of networks, top-level first."""
    chains = {}

    def visit(net, chain):
        chain = chain + [net]
        for obj in net.ensembles + net.connections + net.probes + net.nodes:
            chains[obj] = chain
            if isinstance(obj, nengo.Ensemble):
                chains[obj.neurons] = chain
        for subnet in net.networks:
            visit(subnet, chain)

    visit(network, [])
    return chains


def explicit_value(obj, chain, name="trainable"):
    """The config value ``name`` set for ``obj`` in the lowest network setting one.

    Returns None if no network in ``chain`` says anything about ``obj``.
    """
    for net in reversed(chain):
        params = net.config.params
        instance = params.get(obj)
        if instance is not None and name in instance._clsparams._extra_params:
            if instance in instance._clsparams.get_param(name):
                value = getattr(instance, name)
                if value is not None:
                    return value
        for cls in type(obj).__mro__:
            clsparams = params.get(cls)
            if clsparams is not None and name in clsparams._extra_params:
                value = getattr(clsparams, name)
                if value is not None:
                    return value
                break
    return None


def trained_signals(model, chains, network):
    """``(object, signal name)`` of each signal of ``model`` that training may
    change (before state is excluded); ``chains`` is `networks_of(network)`."""

    def decide(obj, default=True):
        value = explicit_value(obj, chains.get(obj, [network]))
        return default if value is None else bool(value)

    for obj in chains:
        if obj not in model.sig:
            continue
        sigs = model.sig[obj]
        if isinstance(obj, nengo.Connection):
            if sigs.get("weights") is not None and decide(obj):
                yield obj, "weights"
        elif isinstance(obj, nengo.Ensemble):
            # Direct ensembles have no neurons: their encoders are unused
            direct = isinstance(obj.neuron_type, nengo.Direct)
            if sigs.get("encoders") is not None and not direct and decide(obj):
                yield obj, "encoders"
        elif isinstance(obj, TensorNode):
            for var, name in layer_weights(obj):
                if var.trainable:
                    yield obj, name
        elif isinstance(obj, Neurons):
            # the neurons' own setting first, then their ensemble's
            bias = sigs.get("bias")
            if bias is not None and decide(obj, default=decide(obj.ensemble)):
                yield obj, "bias"
