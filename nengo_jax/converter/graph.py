"""Reading the Keras graph: `KerasMap`, a model's inputs and outputs, its calls.

`KerasMap` maps Keras tensors (and the layers making them) by identity; `model_io` gives
a model's input and output tensors; `nodes_in_order` lists the calls of
layers (Keras nodes) between them in an order in which each call's inputs
come first.
"""

from __future__ import annotations

from nengo.exceptions import ValidationError


class KerasMap:
    """A mapping keyed by Keras tensors, by identity; layers look up their outputs.

    Keras tensors overload their operators, so they are looked up by ``id``;
    the map keeps its keys alive. Its keys (what ``len`` counts and iteration
    gives) are tensors. A layer is a key too, for the tensor it makes (a list
    of values for a call with several outputs), unless the map holds tensors
    of several calls of the layer: then its key is ambiguous (a KeyError).
    """

    def __init__(self):
        self._items = {}

    def __getitem__(self, key):
        item = self._items.get(id(key))
        if item is not None:
            return item[1]
        calls = {}
        for tensor, value in self._items.values():
            operation, node_index, tensor_index = tensor._keras_history
            if operation is key:
                calls.setdefault(node_index, []).append((tensor_index, value))
        if not calls:
            raise KeyError(f"{key!r} is not a key of this map")
        if len(calls) > 1:
            raise KeyError(
                f"Layer {getattr(key, 'name', key)!r} is called {len(calls)} times "
                "in the model, so it is ambiguous as a key; use the output tensor "
                "of one call instead"
            )
        (values,) = calls.values()
        values = [value for _, value in sorted(values, key=lambda v: v[0])]
        return values[0] if len(values) == 1 else values

    def __setitem__(self, key, value):
        if not hasattr(key, "_keras_history"):
            raise TypeError(f"Keys of a KerasMap are Keras tensors; got {key!r}")
        self._items[id(key)] = (key, value)

    def __contains__(self, key):
        try:
            self[key]
        except KeyError:
            return False
        return True

    def __len__(self):
        return len(self._items)

    def __iter__(self):
        return (key for key, _ in self._items.values())

    def get(self, key, default=None):
        return self[key] if key in self else default

    def keys(self):
        return list(self)

    def values(self):
        return [value for _, value in self._items.values()]

    def items(self):
        return list(self._items.values())

    def __repr__(self):
        names = [getattr(k, "name", repr(k)) for k in self]
        return f"KerasMap({names})"


def model_io(model):
    """A model's input and output tensors (two lists); an error if it has none."""
    try:
        inputs, outputs = model.inputs, model.outputs
    except (AttributeError, ValueError):
        inputs = outputs = None
    if not inputs or not outputs:
        raise ValidationError(
            f"Model {model.name!r} has no defined inputs and outputs; build it on "
            "keras.Input (e.g. keras.Sequential([keras.Input(shape), ...]))",
            attr="model",
        )
    return list(inputs), list(outputs)


def nodes_in_order(inputs, outputs) -> list:
    """The Keras nodes (layer calls) from ``inputs`` to ``outputs``, in order."""
    known = {id(t) for t in inputs}
    order, seen = [], set()
    stack = [(t, False) for t in reversed(outputs)]
    while stack:
        tensor, expanded = stack.pop()
        if id(tensor) in known:
            continue
        operation, node_index, _ = tensor._keras_history
        node = operation._inbound_nodes[node_index]
        if expanded:
            if id(node) not in seen:
                seen.add(id(node))
                order.append(node)
            for t in node.output_tensors:
                known.add(id(t))
            continue
        if not node.input_tensors and node.is_input:
            raise ValidationError(
                f"The model's outputs depend on {tensor.name}, which is not one "
                "of its inputs",
                attr="model",
            )
        stack.append((tensor, True))
        stack.extend((t, False) for t in reversed(node.input_tensors))
    return order
