"""SpectralNormConv2D / SpectralNormDense: converged norms against the SVD of explicit matrices."""

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
from tflip.layers import SpectralNormConv2D, SpectralNormDense
from tflip.ops.conv import conv_matrix


def converge(layer, x, calls=20):
    """Runs training-mode calls (each `power_iterations` steps) inside one graph."""
    step = tf.function(lambda: layer(x, training=True))
    for _ in range(calls):
        step()


def exact_conv_norm(layer):
    return np.linalg.norm(conv_matrix(layer.effective_kernel(), layer.geometry), 2)


# Kernel sizes 1 and 5 run with -m slow (the exactness is the same machinery at every size).
@pytest.mark.parametrize(
    "kernel_size", [pytest.param(1, marks=pytest.mark.slow), 3, pytest.param(5, marks=pytest.mark.slow)]
)
@pytest.mark.parametrize("strides", [1, 2])
@pytest.mark.parametrize("padding", ["same", "valid"])
@pytest.mark.parametrize("c_in,filters", [(3, 4), (2, 60)])  # filters below / above k^2 * c_in
def test_converged_toeplitz_norm_equals_lipschitz(kernel_size, strides, padding, c_in, filters):
    x = tf.random.normal((2, 9, 9, c_in))
    layer = SpectralNormConv2D(
        filters, kernel_size, strides=strides, padding=padding, lipschitz=1.5, power_iterations=25
    )
    converge(layer, x)
    assert exact_conv_norm(layer) == pytest.approx(1.5, rel=1e-3)
    # Inference does not move the state and gives the same normalization.
    state = layer.power_vector.numpy().copy()
    layer(x, training=False)
    np.testing.assert_array_equal(layer.power_vector.numpy(), state)
    assert float(layer.operator_norm()) == pytest.approx(1.5, rel=1e-3)
    assert layer.lipschitz_upper_bound() >= exact_conv_norm(layer) * (1 - 1e-9)


def test_dilated_conv_norm():
    x = tf.random.normal((2, 10, 10, 2))
    layer = SpectralNormConv2D(3, 3, dilation_rate=2, power_iterations=25)
    converge(layer, x)
    assert exact_conv_norm(layer) == pytest.approx(1.0, rel=1e-3)


def test_reshape_norm_exceeds_lipschitz():
    """Miyato's reshaped-kernel normalization leaves the true operator norm well above k."""
    x = tf.random.normal((2, 8, 8, 3))
    layer = SpectralNormConv2D(8, 3, norm="reshape", power_iterations=25)
    converge(layer, x)
    assert float(layer.operator_norm()) == pytest.approx(1.0, rel=1e-3)
    assert exact_conv_norm(layer) > 1.3
    assert layer.lipschitz_upper_bound() >= exact_conv_norm(layer)


def test_forward_is_differentiable_and_leaves_variable_alone():
    x = tf.random.normal((2, 8, 8, 3))
    layer = SpectralNormConv2D(4, 3)
    layer(x)
    before = layer.kernel.numpy().copy()
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x, training=True) ** 2)
    grad = tape.gradient(loss, layer.kernel)
    np.testing.assert_array_equal(layer.kernel.numpy(), before)
    # Scaling the kernel does not change a normalized layer: the gradient is
    # orthogonal to the kernel (it flows through sigma too).
    assert abs(float(tf.reduce_sum(grad * layer.kernel))) < 1e-3 * float(tf.norm(grad) * tf.norm(layer.kernel))


def test_matches_keras_conv_with_effective_kernel():
    x = tf.random.normal((2, 8, 8, 3))
    layer = SpectralNormConv2D(4, 3, strides=2, activation="relu")
    out = layer(x)
    conv = keras.layers.Conv2D(4, 3, strides=2, padding="same", activation="relu")
    conv.build(x.shape)
    conv.set_weights([layer.effective_kernel().numpy(), layer.bias.numpy()])
    np.testing.assert_allclose(out, conv(x), atol=1e-6)


def test_dense_converged_norm():
    layer = SpectralNormDense(7, lipschitz=2.0, power_iterations=20)
    x = tf.random.normal((4, 12))
    converge(layer, x, calls=5)
    assert np.linalg.norm(layer.effective_kernel().numpy(), 2) == pytest.approx(2.0, rel=1e-4)
    assert layer.lipschitz_upper_bound() == pytest.approx(2.0, rel=1e-4)
    assert layer.lipschitz_upper_bound("inf") >= 0


def make_conv():
    return SpectralNormConv2D(3, 3, strides=2, lipschitz=1.0, activation="relu")


def test_conv_save_load(tmp_path):
    check_save_load_roundtrip(make_conv, np.random.rand(2, 8, 8, 2).astype("float32"), tmp_path)


def test_dense_save_load(tmp_path):
    check_save_load_roundtrip(lambda: SpectralNormDense(3), np.random.rand(4, 5).astype("float32"), tmp_path)


def test_graph_modes():
    check_sequential_and_graph_modes(make_conv, np.random.rand(2, 8, 8, 2).astype("float32"))
    check_sequential_and_graph_modes(lambda: SpectralNormDense(3), np.random.rand(4, 5).astype("float32"))


def test_mirrored():
    single, mirrored = check_mirrored_training(make_conv, np.random.rand(4, 8, 8, 2).astype("float32"))
    np.testing.assert_allclose(single.layers[0].power_vector, mirrored.layers[0].power_vector, atol=1e-5)
    check_mirrored_training(lambda: SpectralNormDense(3), np.random.rand(4, 5).astype("float32"))


@pytest.mark.parametrize("policy,tolerance", [("mixed_float16", 5e-3), ("mixed_bfloat16", 3e-2)])
def test_mixed_precision(policy, tolerance):
    check_mixed_precision(make_conv, np.random.rand(2, 8, 8, 2).astype("float32"), policy, tolerance)
    check_mixed_precision(lambda: SpectralNormDense(3), np.random.rand(4, 5).astype("float32"), policy, tolerance)


def test_dynamic_spatial_size_needs_input_size():
    with pytest.raises(ValueError, match="input_size"):
        keras.Sequential([keras.Input((None, None, 3)), SpectralNormConv2D(2, 3)])
    model = keras.Sequential([keras.Input((None, None, 3)), SpectralNormConv2D(2, 3, input_size=(8, 8))])
    assert model(np.zeros((1, 8, 8, 3), "float32")).shape == (1, 8, 8, 2)


@pytest.mark.parametrize(
    "kwargs,name",
    [
        ({"lipschitz": 0}, "lipschitz"),
        ({"lipschitz": -1.0}, "lipschitz"),
        ({"padding": "causal"}, "padding"),
        ({"norm": "frobenius"}, "norm"),
        ({"power_iterations": 0}, "power_iterations"),
        ({"kernel_size": 0}, "kernel_size"),
        ({"strides": (1, 0)}, "strides"),
        ({"filters": 0}, "filters"),
        ({"dilation_rate": 2, "strides": 2}, "dilation_rate"),
        ({"data_format": "channels_first"}, "data_format"),
    ],
)
def test_conv_bad_arguments(kwargs, name):
    arguments = {"filters": 2, "kernel_size": 3, **kwargs}
    with pytest.raises(ValueError, match=name):
        SpectralNormConv2D(**arguments)


@pytest.mark.parametrize("kwargs,name", [({"units": 0}, "units"), ({"lipschitz": 0}, "lipschitz"),
                                         ({"power_iterations": -1}, "power_iterations")])
def test_dense_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        SpectralNormDense(**{"units": 2, **kwargs})
