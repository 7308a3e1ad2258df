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
from tflip.ops.bjorck import bjorck_orthonormalize, orthonormality_error


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


def _train_and_track_training_error(layer, input_dim, steps=300, every=50, seed=0):
    """Adam (lr 1e-3) on a regression task; the training-mode kernel's max |sigma - 1| every `every` steps."""
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((input_dim,)), layer])
    teacher = tf.random.normal((input_dim, layer.units)) / np.sqrt(input_dim)
    optimizer = keras.optimizers.Adam(1e-3)

    @tf.function
    def step():
        x = tf.random.normal((64, input_dim))
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(x, training=True) - tf.tanh(x @ teacher)))
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        return loss

    errors, losses = [], []
    for i in range(steps + 1):
        if i % every == 0:
            kernel = layer.effective_kernel(training=True).numpy().astype(np.float64)
            errors.append(np.abs(np.linalg.svd(kernel, compute_uv=False) - 1.0).max())
        if i < steps:
            losses.append(float(step()))
    return np.array(errors), losses


@pytest.mark.parametrize("input_dim,units", [(96, 64), (64, 64), (64, 96)])
def test_training_kernel_stays_orthonormal_from_orthogonal_init(input_dim, units):
    errors, losses = _train_and_track_training_error(BjorckDense(units), input_dim)
    assert errors.max() <= 1e-3, errors
    assert np.mean(losses[-20:]) < np.mean(losses[:20])


@pytest.mark.parametrize("initializer", ["glorot_uniform", "random_normal"])
def test_training_kernel_stays_orthonormal_from_random_init(initializer):
    # A random 96 x 48 kernel is far from orthonormal (sigma_max / sigma_min ~ 6 at init): a wider
    # schedule (5 steps designed for [0.1, 1]) than the default one for near-orthonormal kernels.
    layer = BjorckDense(48, kernel_initializer=initializer, training_steps=5, training_lower=0.1)
    errors, _ = _train_and_track_training_error(layer, 96)
    assert errors.max() <= 1e-3, errors


def test_training_gradient_is_the_polar_factor_derivative():
    from tests.ops.test_gram_bjorck import numpy_polar_derivative

    layer = BjorckDense(5, use_bias=False, kernel_initializer="random_normal", training_steps=14, training_lower=1e-3)
    layer.build((None, 7))
    x = tf.random.normal((16, 7))
    weights = tf.random.normal((16, 5))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x, training=True) * weights)
    grad = tape.gradient(loss, layer.kernel).numpy()
    outer = (x.numpy().T @ weights.numpy()).astype(np.float64)  # d loss / d effective kernel
    kernel = layer.kernel.numpy().astype(np.float64)
    direction = np.random.default_rng(0).normal(size=kernel.shape)
    exact = np.sum(numpy_polar_derivative(kernel, direction) * outer)
    assert np.sum(grad * direction) == pytest.approx(exact, rel=1e-3)


def test_polar_express_training_step_compiles_with_xla():
    layer = BjorckDense(16)
    model = keras.Sequential([keras.Input((24,)), layer])
    optimizer = keras.optimizers.Adam(1e-3)
    optimizer.build(model.trainable_variables)
    x = tf.random.normal((8, 24))

    @tf.function(jit_compile=True)
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(x, training=True)))
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        return loss

    assert np.isfinite(float(step())) and np.isfinite(float(step()))
    assert float(orthonormality_error(layer.effective_kernel(training=True))) < 1e-3


def test_training_method_bjorck_and_config():
    old = BjorckDense(8, training_method="bjorck", iterations=2, kernel_initializer="random_normal")
    old.build((None, 8))
    np.testing.assert_allclose(old.effective_kernel(training=True), bjorck_orthonormalize(old.kernel, 2), atol=1e-6)
    config = BjorckDense(8, training_method="BJORCK", training_steps=4, training_lower=0.2).get_config()
    assert (config["training_method"], config["training_steps"], config["training_lower"]) == ("bjorck", 4, 0.2)
    assert BjorckDense.from_config(config).training_steps == 4


@pytest.mark.parametrize(
    "kwargs,name",
    [({"training_method": "svd"}, "training_method"), ({"training_steps": 0}, "training_steps"),
     ({"training_lower": 0.0}, "training_lower"), ({"training_lower": 1.5}, "training_lower"),
     ({"training_lower": "0.3"}, "training_lower")],
)
def test_bad_training_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        BjorckDense(3, **kwargs)
