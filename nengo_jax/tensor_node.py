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
        ``add_loss`` losses are not applied, nor updates of non-trainable
        variables (a warning says so). Random numbers drawn from a
        `keras.random.SeedGenerator` (a ``Dropout`` layer's, or one given as
        ``seed=``) are new each step and reproducible with the Simulator's seed.
    shape_in : tuple of int
        Shape of the input, without the batch axis (None: no input).
    shape_out : tuple of int
        Shape of the output, without the batch axis (None: found by calling
        ``tensor_func`` on abstract inputs with a batch of one, or a Keras
        layer's ``compute_output_shape``; the shape is what follows the first
        axis of the output).
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


class UpdateRecorder(keras.StatelessScope):
    """A `keras.StatelessScope` that also lists the variables assigned in it.

    Code in the scope reads the values given in ``state_mapping`` (the variables'
    own values for the others) and its assignments change no variable: a
    TensorNode's function runs in one, so that nothing traced leaks into Keras
    variables (e.g. the state of a `keras.random.SeedGenerator`).
    """

    def __init__(self, state_mapping=None):
        super().__init__(state_mapping)
        #: The variables assigned in the scope, in order of first assignment.
        self.updated = []

    def add_update(self, update):
        super().add_update(update)
        if not any(var is update[0] for var in self.updated):
            self.updated.append(update[0])


def is_seed_state(var) -> bool:
    """Whether ``var`` is the state of a `keras.random.SeedGenerator`."""
    return var.name == "seed_generator_state" and not var.trainable


def trace_tensor_func(node, minibatch_size, training=False):
    """Shape and dtype of ``node.tensor_func``'s output for a minibatch, and the
    variables it assigns, found by tracing it on abstract inputs (so it is
    called with the time ``t`` and a ``(minibatch_size,) + shape_in`` input, and
    ``training`` if it is a Keras layer that takes it).

    Returns
    -------
    spec : jax.ShapeDtypeStruct
    updated : list of keras.Variable
    """
    t = jax.ShapeDtypeStruct((), jnp.float32)
    x = None
    if node.shape_in is not None:
        x = jax.ShapeDtypeStruct((minibatch_size,) + node.shape_in, jnp.float32)
    build_layer(node)
    scope = UpdateRecorder()
    try:
        with scope:
            spec = jax.eval_shape(
                lambda t, x: call_tensor_func(node, t, x, training=training), t, x
            )
    except Exception as e:
        raise ValidationError(
            f"{node}: calling tensor_func on abstract inputs (t: a scalar, x: "
            f"{None if x is None else x.shape}, training={training}) failed "
            f"with {type(e).__name__}: {e}",
            attr="tensor_func",
            obj=node,
        ) from e
    if not isinstance(spec, jax.ShapeDtypeStruct):
        raise ValidationError(
            f"{node}: tensor_func must return one array; got {spec}",
            attr="tensor_func",
            obj=node,
        )
    return spec, scope.updated


def build_layer(node):
    """Build ``node``'s Keras layer (if it is one), for an input of batch 1."""
    func = node.tensor_func
    if is_layer(func) and not func.built:
        func.build((1,) + tuple(node.shape_in or ()))


def infer_shape_out(node):
    """The output shape of ``node.tensor_func`` (without the batch axis).

    As in NengoDL, the function is called with a batch of one and everything
    after the first axis of its output is the shape (whatever that axis is: a
    function may return the batch it is given, or a fixed one); a Keras layer's
    ``compute_output_shape`` is asked instead, and may leave the batch None.
    """
    if is_layer(node.tensor_func):
        shape = layer_output_shape(node)
    else:
        shape = trace_tensor_func(node, 1)[0].shape
    if len(shape) < 1:
        raise ValidationError(
            f"{node}: tensor_func must return an array with a leading batch "
            "axis, (minibatch_size,) + shape_out; got a scalar. Return x[None] "
            "for a batch of one, or give shape_out",
            attr="tensor_func",
            obj=node,
        )
    return tuple(shape[1:]) or (1,)


def layer_output_shape(node) -> tuple:
    """The output shape of ``node``'s Keras layer for a batch of one, from the
    layer's ``compute_output_spec`` (``compute_output_shape`` where the layer
    defines it), called as inference calls the layer (``training=False``)."""
    func = node.tensor_func
    build_layer(node)
    args = [keras.KerasTensor((), "float32")] if node.pass_time else []
    if node.shape_in is not None:
        args.append(keras.KerasTensor((1,) + node.shape_in, "float32"))
    kwargs = {"training": False} if takes_training(func.call) else {}
    try:
        spec = func.compute_output_spec(*args, **kwargs)
        return tuple(spec.shape)
    except Exception as e:
        raise ValidationError(
            f"{node}: finding the output shape of Keras layer {func.name!r} with "
            f"compute_output_spec failed with {type(e).__name__}: {e}. Give "
            "TensorNode(..., shape_out=...) to skip this",
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
        build_layer(node)
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
