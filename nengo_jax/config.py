"""``configure_settings``: simulator options stored on a Network's config."""

from __future__ import annotations

from dataclasses import dataclass, fields

import nengo
from nengo.ensemble import Neurons
from nengo.exceptions import ConfigError, NetworkContextError, ValidationError
from nengo.params import BoolParam, Parameter

from nengo_jax.build.marking import TRAINABLE_CLASSES


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

    def validate(self):
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


OPTIONS = tuple(f.name for f in fields(Settings))


def configure_settings(**options):
    """Set simulator options on the Network whose context is active.

    Call it inside a ``with network:`` block. Each call sets only the options it
    names; the Simulator reads them from the top-level network.

    Parameters
    ----------
    trainable : bool or None
        Adds a ``trainable`` config parameter to Ensembles, Connections and
        Neurons of this network with this default (None: the default choice,
        which trains connection weights, encoders and biases); then
        ``net.config[obj].trainable`` sets it per object or class.
    planner, sorter, simplifications
        Graph optimisation stages (see ``nengo_jax.graph_optimizer``).
    inference_only : bool
        Build without support for training.
    lif_smoothing : float or None
        Train LIF neurons through SoftLIFRate with this ``sigma``.
    dtype : "float32" or "float64"
        Floating point precision of the simulation.
    keep_history : bool
        Whether probes keep every step (False: only the last); adds a
        ``keep_history`` config parameter to this network's Probes, so that
        ``net.config[probe].keep_history`` sets it per probe.
    stateful : bool
        Whether state carries over between calls.
    use_loop : bool
        Whether to run a loop over time (False: exactly ``unroll_simulation`` steps).
    learning_phase : bool or None
        Force training (True) or inference (False) behaviour everywhere.
    surrogate_gradients : bool
        In training, keep spiking neurons spiking on the forward pass and
        backpropagate through their rate approximation (straight-through),
        rather than running them as rates.
    matmul_precision : "highest", "high" or "default"
        Precision of float32 matrix products on GPUs ("default" allows TF32).
    """
    if not nengo.Network.context:
        raise NetworkContextError(
            "configure_settings must be called within a Network context "
            "(`with net: nengo_jax.configure_settings(...)`)"
        )
    config = nengo.Network.context[-1].config
    for name in options:
        if name not in OPTIONS:
            raise ConfigError(
                f"'{name}' is not a nengo_jax setting; valid settings are: "
                + ", ".join(OPTIONS)
            )
    if "trainable" in options:
        add_trainable(config, options["trainable"])
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
