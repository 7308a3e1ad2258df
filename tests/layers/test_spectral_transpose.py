"""SpectralNormConv2DTranspose and SpectralNormConv1D: exact operator norms against explicit matrices."""

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
from tflip.export import to_plain_keras
from tflip.layers import SpectralNormConv1D, SpectralNormConv2DTranspose
from tflip.lipschitz import layer_lipschitz_bound, lipschitz_upper_bound


def layer_matrix(layer, input_shape):
    """Explicit matrix of the layer's map at inference (float64 numpy), bias removed."""
    n = int(np.prod(input_shape))
    basis = np.eye(n, dtype="float32").reshape(n, *input_shape)
    zero = np.asarray(layer(np.zeros((1, *input_shape), "float32"), training=False), np.float64)
    out = np.asarray(layer(basis, training=False), np.float64) - zero
    return out.reshape(n, -1).T


def largest_singular_value(matrix):
    return np.linalg.svd(matrix, compute_uv=False)[0]


@pytest.mark.parametrize("kernel_size", [2, 3, 4])
@pytest.mark.parametrize("strides", [1, 2, (2, 3)])
@pytest.mark.parametrize("padding", ["same", "valid"])
def test_transpose_converged_norm_equals_lipschitz(kernel_size, strides, padding):
    shape = (4, 3, 3)
    layer = SpectralNormConv2DTranspose(2, kernel_size, strides=strides, padding=padding, lipschitz=1.5)
    keras_layer = keras.layers.Conv2DTranspose(2, kernel_size, strides=strides, padding=padding)
    x = np.random.default_rng(0).normal(size=(2, *shape)).astype("float32")
    assert layer(x).shape == keras_layer(x).shape == layer.compute_output_shape((2, *shape))
    layer.converge_power_vector()
    matrix = layer_matrix(layer, shape)
    assert largest_singular_value(matrix) == pytest.approx(1.5, rel=1e-3)
    assert float(layer.operator_norm()) == pytest.approx(1.5, rel=1e-3)
    bound = layer.lipschitz_upper_bound()
    assert largest_singular_value(matrix) * (1 - 1e-9) <= bound <= 1.5 * (1 + 2e-3)
    assert layer.lipschitz_upper_bound("inf") >= np.abs(matrix).sum(axis=1).max() * (1 - 1e-6)


@pytest.mark.parametrize("kernel_size", [1, 3, 5])
@pytest.mark.parametrize("strides,dilation", [(1, 1), (2, 1), (3, 1), (1, 2)])
@pytest.mark.parametrize("padding", ["same", "valid"])
def test_conv1d_converged_norm_equals_lipschitz(kernel_size, strides, dilation, padding):
    shape = (11, 3)
    layer = SpectralNormConv1D(4, kernel_size, strides=strides, dilation_rate=dilation, padding=padding,
                               lipschitz=0.7)
    keras_layer = keras.layers.Conv1D(4, kernel_size, strides=strides, dilation_rate=dilation, padding=padding)
    x = np.random.default_rng(0).normal(size=(2, *shape)).astype("float32")
    assert layer(x).shape == keras_layer(x).shape == layer.compute_output_shape((2, *shape))
    layer.converge_power_vector()
    matrix = layer_matrix(layer, shape)
    assert largest_singular_value(matrix) == pytest.approx(0.7, rel=1e-3)
    assert largest_singular_value(matrix) * (1 - 1e-9) <= layer.lipschitz_upper_bound() <= 0.7 * (1 + 2e-3)
    assert layer.lipschitz_upper_bound("inf") >= np.abs(matrix).sum(axis=1).max() * (1 - 1e-6)


def test_training_calls_converge_the_power_iteration():
    x = np.random.default_rng(1).normal(size=(2, 5, 5, 3)).astype("float32")
    layer = SpectralNormConv2DTranspose(4, 3, strides=2, power_iterations=25)
    step = tf.function(lambda: layer(x, training=True))
    for _ in range(20):
        step()
    assert largest_singular_value(layer_matrix(layer, (5, 5, 3))) == pytest.approx(1.0, rel=1e-3)


def test_matches_keras_layers_with_the_effective_kernel():
    x = np.random.default_rng(2).normal(size=(2, 5, 5, 3)).astype("float32")
    layer = SpectralNormConv2DTranspose(4, 3, strides=2, activation="relu")
    conv = keras.layers.Conv2DTranspose(4, 3, strides=2, padding="same", activation="relu")
    conv.build(x.shape)
    out = layer(x)
    conv.set_weights([layer.effective_kernel().numpy(), layer.bias.numpy()])
    np.testing.assert_allclose(out, conv(x), atol=1e-6)


@pytest.mark.parametrize(
    "make,shape",
    [
        (lambda: SpectralNormConv2DTranspose(3, 3, strides=2, padding="valid", activation="relu"), (5, 5, 2)),
        (lambda: SpectralNormConv1D(3, 3, strides=2, use_bias=False), (9, 2)),
        (lambda: SpectralNormConv1D(3, 3, dilation_rate=2, norm="reshape"), (9, 2)),
    ],
)
def test_export_save_load_graph_modes(make, shape, tmp_path):
    x = np.random.default_rng(3).normal(size=(4, *shape)).astype("float32")
    check_save_load_roundtrip(make, x, tmp_path)
    check_sequential_and_graph_modes(make, x)
    model = keras.Sequential([keras.Input(shape), make()])
    model(x, training=True)
    exported = to_plain_keras(model)
    assert type(exported.layers[0]) in (keras.layers.Conv2DTranspose, keras.layers.Conv1D)
    np.testing.assert_allclose(exported(x), model(x, training=False), atol=1e-6)
    assert lipschitz_upper_bound(exported) == pytest.approx(lipschitz_upper_bound(model), rel=1e-6)


def test_mirrored_and_mixed_precision():
    make_t = lambda: SpectralNormConv2DTranspose(3, 3, strides=2)  # noqa: E731
    make_1 = lambda: SpectralNormConv1D(3, 3, strides=2)  # noqa: E731
    xt = np.random.default_rng(4).normal(size=(4, 4, 4, 2)).astype("float32")
    x1 = np.random.default_rng(4).normal(size=(4, 8, 2)).astype("float32")
    for make, x in ((make_t, xt), (make_1, x1)):
        single, mirrored = check_mirrored_training(make, x)
        np.testing.assert_allclose(single.layers[0].power_vector, mirrored.layers[0].power_vector, atol=1e-5)
        check_mixed_precision(make, x, "mixed_float16", 5e-3)


def test_config_roundtrip_keeps_1d_arguments():
    layer = SpectralNormConv1D(3, (5,), strides=2, input_size=16, lipschitz=2.0)
    config = layer.get_config()
    assert (config["kernel_size"], config["strides"], config["dilation_rate"], config["input_size"]) == (5, 2, 1, 16)
    clone = SpectralNormConv1D.from_config(config)
    assert (clone.kernel_size, clone.strides, clone.input_size) == ((1, 5), (1, 2), (1, 16))
    transpose = SpectralNormConv2DTranspose(3, 3, strides=2).get_config()
    assert "norm" not in transpose and "dilation_rate" not in transpose
    assert SpectralNormConv2DTranspose.from_config(transpose).strides == (2, 2)


def test_bounds_in_networks():
    model = keras.Sequential([keras.Input((4, 4, 2)), SpectralNormConv2DTranspose(3, 3, strides=2, lipschitz=0.5),
                              SpectralNormConv2DTranspose(1, 3, lipschitz=2.0)])
    for layer in model.layers:
        layer.converge_power_vector()
    bound = lipschitz_upper_bound(model)
    assert bound <= 1.0 * (1 + 4e-3)
    assert largest_singular_value(layer_matrix(model, (4, 4, 2))) <= bound * (1 + 1e-9)
    assert layer_lipschitz_bound(model.layers[0]) == pytest.approx(0.5, rel=2e-3)


def test_dynamic_sizes_need_input_size():
    with pytest.raises(ValueError, match="input_size"):
        keras.Sequential([keras.Input((None, 3)), SpectralNormConv1D(2, 3)])
    with pytest.raises(ValueError, match="input_size"):
        keras.Sequential([keras.Input((None, None, 3)), SpectralNormConv2DTranspose(2, 3)])
    model = keras.Sequential([keras.Input((None, 3)), SpectralNormConv1D(2, 3, input_size=8)])
    assert model(np.zeros((1, 8, 3), "float32")).shape == (1, 8, 2)
    model = keras.Sequential([keras.Input((None, None, 3)), SpectralNormConv2DTranspose(2, 3, 2, input_size=4)])
    assert model(np.zeros((1, 4, 4, 3), "float32")).shape == (1, 8, 8, 2)


@pytest.mark.parametrize(
    "kwargs,name",
    [({"filters": 0}, "filters"), ({"kernel_size": 0}, "kernel_size"), ({"strides": (2, 0)}, "strides"),
     ({"padding": "causal"}, "padding"), ({"lipschitz": -1}, "lipschitz"), ({"power_iterations": 0},
                                                                           "power_iterations"),
     ({"data_format": "channels_first"}, "data_format"), ({"input_size": (0, 3)}, "input_size")],
)
def test_transpose_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        SpectralNormConv2DTranspose(**{"filters": 2, "kernel_size": 3, **kwargs})


@pytest.mark.parametrize(
    "kwargs,name",
    [({"filters": 0}, "filters"), ({"kernel_size": (3, 3)}, "kernel_size"), ({"strides": 0}, "strides"),
     ({"padding": "causal"}, "padding"), ({"lipschitz": 0}, "lipschitz"), ({"dilation_rate": 2, "strides": 2},
                                                                          "dilation_rate"),
     ({"input_size": -4}, "input_size"), ({"norm": "frobenius"}, "norm")],
)
def test_conv1d_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        SpectralNormConv1D(**{"filters": 2, "kernel_size": 3, **kwargs})
