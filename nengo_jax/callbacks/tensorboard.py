"""`TensorBoard`: Keras's TensorBoard callback, without TensorFlow.

Keras 3's own ``keras.callbacks.TensorBoard`` imports TensorFlow, which
nengo_jax does not need; this one writes the same event files with
`tensorboardX <https://github.com/lanpa/tensorboardX>`_ (pure Python and
protobuf) and profiles with JAX's profiler.
"""

from __future__ import annotations

import os
import re
import time
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import keras
import numpy as np
from nengo.exceptions import ValidationError

from nengo_jax.callbacks.events import add_histogram, open_writer, summary_writer_class
from nengo_jax.callbacks.profiler import BatchProfiler, is_int, profile_range

#: Arguments of Keras 2's TensorBoard that it accepted and ignored.
IGNORED_KERAS2_ARGS = (
    "write_grads",
    "batch_size",
    "embeddings_layer_names",
    "embeddings_data",
)

#: What TensorBoard does not allow in tags (tensorboardX replaces it with ``_``).
INVALID_TAG_CHARACTERS = re.compile(r"[^-/\w.]")


class TensorBoard(keras.callbacks.Callback):
    """Write training logs, histograms and profiles for TensorBoard.

    Takes the arguments of Keras's (and so NengoDL's) ``TensorBoard`` and
    writes what they ask for, except what needs TensorFlow: event files are
    written with ``tensorboardX`` (``pip install tensorboardX``, or the
    ``nengo-jax[tensorboard]`` extra), and profiles with ``jax.profiler``.

    At the end of each epoch every numeric scalar in ``logs`` is written:
    training entries to ``<log_dir>/train`` as ``epoch_<name>``, and ``val_*``
    entries, without the ``val_`` prefix, to ``<log_dir>/validation`` as
    ``epoch_<name>``, both at step = epoch index. At the end of each
    evaluation (``evaluate``, or validation in ``fit``), its results go to
    ``<log_dir>/validation`` as ``evaluation_<name>_vs_iterations``, at step =
    the optimizer's iteration count, as in Keras.

    Each ``fit`` call writes new event files (opened at train begin, flushed and
    closed at train end), so one instance may be reused across ``fit`` calls
    and several runs may share a ``log_dir``.

    Parameters
    ----------
    log_dir : str or os.PathLike
        Directory under which the ``train`` and ``validation`` event files and
        the profiles are written; created if missing.
    histogram_freq : int or None
        Write histograms at the end of every ``histogram_freq``-th epoch (epochs
        ``0, histogram_freq, 2 * histogram_freq, ...``, as Keras does), to
        ``<log_dir>/train`` at step = epoch index; 0 writes none. None (the
        default) means 1 if ``histograms`` are given, else 0 (Keras's default).
    write_graph : bool
        Keras writes the model's TensorFlow graph; nengo_jax has none to write,
        so True only warns (hence the default False, where Keras's is True).
    write_images : bool
        Keras also writes weights as images; not supported (True warns).
    write_steps_per_second : bool
        Also write the training batches per second: for each epoch as
        ``epoch_steps_per_second``, and with each batch point (see
        ``update_freq``) as ``batch_steps_per_second``.
    update_freq : "epoch" or "batch" or int
        ``"epoch"`` writes scalars only at the end of each epoch. ``"batch"``
        also writes each training batch's logs as ``batch_<name>``; an int
        ``N`` does so every ``N`` batches. The step of a batch point is the
        number of batches trained so far in this ``fit`` call, counted across
        epochs (so the points fall at steps ``N, 2N, ...``).
    profile_batch : int or (int, int) or str
        Profile batch ``N`` (counted from 1 across epochs, in each ``fit``, as
        Keras counts), or the batches ``start`` to ``stop`` (inclusive; also as
        ``"start,stop"``), with ``jax.profiler``, which writes the trace under
        ``<log_dir>/plugins/profile/`` for TensorBoard's profile plugin (each
        profiled batch is marked ``Profiled batch N``). ``predict`` batches
        are profiled too, counted from 1 in each call (NengoDL's TensorBoard
        "also profiles inference"). 0 (the default) profiles nothing.
    embeddings_freq, embeddings_metadata
        Keras's embedding projector; not supported (other than 0 and None
        warns).
    histograms : dict of {str: callable}, optional
        Histograms to write, as ``{tag: fn}``; each ``fn`` takes no arguments
        and returns an array-like (for example
        ``lambda: sim.data[ens].encoders``). Errors raised by ``fn`` propagate.
        By default, as in Keras, the model's weights: each layer's weights as
        ``<weight path>/histogram`` (characters that TensorBoard does not allow
        in tags become ``_``), or, for a model without layers (a Simulator's),
        its trainable weights. Histograms have 30 buckets of
        equal width, as Keras's.
    **kwargs
        Keras 2's ``write_grads``, ``batch_size``, ``embeddings_layer_names``
        and ``embeddings_data``, which Keras 2 ignored with a warning, as here.

    Raises
    ------
    ImportError
        If ``tensorboardX`` is not installed.
    nengo.exceptions.ValidationError
        (A ``ValueError``.) If an argument is invalid.
    """

    def __init__(
        self,
        log_dir: str | os.PathLike = "logs",
        histogram_freq: int | None = None,
        write_graph: bool = False,
        write_images: bool = False,
        write_steps_per_second: bool = False,
        update_freq: str | int = "epoch",
        profile_batch: int | tuple[int, int] | str = 0,
        embeddings_freq: int = 0,
        embeddings_metadata: Any = None,
        histograms: Mapping[str, Callable[[], Any]] | None = None,
        **kwargs,
    ):
        self._summary_writer_cls = summary_writer_class("TensorBoard")
        super().__init__()
        self.log_dir = os.fspath(log_dir)
        self.update_freq = self._check_update_freq(update_freq)
        self.histograms = self._check_histograms(histograms)
        self.histogram_freq = self._check_histogram_freq(histogram_freq)
        self.write_steps_per_second = bool(write_steps_per_second)
        self.profile_batches = profile_range(profile_batch, self)
        self._warn_unsupported(
            write_graph, write_images, embeddings_freq, embeddings_metadata, kwargs
        )

        self._writers: dict[str, Any] = {}
        self._in_fit = False
        self._train_batches = 0
        self._batch_began = self._epoch_began = 0.0
        self._epoch_first_batch = 0
        self._profiler = BatchProfiler(self.log_dir, self.profile_batches)

    # -- arguments --------------------------------------------------------------------

    def _check_update_freq(self, update_freq):
        if isinstance(update_freq, str) and update_freq in ("epoch", "batch"):
            return 1 if update_freq == "batch" else update_freq
        if is_int(update_freq) and update_freq > 0:
            return int(update_freq)
        raise ValidationError(
            "must be 'epoch', 'batch' or a positive int (write batch logs "
            f"every N batches); got {update_freq!r}",
            attr="update_freq",
            obj=self,
        )

    def _check_histograms(self, histograms):
        if histograms is None:
            return None
        if not isinstance(histograms, Mapping):
            raise ValidationError(
                "must be a dict of {tag: callable returning an array}; got "
                f"{type(histograms).__name__} {histograms!r}",
                attr="histograms",
                obj=self,
            )
        for tag, fn in histograms.items():
            if not callable(fn):
                raise ValidationError(
                    f"value for tag {tag!r} must be a callable taking no arguments "
                    f"and returning an array; got {type(fn).__name__} {fn!r}. "
                    f"Wrap it, e.g. {{{tag!r}: lambda: value}}",
                    attr="histograms",
                    obj=self,
                )
        return dict(histograms)

    def _check_histogram_freq(self, histogram_freq):
        if histogram_freq is None:
            return 0 if self.histograms is None else 1
        if not is_int(histogram_freq) or histogram_freq < 0:
            raise ValidationError(
                "must be a non-negative int (write histograms every N epochs; 0 "
                f"writes none); got {histogram_freq!r}",
                attr="histogram_freq",
                obj=self,
            )
        return int(histogram_freq)

    def _warn_unsupported(self, graph, images, embeddings_freq, metadata, kwargs):
        unknown = sorted(set(kwargs) - set(IGNORED_KERAS2_ARGS))
        if unknown:
            raise TypeError(
                f"TensorBoard got unexpected keyword arguments {unknown}; it takes "
                "Keras's TensorBoard arguments, `histograms` and Keras 2's "
                f"{list(IGNORED_KERAS2_ARGS)}"
            )
        unsupported = [
            (graph, "write_graph=True: nengo_jax has no TensorFlow graph to write"),
            (images, "write_images=True: weights are not written as images"),
            (
                embeddings_freq or metadata is not None,
                "embeddings_freq/embeddings_metadata: the embedding projector is "
                "not supported",
            ),
        ] + [
            (kwargs[name], f"{name}: ignored, as Keras 2 ignored it")
            for name in IGNORED_KERAS2_ARGS
            if name in kwargs
        ]
        for given, what in unsupported:
            if given:
                warnings.warn(
                    f"nengo_jax.callbacks.TensorBoard ignores {what}",
                    UserWarning,
                    stacklevel=3,
                )

    # -- writers ----------------------------------------------------------------------

    def _writer(self, name: str):
        """Return the writer for ``<log_dir>/<name>``, opening it on first use."""
        if name not in self._writers:
            self._writers[name] = open_writer(
                self._summary_writer_cls, os.path.join(self.log_dir, name)
            )
        return self._writers[name]

    def _close_writers(self):
        for writer in self._writers.values():
            writer.close()
        self._writers = {}

    @staticmethod
    def _scalars(logs: Mapping[str, Any] | None):
        """Yield ``(name, float)`` for every numeric scalar in ``logs``."""
        for name, value in (logs or {}).items():
            try:
                array = np.asarray(value)
            except Exception:
                continue
            if array.ndim == 0 and array.dtype.kind in "biuf":
                yield name, float(array)

    def _weights(self) -> dict:
        """``{tag: fn}`` of the model's weights (see ``histograms``)."""
        layers = getattr(self.model, "layers", None)
        if layers:
            weights = [w for layer in layers for w in layer.weights]
        else:
            weights = self.model.trainable_weights
        return {
            INVALID_TAG_CHARACTERS.sub("_", w.path) + "/histogram": (
                lambda w=w: np.asarray(w.value)
            )
            for w in weights
            if np.prod(w.shape) > 0
        }

    # -- training -----------------------------------------------------------------

    def on_train_begin(self, logs=None):
        # A fit that raised before on_train_end leaves writers open (and maybe
        # a trace running); close them so this run starts new event files.
        self._close_writers()
        self._profiler.start_call()
        self._in_fit = True
        self._train_batches = 0
        self._writer("train")

    def on_train_batch_begin(self, batch, logs=None):
        self._batch_began = time.perf_counter()
        self._profiler.begin_batch()

    def on_train_batch_end(self, batch, logs=None):
        seconds = time.perf_counter() - self._batch_began
        self._train_batches += 1
        if self.update_freq != "epoch" and self._train_batches % self.update_freq == 0:
            writer = self._writer("train")
            for name, value in self._scalars(logs):
                writer.add_scalar(f"batch_{name}", value, self._train_batches)
            if self.write_steps_per_second:
                writer.add_scalar(
                    "batch_steps_per_second", 1 / seconds, self._train_batches
                )
        self._profiler.end_batch()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_began = time.perf_counter()
        self._epoch_first_batch = self._train_batches

    def on_epoch_end(self, epoch, logs=None):
        for name, value in self._scalars(logs):
            if name.startswith("val_"):
                self._writer("validation").add_scalar(
                    f"epoch_{name[len('val_') :]}", value, epoch
                )
            else:
                self._writer("train").add_scalar(f"epoch_{name}", value, epoch)
        if self.write_steps_per_second:
            batches = self._train_batches - self._epoch_first_batch
            seconds = time.perf_counter() - self._epoch_began
            self._writer("train").add_scalar(
                "epoch_steps_per_second", batches / seconds, epoch
            )

        if self.histogram_freq and epoch % self.histogram_freq == 0:
            histograms = self._weights() if self.histograms is None else self.histograms
            writer = self._writer("train")
            for tag, fn in histograms.items():
                add_histogram(writer, tag, fn(), epoch)

    def on_train_end(self, logs=None):
        self._profiler.stop()
        self._in_fit = False
        self._close_writers()

    # -- evaluation -------------------------------------------------------------------

    def on_test_end(self, logs=None):
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is not None:
            step = int(np.asarray(optimizer.iterations))
            writer = self._writer("validation")
            for name, value in self._scalars(logs):
                writer.add_scalar(f"evaluation_{name}_vs_iterations", value, step)
            writer.flush()
        if not self._in_fit:
            self._close_writers()

    # -- profiling (training and inference) -----------------------------------------

    def on_predict_begin(self, logs=None):
        self._profiler.start_call()

    def on_predict_batch_begin(self, batch, logs=None):
        self._profiler.begin_batch()

    def on_predict_batch_end(self, batch, logs=None):
        self._profiler.end_batch()

    def on_predict_end(self, logs=None):
        self._profiler.stop()
