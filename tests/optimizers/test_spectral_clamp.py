"""SpectralGradientClamp: clamped updates against numpy's SVD, distribution, saving."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tflip
from tests.callbacks.events import last, read_events
from tests.layer_checks import mirrored_strategy
from tests.models.helpers import toy_gan
from tflip.optimizers import SpectralGradientClamp


def numpy_clamp(g, ratio):
    u, s, vt = np.linalg.svd(g, full_matrices=False)
    return g - max(0.0, s[0] - ratio * s[1]) * np.outer(u[:, 0], vt[0])


def dominant_gradient(rng, shape, boost=8.0):
    g = rng.normal(size=shape)
    u, s, vt = np.linalg.svd(g, full_matrices=False)
    s[0] *= boost
    return (u * s) @ vt


def applied_update(gradients, variables, ratio, iterations=30):
    """Applies one SGD(1) step through the clamp; returns the updates and the optimizer."""
    variables = [tf.Variable(np.zeros(g.shape, "float32")) for g in gradients] if variables is None else variables
    optimizer = SpectralGradientClamp(keras.optimizers.SGD(1.0), ratio=ratio, iterations=iterations)
    optimizer.apply([tf.constant(g, tf.float32) for g in gradients], variables)
    return [-np.asarray(v) for v in variables], optimizer


@pytest.mark.parametrize("shape", [(12, 7), (7, 12)])
def test_dense_gradient_is_clamped_as_numpy_svd_says(rng, shape):
    g = dominant_gradient(rng, shape)
    (update,), optimizer = applied_update([g], None, ratio=2.0)
    np.testing.assert_allclose(update, numpy_clamp(g, 2.0), atol=1e-5)
    s = np.linalg.svd(update, compute_uv=False)
    assert s[0] <= 2.0 * s[1] * (1 + 1e-5)
    assert optimizer.diagnostics()["clamp_fraction"] == 1.0
    original = np.linalg.svd(g, compute_uv=False)
    np.testing.assert_allclose(optimizer.diagnostics()["sigma_ratio_max"], original[0] / original[1], rtol=1e-4)


def test_identity_when_the_ratio_already_holds(rng):
    g = rng.normal(size=(10, 10))
    s = np.linalg.svd(g, compute_uv=False)
    (update,), optimizer = applied_update([g], None, ratio=1.01 * s[0] / s[1])
    np.testing.assert_allclose(update, g, atol=1e-6)
    assert optimizer.diagnostics()["clamp_fraction"] == 0.0
    assert optimizer.diagnostics()["clamp_count"] == 0


def test_conv_kernels_are_clamped_as_out_by_rest_matrices_and_biases_pass(rng):
    kernel_grad = rng.normal(size=(3, 3, 4, 5))
    kernel_grad[..., 0] *= 10.0  # one output channel dominates: a strong top direction
    bias_grad = rng.normal(size=(5,))
    (kernel_update, bias_update), _ = applied_update([kernel_grad, bias_grad], None, ratio=1.5)
    matrix = kernel_grad.reshape(-1, 5).T
    expected = numpy_clamp(matrix, 1.5).T.reshape(kernel_grad.shape)
    np.testing.assert_allclose(kernel_update, expected, atol=1e-5)
    np.testing.assert_array_equal(bias_update, bias_grad.astype("float32"))


def test_random_gradients_satisfy_the_bound(rng):
    for _ in range(5):
        g = dominant_gradient(rng, (20, 16), boost=rng.uniform(1.0, 20.0))
        ratio = rng.uniform(1.1, 3.0)
        (update,), _ = applied_update([g], None, ratio=ratio)
        s = np.linalg.svd(update, compute_uv=False)
        assert s[0] <= ratio * s[1] * (1 + 1e-4) + 1e-6


def test_running_estimates_converge_with_one_iteration_per_update(rng):
    """Warm starts: a repeated gradient is clamped exactly after a few updates at 1 step each."""
    g = dominant_gradient(rng, (16, 16), boost=3.0)
    variable = tf.Variable(np.zeros(g.shape, "float32"))
    optimizer = SpectralGradientClamp(keras.optimizers.SGD(1.0), ratio=1.5, iterations=1)
    for _ in range(30):
        before = np.asarray(variable)
        optimizer.apply([tf.constant(g, tf.float32)], [variable])
    np.testing.assert_allclose(before - np.asarray(variable), numpy_clamp(g, 1.5), atol=1e-4)


def linear_regression_fit(strategy, clamp=True):
    keras.utils.set_random_seed(0)  # same initial weights in every call
    rng = np.random.default_rng(1)
    x = rng.normal(size=(64, 6)).astype("float32")
    y = rng.normal(size=(64, 4)).astype("float32")
    with strategy.scope():
        model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, "relu", kernel_initializer="orthogonal"),
                                  keras.layers.Dense(4, kernel_initializer="orthogonal")])
        optimizer = keras.optimizers.SGD(0.1)
        model.compile(SpectralGradientClamp(optimizer, ratio=1.2, iterations=20) if clamp else optimizer, "mse")
    model.fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0)
    return model


def test_mirrored_strategy_clamps_the_summed_gradient():
    """Per-replica clamping would differ from one device; clamping the all-reduced gradient does not."""
    single = linear_regression_fit(tf.distribute.get_strategy())
    mirrored = linear_regression_fit(mirrored_strategy())
    unclamped = linear_regression_fit(tf.distribute.get_strategy(), clamp=False)
    for a, b in zip(single.weights, mirrored.weights):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)
    assert single.optimizer.diagnostics()["clamp_count"] > 0
    assert single.optimizer.diagnostics() == pytest.approx(mirrored.optimizer.diagnostics(), rel=1e-4)
    # The clamp changed training (the comparison above is not between two no-ops).
    assert max(np.abs(np.asarray(a) - np.asarray(b)).max() for a, b in zip(single.weights, unclamped.weights)) > 1e-3


def test_state_is_saved_and_restored(tmp_path):
    model = linear_regression_fit(tf.distribute.get_strategy())
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    assert isinstance(loaded.optimizer, SpectralGradientClamp)
    assert loaded.optimizer.ratio == 1.2 and loaded.optimizer.iterations_per_update == 20
    for a, b in zip(model.optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert loaded.optimizer.diagnostics() == model.optimizer.diagnostics()


def test_wgan_clamps_each_optimizer_and_the_logger_reports_it(tmp_path):
    gan = toy_gan("lp")
    gan.compile(critic_optimizer=SpectralGradientClamp(keras.optimizers.Adam(1e-3), ratio=15.0),
                generator_optimizer=SpectralGradientClamp(keras.optimizers.Adam(1e-3), ratio=1.5))
    gan.fit(tflip.datasets.eight_gaussians(256, seed=0), batch_size=64, epochs=1, verbose=0,
            callbacks=[tflip.callbacks.SpectrumLogger(tmp_path, strict=True)])
    events = read_events(tmp_path)
    for name in ("critic_optimizer", "generator_optimizer"):
        diagnostics = getattr(gan, name).diagnostics()
        np.testing.assert_allclose(last(events, f"{name}/sigma_ratio_max"), diagnostics["sigma_ratio_max"], rtol=1e-6)
        np.testing.assert_allclose(last(events, f"{name}/clamp_count"), diagnostics["clamp_count"])
    # Generator updates have sigma_0 / sigma_1 above 1.5 (Sargent: r = 1.05 collapsed training).
    assert gan.generator_optimizer.diagnostics()["clamp_count"] > 0
    gan.save(tmp_path / "gan.keras")
    loaded = keras.models.load_model(tmp_path / "gan.keras")
    assert isinstance(loaded.generator_optimizer, SpectralGradientClamp)
    assert loaded.generator_optimizer.ratio == 1.5


def test_mixed_precision_wraps_the_clamp_for_loss_scaling(rng):
    keras.mixed_precision.set_global_policy("mixed_float16")
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8), keras.layers.Dense(1, dtype="float32")])
    model.compile(SpectralGradientClamp(keras.optimizers.SGD(0.01), ratio=1.5), "mse")
    model.fit(rng.normal(size=(32, 6)), rng.normal(size=(32, 1)), epochs=1, verbose=0)
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert model.optimizer.inner_optimizer.diagnostics()["clamp_count"] > 0
    assert all(np.all(np.isfinite(np.asarray(w))) for w in model.weights)


@pytest.mark.parametrize("kwargs, name", [
    ({"ratio": 1.0}, "ratio"),
    ({"ratio": -2}, "ratio"),
    ({"iterations": 0}, "iterations"),
    ({"inner_optimizer": "adam"}, "inner_optimizer"),
    ({"clipnorm": 1.0}, "inner_optimizer"),
])
def test_bad_arguments(kwargs, name):
    kwargs = {"inner_optimizer": keras.optimizers.SGD(), **kwargs}
    with pytest.raises(ValueError, match=name):
        SpectralGradientClamp(**kwargs)
