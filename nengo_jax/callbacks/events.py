"""TensorBoard event files, written with tensorboardX (no TensorFlow)."""

from __future__ import annotations

import os
import uuid
from typing import Any

import numpy as np

#: Buckets of a histogram: equal widths from the smallest value to the largest,
#: as Keras's (TensorFlow 2's) histograms and so NengoDL's.
HISTOGRAM_BUCKETS = 30


def summary_writer_class(owner: str):
    """tensorboardX's ``SummaryWriter``, or an ImportError naming ``owner``."""
    try:
        from tensorboardX import SummaryWriter
    except ImportError as e:
        raise ImportError(
            f"nengo_jax.callbacks.{owner} writes event files with tensorboardX, "
            "which is not installed. Install it with `pip install tensorboardX` "
            "(or `pip install nengo-jax[tensorboard]`)."
        ) from e
    return SummaryWriter


def open_writer(writer_class, log_dir: str):
    """A new event file in ``log_dir`` (created if missing)."""
    # tensorboardX names event files by the second and host only; a unique
    # suffix keeps two runs started in the same second from sharing a file.
    return writer_class(
        logdir=log_dir, filename_suffix=f".{os.getpid()}.{uuid.uuid4().hex}"
    )


def add_histogram(writer, tag: str, values: Any, step: int):
    """Write a histogram of ``values`` (`HISTOGRAM_BUCKETS` buckets)."""
    writer.add_histogram(
        tag, np.asarray(values, dtype=np.float64), step, bins=HISTOGRAM_BUCKETS
    )
