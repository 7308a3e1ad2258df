"""L2NormPooling2D, InvertibleDownSampling, LayerCentering against numpy, explicit matrices and Jacobians."""

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
from tflip.layers import InvertibleDownSampling, L2NormPooling2D, LayerCentering
from tflip.lipschitz import jacobian_norms, layer_lipschitz_bound
from tflip.ops.reshaping import invertible_downsample, invertible_upsample


def explicit_matrix(layer, shape):
    """Matrix of a linear weightless layer, from basis vectors (float64)."""
    n = int(np.prod(shape))
    basis = np.eye(n).reshape(n, *shape)
    return np.asarray(layer(tf.constant(basis)), np.float64).reshape(n, -1).T


def window_norms_np(x, ph, pw):
    b, h, w, c = x.shape
    h, w = h // ph * ph, w // pw * pw
    windows = x[:, :h, :w].reshape(b, h // ph, ph, w // pw, pw, c)
    return np.sqrt(np.sum(np.asarray(windows, np.float64) ** 2, axis=(2, 4)))


@pytest.mark.parametrize("pool_size,shape", [(2, (3, 8, 8, 2)), ((2, 3), (2, 7, 10, 3)), (1, (2, 3, 3, 1))])
def test_l2_norm_pooling_equals_numpy_window_norms(pool_size, shape, rng):
    x = rng.normal(size=shape).astype("float32")
    layer = L2NormPooling2D(pool_size)
    p = layer.pool_size
    expected = window_norms_np(x, *p)
    out = layer(x)
    assert out.shape == expected.shape == layer.compute_output_shape(shape)
    np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_l2_norm_pooling_extreme_scales_do_not_underflow_or_overflow():
    x = np.array([3e-30, 4e-30, 3e30, 4e30], "float32").reshape(1, 2, 2, 1)
    tiny, large = np.float32(3e-30), np.float32(3e30)
    x = np.stack([np.full((2, 2), tiny), np.full((2, 2), large)], axis=-1)[None]
    np.testing.assert_allclose(L2NormPooling2D(2)(x)[0, 0, 0], [2 * tiny, 2 * large], rtol=1e-6)
    half = tf.constant(np.full((1, 2, 2, 1), 300.0), tf.float16)  # 300^2 overflows float16
    assert float(L2NormPooling2D(2)(half)[0, 0, 0, 0]) == 600.0


def test_l2_norm_pooling_is_gradient_norm_preserving(rng):
    """Jacobian rows are the unit vectors x_w / ||x_w||: every singular value is 1."""
    x = rng.normal(size=(3, 4, 6, 2)).astype("float32")
    layer = L2NormPooling2D(2)
    with tf.GradientTape() as tape:
        xt = tf.constant(x)
        tape.watch(xt)
        y = tf.reshape(layer(xt), (3, -1))
    jacobian = tape.batch_jacobian(y, xt).numpy().reshape(3, 12, -1)
    for j in jacobian:
        np.testing.assert_allclose(np.linalg.svd(j, compute_uv=False), 1.0, atol=1e-5)
    model = keras.Sequential([keras.Input((4, 6, 2)), layer])
    np.testing.assert_allclose(jacobian_norms(model, x), 1.0, atol=1e-5)


def test_l2_norm_pooling_zero_window_gradient_is_zero_not_nan():
    x = np.zeros((1, 4, 4, 1), "float32")
    x[0, 0, 0, 0] = 3.0  # one nonzero window, three zero windows
    xt = tf.constant(x)
    with tf.GradientTape() as outer:
        outer.watch(xt)
        with tf.GradientTape() as inner:
            inner.watch(xt)
            y = tf.reduce_sum(L2NormPooling2D(2)(xt))
        gradient = inner.gradient(y, xt)
        penalty = tf.reduce_sum(tf.square(gradient))
    second = outer.gradient(penalty, xt)
    expected = np.zeros_like(x)
    expected[0, 0, 0, 0] = 1.0
    np.testing.assert_array_equal(gradient.numpy(), expected)
    assert np.all(np.isfinite(second.numpy()))


def test_l2_norm_pooling_bounds():
    layer = L2NormPooling2D((2, 3))
    assert layer_lipschitz_bound(layer) == 1.0 == float(layer.operator_norm())
    # ||x_w||_2 <= sqrt(6) ||x_w||_inf, reached by a constant window.
    assert layer.lipschitz_upper_bound("inf") == pytest.approx(np.sqrt(6))
    assert float(layer(np.ones((1, 2, 3, 1), "float32"))[0, 0, 0, 0]) == pytest.approx(np.sqrt(6))


@pytest.mark.parametrize("pool_size,shape", [(2, (4, 4, 3)), ((1, 3), (2, 6, 2)), ((2, 3), (4, 3, 1))])
def test_invertible_downsampling_is_a_permutation(pool_size, shape):
    layer = InvertibleDownSampling(pool_size)
    matrix = explicit_matrix(layer, shape)
    assert matrix.shape[0] == matrix.shape[1]
    assert set(np.unique(matrix)) == {0.0, 1.0}
    np.testing.assert_array_equal(matrix.sum(axis=0), 1.0)
    np.testing.assert_array_equal(matrix.sum(axis=1), 1.0)
    assert layer.lipschitz_upper_bound() == layer.lipschitz_upper_bound("inf") == 1.0


def test_invertible_downsampling_matches_space_to_depth_and_inverts(rng):
    x = rng.normal(size=(2, 6, 4, 3)).astype("float32")
    np.testing.assert_array_equal(InvertibleDownSampling(2)(x), tf.nn.space_to_depth(x, 2))
    np.testing.assert_array_equal(invertible_upsample(invertible_downsample(x, (3, 2)), (3, 2)), x)
    # Dynamic spatial size inside a graph.
    fn = tf.function(lambda t: invertible_downsample(t, (3, 2)),
                     input_signature=[tf.TensorSpec((None, None, None, 3))])
    np.testing.assert_array_equal(fn(x), invertible_downsample(x, (3, 2)))


def test_invertible_downsampling_rejects_indivisible_sizes():
    with pytest.raises(ValueError, match="pool_size"):
        keras.Sequential([keras.Input((5, 4, 1)), InvertibleDownSampling(2)])


@pytest.mark.parametrize("shape", [(3, 4, 2), (5, 3), (2, 2, 2, 1)])
def test_layer_centering_is_an_orthogonal_projection(shape, rng):
    layer = LayerCentering()
    layer.build((None, *shape))
    matrix = explicit_matrix(layer, shape)
    values = np.linalg.svd(matrix, compute_uv=False)
    channels = shape[-1]
    np.testing.assert_allclose(values[: -channels], 1.0, atol=1e-6)  # float32 layer
    np.testing.assert_allclose(values[-channels:], 0.0, atol=1e-6)  # float32 layer
    np.testing.assert_allclose(matrix @ matrix, matrix, atol=1e-6)  # float32 layer
    np.testing.assert_allclose(matrix, matrix.T, atol=1e-6)  # float32 layer
    assert layer.lipschitz_upper_bound() == 1.0
    # L-infinity: the largest row sum of |I - 11^T / n|.
    assert layer.lipschitz_upper_bound("inf") == pytest.approx(np.abs(matrix).sum(axis=1).max())
    x = rng.normal(size=(2, *shape)).astype("float32")
    np.testing.assert_allclose(np.asarray(layer(x)).mean(axis=tuple(range(1, len(shape)))), 0.0, atol=1e-6)


def test_layer_centering_bias_and_bad_rank():
    layer = LayerCentering(use_bias=True, bias_initializer="ones")
    np.testing.assert_allclose(layer(np.full((1, 3, 3, 2), 5.0, "float32")), 1.0)
    with pytest.raises(ValueError):
        keras.Sequential([keras.Input((4,)), LayerCentering()])


@pytest.mark.parametrize("cls,name", [(L2NormPooling2D, "pool_size"), (InvertibleDownSampling, "pool_size")])
@pytest.mark.parametrize("value", [0, (2, 0), "2", (1, 2, 3)])
def test_bad_pool_size(cls, name, value):
    with pytest.raises(ValueError, match=name):
        cls(value)


MAKERS = {
    "pool": lambda: L2NormPooling2D(2),
    "downsample": lambda: InvertibleDownSampling(2),
    "center": lambda: LayerCentering(use_bias=True),
}


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_shared_checks(name, tmp_path):
    x = np.random.default_rng(1).normal(size=(4, 4, 4, 2)).astype("float32")
    make = MAKERS[name]
    check_save_load_roundtrip(make, x, tmp_path)
    check_sequential_and_graph_modes(make, x)
    check_mirrored_training(make, x)
    check_mixed_precision(make, x, "mixed_float16", 2e-3)
