"""Shared checks of the reproduction smoke tests: the benchmarks folder on sys.path, JSON and PNG outputs."""

import json
import os
import sys

import pytest
import tensorflow as tf

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "benchmarks")


@pytest.fixture(scope="module")
def benchmarks_on_path():
    sys.path.insert(0, BENCHMARKS)
    yield
    sys.path.remove(BENCHMARKS)


def load_json(path):
    with open(path) as handle:
        return json.load(handle)


def assert_png(path):
    image = tf.io.decode_png(tf.io.read_file(str(path)))
    assert image.shape[0] >= 100 and image.shape[1] >= 100 and image.shape[2] in (3, 4)
    # A blank canvas would mean nothing was drawn.
    assert float(tf.math.reduce_std(tf.cast(image, tf.float32))) > 1.0
