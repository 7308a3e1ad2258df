"""Reads TensorBoard event files back (tf.summary data sits under the `tensors` plugin)."""

import numpy as np
import tensorflow as tf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def read_events(log_dir):
    """`{tag: [(step, ndarray), ...]}` of every summary written under `log_dir`."""
    accumulator = EventAccumulator(str(log_dir), size_guidance={"tensors": 0})
    accumulator.Reload()
    return {
        tag: [(event.step, tf.make_ndarray(event.tensor_proto)) for event in accumulator.Tensors(tag)]
        for tag in accumulator.Tags()["tensors"]
    }


def last(events, tag):
    return events[tag][-1][1]


def histogram_matches(histogram, values, rtol=1e-5):
    """True if a TensorBoard histogram `(buckets, 3)` [left, right, count] counts exactly `values`.

    Values within `rtol` of an inner bucket edge may fall on either side.
    """
    values = np.asarray(values, dtype="float64")
    if histogram[:, 2].sum() != len(values):
        return False
    low, high = histogram[0, 0], histogram[-1, 1]
    scale = max(abs(high), 1e-12)
    if abs(low - values.min()) > rtol * scale or abs(high - values.max()) > rtol * scale:
        return False
    for left, right, count in histogram:
        inside = np.sum((values >= left - rtol * scale) & (values <= right + rtol * scale))
        strictly = np.sum((values > left + rtol * scale) & (values < right - rtol * scale))
        if not strictly <= count <= inside:
            return False
    return True


def png_size(png_bytes):
    """(width, height) of PNG bytes, decoded by TensorFlow (fails on invalid data)."""
    image = tf.io.decode_png(png_bytes)
    return int(image.shape[1]), int(image.shape[0])
