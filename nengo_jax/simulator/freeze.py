"""Trained parameters into Nengo objects: ``freeze_params``, ``get_nengo_params``."""

from __future__ import annotations

import numpy as np
from nengo import Connection, Ensemble
from nengo.exceptions import ValidationError
from nengo.neurons import Direct
from nengo.params import NdarrayParam
from nengo.solvers import NoSolver, Solver
from nengo.transforms import (
    Convolution,
    ConvolutionTranspose,
    Dense,
    Sparse,
    SparseMatrix,
)

from nengo_jax.simulator.data import safe_gain


class FixedWeights(Solver):
    """A solver that returns given full weights, ``(pre neurons, post neurons)``.

    Frozen connections with a weight solver (``solver.weights=True``) use it: it
    is not compositional, so Nengo uses the weights exactly as given instead of
    combining them with the post-synaptic encoders.

    Parameters
    ----------
    values : (pre.n_neurons, post.n_neurons) array_like
        The transposed connection weights.
    """

    compositional = False

    values = NdarrayParam("values", shape=("*", "*"))

    def __init__(self, values):
        super().__init__(weights=True)
        self.values = values

    def __call__(self, A, Y, rng=None):
        return self.values, {}


class FreezeMethods:
    """Writing trained parameters into Nengo objects, mixed into the `.Simulator`."""

    def freeze_params(self, objs):
        """Write the current parameters into the Nengo objects themselves.

        Afterwards ``nengo.Simulator(net)`` (or any other Nengo backend)
        simulates the trained model. Ensembles get explicit ``encoders``,
        ``gain`` and ``bias``; Connections get their weights (see
        `get_nengo_params`).

        Parameters
        ----------
        objs : Network, Ensemble, Connection or list
            The objects to freeze; a Network freezes all its Ensembles and
            Connections (recursively).
        """
        kwargs = self.get_nengo_params(self._objects_of(objs))
        for obj, params in zip(self._objects_of(objs), kwargs, strict=True):
            for name, value in params.items():
                setattr(obj, name, value)

    def get_nengo_params(self, objs, as_dict=False):
        """Keyword arguments that build Nengo objects with the current parameters.

        For example ``nengo.Ensemble(n, d, **params)`` or
        ``nengo.Connection(pre, post, **params)``. Only the parameters that
        training changes (and those that go with them: gains, solvers) are
        given; the rest (neuron types, synapses...) are up to the caller.

        An Ensemble gets ``encoders`` (with ``normalize_encoders=False``),
        ``gain`` and ``bias`` (``max_rates`` and ``intercepts`` are reset to
        their defaults, since gain and bias determine them). A Connection from
        an Ensemble's decoded output gets its weights as the decoders of a
        ``NoSolver`` (its ``function`` becomes inert zero points of the right
        size and ``transform`` None); with a weight solver, a `.FixedWeights`
        solver. Other Connections get their transform with the current weights.

        Parameters
        ----------
        objs : Ensemble, Connection, Network or list
            The objects.
        as_dict : bool
            Return ``{label: kwargs}`` instead of a list (labels must be unique).

        Returns
        -------
        dict or list of dict
            One dict for a single Ensemble or Connection, else a list (or a
            dict by label).
        """
        self._check_open("get the parameters of")
        single = isinstance(objs, Ensemble | Connection)
        objects = self._objects_of(objs)
        params = [
            self._ensemble_kwargs(obj)
            if isinstance(obj, Ensemble)
            else self._connection_kwargs(obj)
            for obj in objects
        ]
        if as_dict:
            labels = [obj.label for obj in objects]
            bad = [
                str(obj)
                for obj in objects
                if obj.label is None or labels.count(obj.label) > 1
            ]
            if bad:
                raise ValidationError(
                    "as_dict=True keys the parameters by label, so every object "
                    f"needs a unique label; {', '.join(bad)} do not have one. Give "
                    "them labels or use as_dict=False",
                    attr="as_dict",
                    obj=self,
                )
            return dict(zip(labels, params, strict=True))
        return params[0] if single else params

    def _ensemble_kwargs(self, ens) -> dict:
        live = self.data[ens]
        built = self.model.params[ens]
        if isinstance(ens.neuron_type, Direct):
            if live is not built:
                raise ValidationError(
                    f"The encoders of {ens} have changed, but Nengo simulates Direct "
                    "ensembles without encoders, so they cannot be frozen; make the "
                    "ensemble untrainable (configure_settings(trainable=...))",
                    attr="encoders",
                    obj=ens,
                )
            return {}
        gain, encoders = built.gain, live.encoders
        if live.scaled_encoders is not built.scaled_encoders:
            gain = safe_gain(gain)  # as in live.encoders
        return {
            "encoders": np.array(encoders),
            "normalize_encoders": False,
            "gain": np.array(gain),
            "bias": np.array(live.bias),
            "max_rates": Ensemble.max_rates.default,
            "intercepts": Ensemble.intercepts.default,
        }

    def _connection_kwargs(self, conn) -> dict:
        weights = self.data[conn].weights
        if weights is None:
            return {}
        pre = conn.pre_obj
        if not isinstance(pre, Ensemble) or isinstance(pre.neuron_type, Direct):
            return {"transform": _with_weights(conn, weights)}
        weights = np.array(weights)
        if conn.solver.weights:
            transform = conn.transform
            if not isinstance(transform, Dense):
                transform = Dense((conn.size_out, conn.size_mid), init=1.0)
            return {"solver": FixedWeights(weights.T), "transform": transform}
        return {
            "eval_points": np.zeros((1, conn.size_in)),
            "function": np.zeros((1, conn.size_out)),
            "solver": NoSolver(weights.T, weights=False),
            "transform": None,
        }


def _with_weights(conn, weights):
    """``conn.transform`` holding ``weights`` (as built) instead of its own init."""
    t = conn.transform
    if isinstance(t, Dense):
        return Dense(t.shape, init=np.array(weights))
    if isinstance(t, Sparse):
        if isinstance(weights, SparseMatrix):
            return Sparse(t.shape, indices=weights.indices, init=np.array(weights.data))
        return Sparse(t.shape, init=weights.copy())
    if isinstance(t, ConvolutionTranspose):
        return ConvolutionTranspose(
            t.n_filters,
            t.input_shape.shape,
            output_shape=t.output_shape.shape,
            kernel_size=t.kernel_size,
            strides=t.strides,
            padding=t.padding,
            channels_last=t.channels_last,
            init=np.array(weights),
        )
    if isinstance(t, Convolution):
        return Convolution(
            t.n_filters,
            t.input_shape.shape,
            kernel_size=t.kernel_size,
            strides=t.strides,
            padding=t.padding,
            channels_last=t.channels_last,
            init=np.array(weights),
            groups=t.groups,
        )
    raise ValidationError(
        f"Cannot freeze the weights of {conn}: nengo_jax does not know how to "
        f"rebuild a {type(t).__name__} transform with new weights",
        attr="transform",
        obj=conn,
    )
