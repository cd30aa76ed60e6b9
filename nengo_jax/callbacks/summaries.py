"""`NengoSummaries`: histograms of Nengo objects' parameters for TensorBoard."""

from __future__ import annotations

import os
import re

import keras
from nengo import Connection, Ensemble
from nengo.ensemble import Neurons
from nengo.exceptions import ValidationError

from nengo_jax.callbacks.events import add_histogram, open_writer, summary_writer_class
from nengo_jax.callbacks.isolate import check_simulator

#: Object type -> (the name its tags start with, the signal summarized)
SUMMARIZED = (
    (Ensemble, "Ensemble", "encoders"),
    (Neurons, "Ensemble.neurons", "bias"),
    (Connection, "Connection", "weights"),
)


def summary_tag(kind: str, label, attr: str) -> str:
    """NengoDL's tag: ``<kind>_<label>_<attr>``, where spaces and colons in the
    label become ``_`` and other characters but ASCII letters, digits and
    ``_-./`` are dropped (``"my ens: 1"`` -> ``my_ens__1``)."""
    label = str(label).replace(" ", "_").replace(":", "_")
    return f"{kind}_{re.sub(r'[^A-Za-z0-9_./-]', '', label)}_{attr}"


class NengoSummaries(keras.callbacks.Callback):
    """Write histograms of Nengo objects' parameters at the end of each epoch.

    For each object, the histogram of its current (trained) values: an
    Ensemble's encoders (the scaled encoders that training changes, as
    ``sim.data.get_params((ens, "encoders"))``), a Neurons' biases, a
    Connection's weights (decoders, for a Connection from an Ensemble). They go
    to an event file in ``log_dir``, at step = epoch index, tagged as NengoDL
    tags them: ``Ensemble_<label>_encoders``, ``Ensemble.neurons_<label>_bias``
    (the Ensemble's label) and ``Connection_<label>_weights`` (see
    `summary_tag`; an object without a label shows ``None``). Histograms have
    30 buckets of equal width, as NengoDL's.

    Each ``fit`` call writes a new event file (opened at train begin, closed at
    train end), so one instance may be reused across ``fit`` calls.

    Parameters
    ----------
    log_dir : str or os.PathLike
        Directory where the event files are written; created if missing.
    sim : nengo_jax.Simulator
        The Simulator whose parameter values are written.
    objects : list of nengo.Ensemble, nengo.ensemble.Neurons or nengo.Connection
        The objects to summarize, all in ``sim``'s network.

    Raises
    ------
    ImportError
        If ``tensorboardX`` is not installed.
    nengo.exceptions.ValidationError
        (A ``ValueError``, as NengoDL raises.) If an object is of another type
        (slices included), or has no such parameter in ``sim`` (it is not in the
        simulated network, or its Ensemble has ``Direct`` neurons); NengoDL
        raises the latter only once training starts.
    """

    def __init__(self, log_dir: str | os.PathLike, sim, objects):
        self._summary_writer_cls = summary_writer_class("NengoSummaries")
        check_simulator(sim, self)
        super().__init__()
        self.log_dir = os.fspath(log_dir)
        self.sim = sim
        self.summaries = [self._summary(obj) for obj in self._listed(objects)]
        self._writer = None

    def _listed(self, objects):
        try:
            return list(objects)
        except TypeError:
            raise ValidationError(
                "must be a list of Ensembles, Neurons and Connections; got "
                f"{type(objects).__name__} {objects!r}",
                attr="objects",
                obj=self,
            ) from None

    def _summary(self, obj):
        """``(tag, obj, attr)`` for ``obj``."""
        found = [(kind, attr) for cls, kind, attr in SUMMARIZED if isinstance(obj, cls)]
        if not found:
            raise ValidationError(
                "must contain only Ensembles (for their encoders), Neurons (biases) "
                f"and Connections (weights); got {type(obj).__name__} {obj!r}",
                attr="objects",
                obj=self,
            )
        ((kind, attr),) = found
        if self.sim.model.sig.get(obj, {}).get(attr) is None:
            raise ValidationError(
                f"{obj!r} has no {attr!r} parameter in this Simulator's model; "
                "summarize objects of the simulated network (and no Neurons of "
                "Direct-mode Ensembles, which have no biases)",
                attr="objects",
                obj=self,
            )
        label = obj.ensemble.label if isinstance(obj, Neurons) else obj.label
        return summary_tag(kind, label, attr), obj, attr

    def _close(self):
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def on_train_begin(self, logs=None):
        # (a fit that raised before on_train_end left its file open)
        self._close()
        self._writer = open_writer(self._summary_writer_cls, self.log_dir)

    def on_epoch_end(self, epoch, logs=None):
        params = self.sim.data.get_params(
            *[(obj, attr) for _, obj, attr in self.summaries]
        )
        for (tag, _, _), value in zip(self.summaries, params, strict=True):
            add_histogram(self._writer, tag, value, epoch)

    def on_train_end(self, logs=None):
        self._close()
