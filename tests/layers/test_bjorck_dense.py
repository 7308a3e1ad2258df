"""BjorckDense: every singular value equals the gain; gradient norms are preserved."""

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
from tflip.layers import BjorckDense


@pytest.mark.parametrize("input_dim,units", [(48, 16), (32, 32), (16, 48)])
def test_singular_values_equal_lipschitz_after_training(input_dim, units):
    layer = BjorckDense(units, lipschitz=2.5)
    model = keras.Sequential([keras.Input((input_dim,)), layer])
    model.compile(keras.optimizers.Adam(0.05), "mse")
    x = np.random.rand(64, input_dim).astype("float32")
    model.fit(x, np.random.rand(64, units).astype("float32"), epochs=5, verbose=0)
    values = np.linalg.svd(layer.effective_kernel().numpy().astype(np.float64), compute_uv=False)
    np.testing.assert_allclose(values, 2.5, atol=1e-4 * 2.5)
    assert float(layer.orthonormality_error()) < 1e-4
    assert layer.lipschitz_upper_bound() == pytest.approx(2.5, rel=1e-4)


def test_gradient_norm_of_bjorck_groupsort_network_is_product_of_gains():
    from tflip.layers import GroupSort

    model = keras.Sequential(
        [keras.Input((16,)), BjorckDense(16, lipschitz=2.0), GroupSort(2), BjorckDense(8, lipschitz=0.5),
         GroupSort(4), BjorckDense(1, lipschitz=3.0)]
    )
    x = tf.random.normal((32, 16))
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = model(x)
    norms = tf.norm(tape.gradient(y, x), axis=1).numpy()
    # Widths never grow, so every backward map is an isometry times its gain:
    # ||grad|| = 2 * 0.5 * 3 for almost every x.
    np.testing.assert_allclose(norms, 3.0, rtol=1e-4)


def test_training_uses_fewer_iterations_than_inference():
    layer = BjorckDense(8, iterations=1, inference_iterations=30, kernel_initializer="random_normal")
    layer.build((None, 8))
    train_error = float(layer.orthonormality_error(iterations=1))
    assert train_error > float(layer.orthonormality_error()) + 1e-3


def make_layer():
    return BjorckDense(4, lipschitz=1.0)


def test_save_load(tmp_path):
    check_save_load_roundtrip(make_layer, np.random.rand(4, 6).astype("float32"), tmp_path)


def test_graph_modes_and_mirrored():
    x = np.random.rand(4, 6).astype("float32")
    check_sequential_and_graph_modes(make_layer, x)
    check_mirrored_training(make_layer, x)


@pytest.mark.parametrize("policy,tolerance", [("mixed_float16", 5e-3), ("mixed_bfloat16", 3e-2)])
def test_mixed_precision(policy, tolerance):
    check_mixed_precision(make_layer, np.random.rand(4, 6).astype("float32"), policy, tolerance)


@pytest.mark.parametrize(
    "kwargs,name",
    [({"units": 0}, "units"), ({"lipschitz": 0.0}, "lipschitz"), ({"iterations": 0}, "iterations"),
     ({"inference_iterations": 0}, "inference_iterations"), ({"order": 0}, "order"), ({"lipschitz": "1"}, "lipschitz")],
)
def test_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        BjorckDense(**{"units": 3, **kwargs})
