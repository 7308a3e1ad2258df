"""The GroupSort, MaxMin and FullSort layers: shared layer checks, config, validation."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.layer_checks import (
    check_mirrored_training,
    check_mixed_precision,
    check_save_load_roundtrip,
    check_sequential_and_graph_modes,
)
from tflip.layers import FullSort, GroupSort, LipschitzLayer, MaxMin
from tflip.ops.sorting import full_sort, group_sort, max_min

# Factories for every layer configuration, with the op it must equal.
LAYERS = {
    "group_sort_2": (lambda: GroupSort(2), lambda x: group_sort(x, 2)),
    "group_sort_4_axis_1": (lambda: GroupSort(4, axis=1), lambda x: group_sort(x, 4, axis=1)),
    "group_sort_8": (lambda: GroupSort(group_size=8), lambda x: group_sort(x, 8)),
    "max_min": (MaxMin, max_min),
    "full_sort": (FullSort, full_sort),
}


@pytest.fixture
def images(rng):
    return rng.standard_normal((4, 8, 3, 8)).astype("float32")


@pytest.mark.parametrize("name", LAYERS)
def test_layer_equals_op(images, name):
    make_layer, op = LAYERS[name]
    np.testing.assert_array_equal(make_layer()(images), op(images))


def test_outputs_against_numpy(rng):
    x = rng.standard_normal((5, 12)).astype("float32")
    np.testing.assert_array_equal(
        GroupSort(3)(x), np.sort(x.reshape(5, 4, 3), axis=-1).reshape(5, 12)
    )
    np.testing.assert_array_equal(FullSort()(x), np.sort(x, axis=-1))
    first, second = x[:, :6], x[:, 6:]
    np.testing.assert_array_equal(
        MaxMin()(x), np.concatenate([np.maximum(first, second), np.minimum(first, second)], -1)
    )


@pytest.mark.parametrize("name", LAYERS)
def test_sequential_and_graph_modes(images, name):
    check_sequential_and_graph_modes(LAYERS[name][0], images, atol=0)


@pytest.mark.parametrize("name", LAYERS)
def test_save_load_roundtrip(images, name, tmp_path):
    restored = check_save_load_roundtrip(LAYERS[name][0], images, tmp_path)
    layer = restored.layers[-1]
    assert layer.get_config() == LAYERS[name][0]().get_config() | {"name": layer.name}


@pytest.mark.parametrize(
    "make_activation", [lambda: GroupSort(2), MaxMin], ids=["group_sort_2", "max_min"]
)
def test_mirrored_training(rng, make_activation):
    # The activation has no weights: train a Dense before it so gradients flow through.
    x = rng.standard_normal((8, 6)).astype("float32")
    check_mirrored_training(lambda: keras.Sequential([keras.layers.Dense(8), make_activation()]), x)


@pytest.mark.parametrize("policy, rtol", [("mixed_float16", 1e-3), ("mixed_bfloat16", 1e-2)])
@pytest.mark.parametrize("name", LAYERS)
def test_mixed_precision(images, name, policy, rtol):
    make_layer, op = LAYERS[name]
    check_mixed_precision(make_layer, images, policy, rtol)
    # Sorting is exact: the low-precision output is the sorted rounded input.
    keras.mixed_precision.set_global_policy(policy)
    out = make_layer()(images)
    keras.mixed_precision.set_global_policy("float32")
    rounded = tf.cast(images, out.dtype)
    np.testing.assert_array_equal(tf.cast(out, "float32"), tf.cast(op(rounded), "float32"))


@pytest.mark.parametrize("name", LAYERS)
def test_lipschitz_protocol(name):
    layer = LAYERS[name][0]()
    assert isinstance(layer, LipschitzLayer)
    assert isinstance(layer, keras.layers.Layer)
    norm = layer.operator_norm()
    assert norm.dtype == tf.float32 and float(norm) == 1.0
    for order in (2, "inf", "INF", np.inf):
        assert layer.lipschitz_upper_bound(order) == 1.0
    for order in (1, "fro", True, None):
        with pytest.raises(ValueError, match="norm"):
            layer.lipschitz_upper_bound(order)


@pytest.mark.parametrize("name", LAYERS)
def test_config_and_output_shape(name):
    layer = LAYERS[name][0]()
    clone = type(layer).from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    assert layer.compute_output_shape((None, 8, None, 8)) == (None, 8, None, 8)
    symbolic = layer(keras.Input(shape=(8, None, 8)))
    assert tuple(symbolic.shape) == (None, 8, None, 8)
    assert keras.saving.get_registered_name(type(layer)) == f"tflip>{type(layer).__name__}"


def test_group_sort_config_keeps_its_arguments():
    config = GroupSort(group_size=4, axis=1).get_config()
    assert config["group_size"] == 4 and config["axis"] == 1


def test_gradient_norm_is_preserved(rng):
    # Jacobian of a sorting layer is a permutation: upstream gradient norms survive.
    x = tf.constant(rng.standard_normal((6, 8)).astype("float32"))
    upstream = rng.standard_normal((6, 8)).astype("float32")
    for layer in (GroupSort(2), GroupSort(4), MaxMin(), FullSort()):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(upstream * layer(x))
        np.testing.assert_allclose(
            np.linalg.norm(tape.gradient(loss, x), axis=-1),
            np.linalg.norm(upstream, axis=-1),
            rtol=1e-6,
        )


@pytest.mark.parametrize("group_size", [0, -1, 1.5, True, "2", None])
def test_bad_group_size(group_size):
    with pytest.raises(ValueError, match="group_size"):
        GroupSort(group_size)


def test_group_size_must_divide_the_channels_at_build():
    layer = GroupSort(3)
    with pytest.raises(ValueError, match="group_size.*8.*axis 1"):
        layer.build((None, 8))
    with pytest.raises(ValueError, match="group_size"):
        keras.Sequential([keras.Input((4, 4, 8)), GroupSort(3)])


def test_max_min_needs_even_channels_at_build():
    with pytest.raises(ValueError, match="axis 3.*7"):
        MaxMin().build((None, 4, 4, 7))


@pytest.mark.parametrize("make_layer", [GroupSort, MaxMin, FullSort])
def test_channel_axis_must_be_static(make_layer):
    with pytest.raises(ValueError, match="static"):
        make_layer().build((None, None))


@pytest.mark.parametrize("make_layer", [GroupSort, MaxMin, FullSort])
def test_bad_axis(make_layer):
    with pytest.raises(ValueError, match="axis"):
        make_layer(axis=1.0)
    with pytest.raises(ValueError, match="axis"):
        make_layer(axis=2).build((None, 4))


def test_channel_count_is_fixed_after_build():
    layer = GroupSort(2)
    layer(np.zeros((1, 4), "float32"))
    with pytest.raises(ValueError):
        layer(np.zeros((1, 6), "float32"))
