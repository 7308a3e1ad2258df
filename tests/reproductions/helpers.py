"""Shared checks of the reproduction smoke tests: the benchmarks folder on sys.path, JSON and PNG outputs."""

import json
import os
import re
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


def table_rows(path, header):
    """The body rows of the Markdown table whose header line starts with `header`, as lists of cell texts."""
    with open(path) as handle:
        lines = handle.read().splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(header)]
    assert len(starts) == 1, f"{path}: one table with header {header!r} expected, found {len(starts)}"
    rows = []
    for line in lines[starts[0] + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    assert rows, f"{path}: the table {header!r} has no rows"
    return rows


def assert_matches_shown(cell, values):
    """The numbers shown in a table cell (bold, thousands commas allowed) are `values` rounded as displayed."""
    shown = re.findall(r"-?\d[\d,]*(?:\.\d+)?", cell.replace("*", ""))
    assert len(shown) == len(values), (cell, values)
    for text, value in zip(shown, values):
        decimals = len(text.split(".")[1]) if "." in text else 0
        assert abs(float(text.replace(",", "")) - value) <= 0.5 * 10.0**-decimals * (1 + 1e-9), (cell, values)
