"""Keras callbacks for training nengo_jax models.

Keras 3's own ``keras.callbacks.TensorBoard`` imports TensorFlow, which
nengo_jax does not need; `TensorBoard` here writes the same event files with
`tensorboardX <https://github.com/lanpa/tensorboardX>`_ (pure Python and
protobuf) instead.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import keras
import numpy as np
from nengo.exceptions import ValidationError


class TensorBoard(keras.callbacks.Callback):
    """Write training logs and histograms as TensorBoard event files.

    A drop-in for the scalar and histogram parts of
    ``keras.callbacks.TensorBoard`` that needs no TensorFlow: event files are
    written with ``tensorboardX`` (``pip install tensorboardX``, or the
    ``nengo-jax[tensorboard]`` extra).

    At the end of each epoch every numeric scalar in ``logs`` is written:
    training entries to ``<log_dir>/train`` as ``epoch_<name>``, and ``val_*``
    entries, without the ``val_`` prefix, to ``<log_dir>/validation`` as
    ``epoch_<name>``, both at step = epoch index.

    Each ``fit`` call writes new event files (opened at train begin, flushed and
    closed at train end), so one instance may be reused across ``fit`` calls
    and several runs may share a ``log_dir``.

    Parameters
    ----------
    log_dir : str or os.PathLike
        Directory under which the ``train`` and ``validation`` event files are
        written; created if missing.
    update_freq : "epoch" or "batch" or int
        ``"epoch"`` writes scalars only at the end of each epoch. ``"batch"``
        also writes each training batch's logs as ``batch_<name>``; an int
        ``N`` does so every ``N`` batches. The step of a batch point is the
        number of batches trained so far in this ``fit`` call, counted across
        epochs (so the points fall at steps ``N, 2N, ...``).
    histograms : dict of {str: callable}, optional
        Histograms to write, as ``{tag: fn}``; each ``fn`` takes no arguments
        and returns an array-like (for example
        ``lambda: sim.data[ens].encoders``). Errors raised by ``fn`` propagate.
    histogram_freq : int
        Write the histograms at the end of every ``histogram_freq``-th epoch
        (epochs ``0, histogram_freq, 2 * histogram_freq, ...``, as Keras does),
        to ``<log_dir>/train`` at step = epoch index.

    Raises
    ------
    ImportError
        If ``tensorboardX`` is not installed.
    nengo.exceptions.ValidationError
        (A ``ValueError``.) If ``update_freq``, ``histograms`` or
        ``histogram_freq`` is invalid.
    """

    def __init__(
        self,
        log_dir: str | os.PathLike = "logs",
        update_freq: str | int = "epoch",
        histograms: Mapping[str, Callable[[], Any]] | None = None,
        histogram_freq: int = 1,
    ):
        try:
            from tensorboardX import SummaryWriter
        except ImportError as e:
            raise ImportError(
                "nengo_jax.callbacks.TensorBoard writes event files with "
                "tensorboardX, which is not installed. Install it with "
                "`pip install tensorboardX` (or `pip install nengo-jax[tensorboard]`)."
            ) from e
        super().__init__()

        if isinstance(update_freq, str) and update_freq in ("epoch", "batch"):
            pass
        elif (
            isinstance(update_freq, (int, np.integer))
            and not isinstance(update_freq, bool)
            and update_freq > 0
        ):
            update_freq = int(update_freq)
        else:
            raise ValidationError(
                "must be 'epoch', 'batch' or a positive int (write batch logs "
                f"every N batches); got {update_freq!r}",
                attr="update_freq",
                obj=self,
            )

        if (
            isinstance(histogram_freq, bool)
            or not isinstance(histogram_freq, (int, np.integer))
            or histogram_freq <= 0
        ):
            raise ValidationError(
                "must be a positive int (write histograms every N epochs); "
                f"got {histogram_freq!r}",
                attr="histogram_freq",
                obj=self,
            )

        if histograms is None:
            histograms = {}
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

        self.log_dir = os.fspath(log_dir)
        self.update_freq = 1 if update_freq == "batch" else update_freq
        self.histograms = dict(histograms)
        self.histogram_freq = int(histogram_freq)

        self._summary_writer_cls = SummaryWriter
        self._writers: dict[str, Any] = {}
        self._train_batches = 0

    def _writer(self, name: str):
        """Return the writer for ``<log_dir>/<name>``, opening it on first use."""
        if name not in self._writers:
            # tensorboardX names event files by the second and host only; a unique
            # suffix keeps two runs started in the same second from sharing a file.
            self._writers[name] = self._summary_writer_cls(
                logdir=os.path.join(self.log_dir, name),
                filename_suffix=f".{os.getpid()}.{uuid.uuid4().hex}",
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

    def on_train_begin(self, logs=None):
        # A fit that raised before on_train_end leaves writers open; close them so
        # this run starts new event files.
        self._close_writers()
        self._train_batches = 0
        self._writer("train")

    def on_train_batch_end(self, batch, logs=None):
        self._train_batches += 1
        if self.update_freq == "epoch" or self._train_batches % self.update_freq:
            return
        writer = self._writer("train")
        for name, value in self._scalars(logs):
            writer.add_scalar(f"batch_{name}", value, self._train_batches)

    def on_epoch_end(self, epoch, logs=None):
        for name, value in self._scalars(logs):
            if name.startswith("val_"):
                self._writer("validation").add_scalar(
                    f"epoch_{name[len('val_') :]}", value, epoch
                )
            else:
                self._writer("train").add_scalar(f"epoch_{name}", value, epoch)

        if self.histograms and epoch % self.histogram_freq == 0:
            writer = self._writer("train")
            for tag, fn in self.histograms.items():
                writer.add_histogram(tag, np.asarray(fn()), epoch)

    def on_train_end(self, logs=None):
        self._close_writers()
