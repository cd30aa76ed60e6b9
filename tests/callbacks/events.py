"""Reading back the event files that the callbacks write."""

import pathlib
import struct

import numpy as np
from tensorboardX.proto.event_pb2 import Event
from tensorboardX.record_writer import masked_crc32c


def read_events(path):
    """Read the ``Event`` records of one event file (TFRecord framing)."""
    data = pathlib.Path(path).read_bytes()
    events, pos = [], 0
    while pos < len(data):
        header = data[pos : pos + 8]
        (length,) = struct.unpack("<Q", header)
        (header_crc,) = struct.unpack("<I", data[pos + 8 : pos + 12])
        assert header_crc == masked_crc32c(header)
        body = data[pos + 12 : pos + 12 + length]
        (body_crc,) = struct.unpack("<I", data[pos + 12 + length : pos + 16 + length])
        assert body_crc == masked_crc32c(body)
        events.append(Event.FromString(body))
        pos += 16 + length
    return events


def event_files(directory):
    """Event files in ``directory``, oldest first."""
    files = [p for p in pathlib.Path(directory).iterdir() if "tfevents" in p.name]
    return sorted(files, key=lambda p: read_events(p)[0].wall_time)


def scalars(events):
    """``{tag: [(step, value), ...]}`` of the scalar summaries in ``events``."""
    out = {}
    for event in events:
        for value in event.summary.value:
            if value.HasField("simple_value"):
                out.setdefault(value.tag, []).append((event.step, value.simple_value))
    return out


def histograms(events):
    """``{tag: [(step, HistogramProto), ...]}`` of the histograms in ``events``."""
    out = {}
    for event in events:
        for value in event.summary.value:
            if value.HasField("histo"):
                out.setdefault(value.tag, []).append((event.step, value.histo))
    return out


def buckets(proto):
    """``(left edge, right edge, counts)`` of a histogram's buckets.

    tensorboardX writes only right edges, after an empty bucket whose right edge
    is the histogram's left edge (``proto.bucket_limit[0]``).
    """
    assert proto.bucket[0] == 0
    return proto.bucket_limit[0], proto.bucket_limit[-1], list(proto.bucket[1:])


def f32(values):
    """The values TensorBoard stores: ``simple_value`` is a float32."""
    return [float(np.float32(v)) for v in values]
