"""Deep-learning code inside a Nengo network: `TensorNode`.

A `TensorNode` is a `nengo.Node` whose output is computed by a JAX function or
a Keras 3 layer, inside the simulation program. A Keras layer's weights become
signals of the model: parameters of the Simulator, stored once, that train
with the rest of the model unless the layer (or variable) is not ``trainable``
in Keras. The Simulator writes the trained values back into the layer's
variables, so the layer holds them, as in NengoDL.
"""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import keras
import nengo
import numpy as np
from nengo.base import NengoObject
from nengo.builder import Builder, Operator, Signal
from nengo.builder.operator import Reset
from nengo.exceptions import SimulationError, ValidationError
from nengo.params import BoolParam, Parameter, ShapeParam


class TensorFuncParam(Parameter):
    """A JAX-traceable callable or a Keras layer."""

    def coerce(self, node, func):
        if not callable(func):
            raise ValidationError(
                f"Must be a callable (a JAX function or a Keras layer); got "
                f"{type(func).__name__}",
                attr=self.name,
                obj=node,
            )
        return super().coerce(node, func)


class TensorNode(nengo.Node):
    """A Node whose output is computed with JAX (or a Keras layer) in the model.

    Parameters
    ----------
    tensor_func : callable or keras.layers.Layer
        Called as ``f(t, x)`` (``pass_time`` and an input), ``f(t)`` (no input)
        or ``f(x)`` (``pass_time=False``). ``t`` is the current time (a scalar),
        ``x`` has shape ``(minibatch_size,) + shape_in``; the output must have
        shape ``(minibatch_size,) + shape_out``. Keras layers get the learning
        phase as ``training``; their weights are Simulator parameters, which
        train with the weights' regularizers (added to the loss) and
        constraints (applied after each update). Activity regularizers and
        ``add_loss`` losses are not applied.
    shape_in : tuple of int
        Shape of the input, without the batch axis (None: no input).
    shape_out : tuple of int
        Shape of the output, without the batch axis (None: found by calling
        ``tensor_func`` on abstract inputs).
    pass_time : bool
        Whether ``tensor_func`` takes the time as its first argument.
    label : str
        A name for the node.
    size_in : int
        Same as ``shape_in=(size_in,)`` (as `nengo.Node` spells it).
    """

    tensor_func = TensorFuncParam("tensor_func")
    shape_in = ShapeParam("shape_in", default=None, low=1, optional=True)
    shape_out = ShapeParam("shape_out", default=None, low=1, optional=True)
    pass_time = BoolParam("pass_time", default=True)

    def __init__(
        self,
        tensor_func,
        shape_in=None,
        shape_out=None,
        pass_time=True,
        label=None,
        size_in=None,
    ):
        if size_in is not None:
            if shape_in is not None and tuple(shape_in) != (size_in,):
                raise ValidationError(
                    f"size_in={size_in} contradicts shape_in={shape_in}; give one",
                    attr="size_in",
                    obj=self,
                )
            shape_in = (size_in,)
        # Node's own __init__ would call tensor_func with NumPy to check it
        NengoObject.__init__(self, label=label, seed=None)
        self.shape_in = shape_in
        self.pass_time = pass_time
        self.tensor_func = tensor_func
        if not pass_time and shape_in is None:
            raise ValidationError(
                "A TensorNode without input must take the time (pass_time=True)",
                attr="pass_time",
                obj=self,
            )
        self.shape_out = (
            infer_shape_out(self) if shape_out is None else tuple(shape_out)
        )

    @property
    def output(self):
        """(None) A TensorNode has no NumPy output; see ``tensor_func``."""
        return None

    @property
    def size_in(self):
        """(int) The flattened size of the input."""
        return 0 if self.shape_in is None else int(np.prod(self.shape_in))

    @property
    def size_out(self):
        """(int) The flattened size of the output."""
        return int(np.prod(self.shape_out))


def is_layer(func) -> bool:
    return isinstance(func, keras.layers.Layer)


def call_tensor_func(node, t, x, training=False):
    """Call ``node.tensor_func`` as its ``pass_time`` and input say."""
    func = node.tensor_func
    args = ((t,) if node.pass_time else ()) + (() if x is None else (x,))
    if is_layer(func) and takes_training(func.call):
        return func(*args, training=training)
    return func(*args)


def takes_training(call) -> bool:
    """Whether a Keras ``call`` method accepts a ``training`` argument."""
    try:
        return "training" in inspect.signature(call).parameters
    except (TypeError, ValueError):
        return False


def infer_shape_out(node, minibatch_size=1):
    """The output shape of ``node.tensor_func`` (without the batch axis)."""
    shape = output_spec(node, minibatch_size).shape
    if len(shape) < 1 or shape[0] != minibatch_size:
        raise ValidationError(
            f"{node}: tensor_func must return a leading batch axis of size "
            f"minibatch_size ({minibatch_size}); got shape {shape}",
            attr="tensor_func",
            obj=node,
        )
    return tuple(shape[1:]) or (1,)


def output_spec(node, minibatch_size):
    """Shape and dtype of ``node.tensor_func``'s output for a minibatch."""
    x = (
        None
        if node.shape_in is None
        else jax.ShapeDtypeStruct((minibatch_size,) + node.shape_in, jnp.float32)
    )
    func = node.tensor_func
    if is_layer(func):
        if not func.built:
            func.build((minibatch_size,) + tuple(node.shape_in or ()))
        spec = func.compute_output_spec(
            *([keras.KerasTensor((), "float32")] if node.pass_time else []),
            *([] if x is None else [keras.KerasTensor(x.shape, "float32")]),
        )
        return jax.ShapeDtypeStruct(tuple(spec.shape), spec.dtype)
    t = jax.ShapeDtypeStruct((), jnp.float32)
    try:
        return jax.eval_shape(lambda t, x: call_tensor_func(node, t, x), t, x)
    except Exception as e:
        raise ValidationError(
            f"{node}: calling tensor_func on abstract inputs (t: a scalar, x: "
            f"{None if x is None else x.shape}) failed with {type(e).__name__}: "
            f"{e}",
            attr="tensor_func",
            obj=node,
        ) from e


class SimTensorNode(Operator):
    """Computes ``output = tensor_func(time, input)`` in nengo_jax.

    The weights of a Keras layer are signals read by the operator, so that the
    Simulator holds them as parameters.
    """

    def __init__(self, node, time, input, output, weights, tag=None):
        super().__init__(tag=tag)
        self.node = node
        self.has_input = input is not None
        self.sets = [output]
        self.incs = []
        self.reads = [time] + ([input] if self.has_input else []) + list(weights)
        self.updates = []

    # signals are looked up in the lists, which Nengo's optimizer may rewrite
    @property
    def time(self):
        return self.reads[0]

    @property
    def input(self):
        return self.reads[1] if self.has_input else None

    @property
    def weights(self):
        return self.reads[1 + self.has_input :]

    @property
    def output(self):
        return self.sets[0]

    def make_step(self, signals, dt, rng):
        node = self.node

        def step_tensor_node():
            # (make_step itself must work: Nengo calls it to check operators)
            raise SimulationError(
                f"{node} is a TensorNode: its JAX code runs only in "
                "nengo_jax.Simulator, not in this simulator"
            )

        return step_tensor_node


def _weight_name(i: int) -> str:
    return f"weight{i}"


def layer_weights(node) -> list:
    """``(variable, signal name)`` of each weight of ``node``'s Keras layer (none
    for a function); ``model.sig[node][name]`` is the weight's signal."""
    if not is_layer(node.tensor_func):
        return []
    return [(var, _weight_name(i)) for i, var in enumerate(node.tensor_func.weights)]


@Builder.register(TensorNode)
def build_tensor_node(model, node):
    """Build a `TensorNode`: input and output signals and a `SimTensorNode`."""
    sig_in = None
    if node.size_in > 0:
        sig_in = Signal(shape=(node.size_in,), name=f"{node}.in")
        model.add_op(Reset(sig_in))
    sig_out = Signal(shape=(node.size_out,), name=f"{node}.out")
    weights = []
    if is_layer(node.tensor_func):
        layer = node.tensor_func
        if not layer.built:
            layer.build((1,) + tuple(node.shape_in or ()))
        for i, var in enumerate(layer.weights):
            sig = Signal(
                initial_value=np.array(var.value),
                name=f"{node}.{var.path}",
            )
            model.sig[node][_weight_name(i)] = sig
            weights.append(sig)
    model.sig[node]["in"] = sig_in
    model.sig[node]["out"] = sig_out
    model.params[node] = None
    model.add_op(
        SimTensorNode(node, model.time, sig_in, sig_out, weights, tag=str(node))
    )
