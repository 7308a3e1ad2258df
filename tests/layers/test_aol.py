"""AOLDense / AOLConv2D: explicit matrices of the layers' maps, numpy references, shared layer checks."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.aol_sll_reference import aol_kernel_np, aol_scale_np
from tests.layer_checks import (
    check_mirrored_training,
    check_mixed_precision,
    check_save_load_roundtrip,
    check_sequential_and_graph_modes,
)
from tflip.layers import AOLConv2D, AOLDense
from tflip.ops.conv import ConvGeometry, conv_matrix

NORMAL = keras.initializers.RandomNormal(stddev=1.0)


def layer_matrix(layer, input_shape):
    """The explicit matrix of the layer's inference map: the layer applied to basis vectors, minus its bias."""
    n = int(np.prod(input_shape))
    basis = np.eye(n, dtype="float32").reshape((n, *input_shape))
    out = np.asarray(layer(basis, training=False), np.float64) - np.asarray(layer(np.zeros_like(basis[:1])))
    return out.reshape(n, -1).T


def spectral_norm(matrix):
    return np.linalg.svd(matrix, compute_uv=False)[0]


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("units,input_dim", [(6, 6), (3, 10), (12, 4)])
def test_dense_map_norm_and_scaling(seed, units, input_dim):
    keras.utils.set_random_seed(seed)
    layer = AOLDense(units, lipschitz=1.5, kernel_initializer=NORMAL, bias_initializer=NORMAL)
    layer.build((None, input_dim))
    matrix = layer_matrix(layer, (input_dim,))
    sigma = spectral_norm(matrix)
    assert sigma <= 1.5 + 1e-5
    # D from the explicit |P^T P| with P = W^T (numpy): the effective kernel is 1.5 D W.
    p = np.asarray(layer.kernel, np.float64).T
    d = 1.0 / np.sqrt(np.abs(p.T @ p).sum(axis=1))
    np.testing.assert_allclose(matrix, 1.5 * (d[:, None] * p.T).T, atol=1e-5)
    assert layer.lipschitz_upper_bound() == pytest.approx(sigma, rel=1e-5)
    assert float(layer.operator_norm()) == pytest.approx(sigma, rel=1e-5)


def test_dense_orthogonal_init_is_orthogonal():
    layer = AOLDense(8)
    layer.build((None, 8))
    np.testing.assert_allclose(np.linalg.svd(layer_matrix(layer, (8,)), compute_uv=False), 1.0, atol=1e-5)


CONV_CASES = [
    # (kernel_size, c_in, filters, strides, size)
    (3, 2, 3, 1, 6),
    (3, 3, 2, 2, 7),
    (2, 2, 2, 1, 5),
    (5, 1, 4, 2, 8),
    ((1, 3), 3, 3, 1, 5),
]


@pytest.mark.parametrize("padding", ["same", "valid"])
@pytest.mark.parametrize("kernel_size,c_in,filters,strides,size", CONV_CASES)
def test_conv_map_norm_at_most_lipschitz(kernel_size, c_in, filters, strides, size, padding):
    for seed in range(2):
        keras.utils.set_random_seed(seed)
        layer = AOLConv2D(filters, kernel_size, strides=strides, padding=padding, lipschitz=0.8,
                          kernel_initializer=NORMAL, bias_initializer=NORMAL)
        layer.build((None, size, size, c_in))
        matrix = layer_matrix(layer, (size, size, c_in))
        np.testing.assert_allclose(matrix, conv_matrix(layer.inference_kernel(), layer.geometry), atol=1e-6)
        sigma = spectral_norm(matrix)
        assert sigma <= 0.8 + 1e-5
        bound = layer.lipschitz_upper_bound()
        assert sigma * (1 - 1e-6) <= bound <= 0.8 + 1e-5
        assert float(layer.operator_norm()) == pytest.approx(0.8, rel=1e-5)


@pytest.mark.parametrize("kernel_size", [3, (2, 3)])
def test_conv_scaling_equals_numpy_autocorrelation(kernel_size):
    keras.utils.set_random_seed(4)
    layer = AOLConv2D(5, kernel_size, lipschitz=2.0, kernel_initializer=NORMAL)
    layer.build((None, 6, 6, 3))
    raw = np.asarray(layer.kernel, np.float64)
    np.testing.assert_allclose(layer.inference_kernel(), aol_kernel_np(raw, 2.0), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(layer.effective_kernel(training=True) / (raw * 2.0),
                               np.broadcast_to(aol_scale_np(raw)[None, None, :, None], raw.shape), rtol=1e-5)


def test_bound_holds_on_any_input_size():
    """The same layer on larger and smaller inputs than at build: still at most lipschitz."""
    keras.utils.set_random_seed(5)
    layer = AOLConv2D(3, 3, strides=2, kernel_initializer=NORMAL)
    layer.build((None, 6, 6, 2))
    for size in (3, 9, 10):
        assert spectral_norm(layer_matrix(layer, (size, size, 2))) <= 1.0 + 1e-5


def test_dynamic_input_size():
    layer = AOLConv2D(4, 3, kernel_initializer=NORMAL)
    model = keras.Sequential([keras.Input((None, None, 2)), layer])
    assert model(np.ones((1, 7, 5, 2), "float32")).shape == (1, 7, 5, 4)
    assert layer.input_size is None and not hasattr(layer, "geometry")
    assert layer.lipschitz_upper_bound() == pytest.approx(1.0, rel=1e-5)  # the AOL bound, any size
    assert spectral_norm(layer_matrix(layer, (6, 6, 2))) <= layer.lipschitz_upper_bound()


def train_a_few_steps(model, x, y, steps=20):
    """Adam steps on an MSE regression; checks that the loss fell (the layer learned) and returns nothing."""
    model.compile(keras.optimizers.Adam(0.02), "mse")
    before = model.evaluate(x, y, verbose=0)
    model.fit(x, y, batch_size=len(x), epochs=steps, verbose=0)
    assert model.evaluate(x, y, verbose=0) < 0.5 * before


def test_not_vacuous_after_training():
    """Fitting a norm-1 target map pushes the layers' largest singular value near 1 (>= 0.3)."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal((32, 6, 6, 3)).astype("float32")
    target = rng.standard_normal((3, 3, 3, 3))
    target /= np.linalg.norm(conv_matrix(target, ConvGeometry((6, 6))), 2)
    y = np.asarray(tf.nn.conv2d(x, target.astype("float32"), 1, "SAME"))
    conv = AOLConv2D(3, 3, kernel_initializer="glorot_uniform")
    model = keras.Sequential([keras.Input((6, 6, 3)), conv])
    train_a_few_steps(model, x, y)
    sigma = spectral_norm(layer_matrix(conv, (6, 6, 3)))
    assert 0.3 <= sigma <= 1.0 + 1e-5

    xd = rng.standard_normal((64, 8)).astype("float32")
    dense = AOLDense(8, kernel_initializer="glorot_uniform")
    model = keras.Sequential([keras.Input((8,)), dense])
    train_a_few_steps(model, xd, xd @ np.linalg.qr(rng.standard_normal((8, 8)))[0].astype("float32"))
    sigma = spectral_norm(layer_matrix(dense, (8,)))
    assert 0.3 <= sigma <= 1.0 + 1e-5


def test_training_is_differentiable_and_leaves_the_variable_alone():
    layer = AOLConv2D(4, 3)
    x = tf.random.normal((2, 6, 6, 3))
    layer(x)
    before = layer.kernel.numpy().copy()
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x, training=True) ** 2)
    grad = tape.gradient(loss, layer.kernel)
    np.testing.assert_array_equal(layer.kernel.numpy(), before)
    # D W is invariant to scaling W, so the gradient is orthogonal to W.
    assert abs(float(tf.reduce_sum(grad * layer.kernel))) < 1e-4 * float(tf.norm(grad) * tf.norm(layer.kernel))


def test_plain_keras_layers_compute_the_same_map():
    x = np.random.default_rng(7).standard_normal((3, 7, 7, 2)).astype("float32")
    conv = AOLConv2D(3, 3, strides=2, padding="valid", activation="relu", kernel_initializer=NORMAL)
    expected = np.asarray(conv(x))
    plain = conv.plain_keras_layer()
    assert type(plain) is keras.layers.Conv2D
    np.testing.assert_allclose(plain(x), expected, atol=1e-6)
    dense = AOLDense(4, use_bias=False)
    xd = x.reshape(3, -1)[:, :5]
    expected = np.asarray(dense(xd))
    plain = dense.plain_keras_layer()
    assert type(plain) is keras.layers.Dense
    np.testing.assert_allclose(plain(xd), expected, atol=1e-6)


CHECK_LAYERS = {
    "dense": (lambda: AOLDense(5, lipschitz=0.7, activation="relu"), (4, 6)),
    "conv": (lambda: AOLConv2D(3, 3, strides=2, lipschitz=1.2, kernel_initializer="glorot_uniform"), (4, 6, 6, 2)),
}


@pytest.fixture(params=sorted(CHECK_LAYERS))
def case(request):
    make_layer, shape = CHECK_LAYERS[request.param]
    return make_layer, np.random.default_rng(8).standard_normal(shape).astype("float32")


def test_save_load(case, tmp_path):
    check_save_load_roundtrip(*case, tmp_path)


def test_sequential_functional_graph_xla(case):
    check_sequential_and_graph_modes(*case)


def test_mirrored_training(case):
    check_mirrored_training(*case)


def test_mixed_precision(case):
    check_mixed_precision(*case, "mixed_float16", rtol=2e-2)
    check_mixed_precision(*case, "mixed_bfloat16", rtol=5e-2)


@pytest.mark.parametrize(
    "make,name",
    [
        (lambda: AOLDense(0), "units"),
        (lambda: AOLDense(3, lipschitz=-1.0), "lipschitz"),
        (lambda: AOLConv2D(0, 3), "filters"),
        (lambda: AOLConv2D(2, 0), "kernel_size"),
        (lambda: AOLConv2D(2, 3, strides=(1, 0)), "strides"),
        (lambda: AOLConv2D(2, 3, padding="circular"), "padding"),
        (lambda: AOLConv2D(2, 3, lipschitz=0), "lipschitz"),
        (lambda: AOLConv2D(2, 3, input_size=(0, 4)), "input_size"),
        (lambda: AOLConv2D(2, 3, data_format="channels_first"), "data_format"),
    ],
)
def test_bad_arguments(make, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        make()


def test_valid_padding_larger_kernel_than_input():
    with pytest.raises(ValueError, match="`input_size`"):
        AOLConv2D(2, 5, padding="valid").build((None, 3, 3, 1))
