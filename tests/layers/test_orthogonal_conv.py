"""OrthogonalConv2D: the explicit matrix of the layer's map (basis vectors through the layer, minus the bias) and
its SVD, before and after training; a numpy reference of the BCOP map from the raw weights; protocol, checks."""

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
from tflip.layers import OrthogonalConv2D
from tflip.lipschitz import lipschitz_upper_bound


def layer_matrix(layer, size, c_in, training=False):
    """Explicit matrix of the layer's linear map: the layer applied to every basis vector, minus its bias."""
    n = size[0] * size[1] * c_in
    basis = np.eye(n, dtype="float32").reshape(n, *size, c_in)
    out = np.asarray(layer(basis, training=training), np.float64)
    if layer.use_bias:
        out = out - np.asarray(layer.bias, np.float64)
    return out.reshape(n, -1).T


def exact_matrix(layer, size, c_in):
    """The matrix of the layer's map with its inference kernel, convolved in float64 (no rounding on basis vectors).

    Certified bounds are about this map; the float32 layer can differ from it
    by rounding (e.g. Winograd convolutions), about 1e-7 here.
    """
    n = size[0] * size[1] * c_in
    basis = tf.reshape(tf.eye(n, dtype=tf.float64), (n, *size, c_in))
    out = layer.convolve(basis, tf.cast(layer.inference_kernel(), tf.float64))
    return tf.reshape(out, (n, -1)).numpy().T


def singular_values(layer, size, c_in, training=False):
    return np.linalg.svd(layer_matrix(layer, size, c_in, training), compute_uv=False)


def polar_np(matrix):
    u, _, vt = np.linalg.svd(np.asarray(matrix, np.float64), full_matrices=False)
    return u @ vt


def orthogonal_conv_reference(layer, x):
    """The BCOP map applied step by step in numpy (float64), from the layer's raw weights.

    Independent of the layer's kernel composition: invertible downsampling of
    the circularly shifted image, the 1x1 matrix M (polar factor by SVD), then
    each block convolution y[i] = z[i] P + z[i + 1] (I - P) along the height
    and the width (periodic), with M last for a co-isometry; circular padding.
    """
    x = np.asarray(x, np.float64)
    kh, kw = layer.kernel_size
    sh, sw = layer.strides
    channel = polar_np(layer.kernel)
    frames = [] if layer.projector_frames is None else [polar_np(f) for f in np.asarray(layer.projector_frames)]
    projectors = [q @ q.T for q in frames]
    # The window of output (i, j) starts at input (s i - top, s j - left), as for "SAME" padding.
    top, left = (sh * (kh - 1)) // 2, (sw * (kw - 1)) // 2
    z = np.roll(x, (top, left), axis=(1, 2))
    b, h, w, c = z.shape
    z = z.reshape(b, h // sh, sh, w // sw, sw, c).transpose(0, 1, 3, 2, 4, 5).reshape(b, h // sh, w // sw, -1)
    isometry = channel.shape[0] <= channel.shape[1]
    if isometry:
        z = z @ channel
    for j, p in enumerate(projectors):
        axis = 1 if j < kh - 1 else 2
        z = z @ p + np.roll(z, -1, axis=axis) @ (np.eye(len(p)) - p)
    if not isometry:
        z = z @ channel
    out = layer.lipschitz * z
    return out + np.asarray(layer.bias) if layer.use_bias else out


def adam_steps(layer, x, steps=6, learning_rate=0.05, seed=0):
    """A few Adam steps regressing the layer's training-mode output on a random target; returns the losses."""
    target = tf.random.stateless_normal(layer.compute_output_shape(x.shape), (seed, 1))
    optimizer = keras.optimizers.Adam(learning_rate)
    losses = []
    for _ in range(steps):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(layer(x, training=True) - target))
        optimizer.apply_gradients(zip(tape.gradient(loss, layer.trainable_variables), layer.trainable_variables))
        losses.append(float(loss))
    return losses


CIRCULAR_CASES = [
    (k, s, c_in, filters)
    for k in (1, 2, 3, 5)
    for s in (1, 2)
    for c_in, filters in ((2, 2 * s * s), (2, 2 * s * s + 3))  # orthogonal (in == out) and isometry (out > in)
]


@pytest.mark.parametrize("kernel_size, strides, c_in, filters", CIRCULAR_CASES)
def test_every_singular_value_equals_lipschitz_at_init_and_after_training(kernel_size, strides, c_in, filters):
    size = (6, 6) if strides == 1 else (8, 8)
    layer = OrthogonalConv2D(filters, kernel_size, strides=strides, lipschitz=1.5)
    x = tf.random.stateless_normal((4, *size, c_in), (0, 0))
    layer.build(x.shape)
    outputs = size[0] * size[1] * filters // strides**2
    values = singular_values(layer, size, c_in)
    assert len(values) == min(outputs, size[0] * size[1] * c_in)
    np.testing.assert_allclose(values, 1.5, atol=1e-4)
    before = [np.array(v) for v in layer.trainable_variables]
    losses = adam_steps(layer, x)
    assert losses[-1] < losses[0]
    for old, new in zip(before, layer.trainable_variables):  # the raw weights really moved
        assert np.abs(np.asarray(new) - old).max() > 0.05
    np.testing.assert_allclose(singular_values(layer, size, c_in), 1.5, atol=1e-4)
    np.testing.assert_allclose(layer(x), orthogonal_conv_reference(layer, x), atol=1e-4)


def test_coisometry_when_filters_are_fewer_than_input_channels():
    layer = OrthogonalConv2D(3, 3, lipschitz=0.5)
    x = tf.random.stateless_normal((4, 5, 6, 5), (1, 0))
    layer.build(x.shape)
    adam_steps(layer, x)
    matrix = layer_matrix(layer, (5, 6), 5)
    values = np.linalg.svd(matrix, compute_uv=False)
    assert len(values) == 5 * 6 * 3  # full row rank: every output direction is reached
    np.testing.assert_allclose(values, 0.5, atol=1e-4)
    np.testing.assert_allclose(layer(x), orthogonal_conv_reference(layer, x), atol=1e-4)


SAME_CASES = [(3, 1, 3, 3), (2, 1, 2, 5), (3, 2, 2, 8), (2, 2, 1, 4)]


@pytest.mark.parametrize("kernel_size, strides, c_in, filters", SAME_CASES)
def test_same_padding_is_at_most_lipschitz_and_not_vacuous(kernel_size, strides, c_in, filters):
    size = (8, 8)
    layer = OrthogonalConv2D(filters, kernel_size, strides=strides, padding="same")
    x = tf.random.stateless_normal((4, *size, c_in), (2, 0))
    layer.build(x.shape)
    for trained in (False, True):
        if trained:
            adam_steps(layer, x)
        values = singular_values(layer, size, c_in)
        assert values[0] <= 1.0 + 1e-5
        assert values[0] >= 0.9  # interior directions keep their norm
        exact = np.linalg.norm(exact_matrix(layer, size, c_in), 2)
        np.testing.assert_allclose(exact, values[0], atol=1e-6)
        assert exact <= layer.lipschitz_upper_bound() <= 1.0 + 1e-5
        np.testing.assert_allclose(float(layer.operator_norm()), exact, atol=1e-6)
    # Away from the border, zero and circular padding compute the same outputs.
    circular = OrthogonalConv2D(filters, kernel_size, strides=strides)
    circular.build(x.shape)
    circular.set_weights(layer.get_weights())
    inner = slice(2, -2)
    np.testing.assert_allclose(np.asarray(layer(x))[:, inner, inner], np.asarray(circular(x))[:, inner, inner],
                               atol=1e-5)


def test_gradient_norm_is_preserved_in_inference_and_training():
    """The Jacobian of the orthogonal circular conv is lipschitz x orthogonal: ||J^T g|| = lipschitz ||g||."""
    layer = OrthogonalConv2D(8, 3, strides=2, lipschitz=2.0)
    x = tf.random.stateless_normal((3, 8, 8, 2), (3, 0))
    layer.build(x.shape)
    adam_steps(layer, x)
    g = tf.random.stateless_normal((3, 4, 4, 8), (3, 1))
    for training, tolerance in ((False, 1e-5), (True, 1e-4)):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.reduce_sum(layer(x, training=training) * g)
        grad = tape.gradient(y, x)
        per_sample = np.sqrt(np.sum(np.square(grad), axis=(1, 2, 3)))
        expected = 2.0 * np.sqrt(np.sum(np.square(g), axis=(1, 2, 3)))
        np.testing.assert_allclose(per_sample, expected, rtol=tolerance)


def test_isometry_preserves_distances():
    layer = OrthogonalConv2D(7, 3, lipschitz=1.0)
    x = tf.random.stateless_normal((2, 6, 6, 3), (4, 0))
    v = tf.random.stateless_normal((2, 6, 6, 3), (4, 1))
    layer.build(x.shape)
    adam_steps(layer, x)
    distance = np.sqrt(np.sum(np.square(layer(x + v) - layer(x)), axis=(1, 2, 3)))
    np.testing.assert_allclose(distance, np.sqrt(np.sum(np.square(v), axis=(1, 2, 3))), rtol=1e-5)


def test_training_and_inference_maps_agree():
    layer = OrthogonalConv2D(6, 5, lipschitz=1.0)
    x = tf.random.stateless_normal((2, 8, 8, 6), (5, 0))
    layer.build(x.shape)
    adam_steps(layer, x)
    np.testing.assert_allclose(layer(x, training=True), layer(x, training=False), atol=1e-4)
    values = singular_values(layer, (8, 8), 6, training=True)
    np.testing.assert_allclose(values, 1.0, atol=1e-4)  # Polar Express (4 steps) in training calls


def test_any_input_size_without_input_size():
    """The circular map is orthogonal on every grid; the size-independent bound needs no input size."""
    model = keras.Sequential([keras.Input((None, None, 2)), OrthogonalConv2D(2, 3)])
    layer = model.layers[-1]
    assert layer.input_size is None
    for size in [(4, 5), (7, 3)]:
        np.testing.assert_allclose(singular_values(layer, size, 2), 1.0, atol=1e-4)
    assert 1.0 <= layer.lipschitz_upper_bound() <= 1.0 + 1e-5
    with pytest.raises(ValueError, match="input_size"):
        layer.operator_norm()
    with pytest.raises(ValueError, match="input_size"):
        layer.plain_keras_layer()


def test_protocol_bounds_and_norms():
    layer = OrthogonalConv2D(4, 3, lipschitz=0.7)
    model = keras.Sequential([keras.Input((6, 6, 4)), layer])
    adam_steps(layer, tf.random.stateless_normal((2, 6, 6, 4), (6, 0)))
    matrix = exact_matrix(layer, (6, 6), 4)
    np.testing.assert_allclose(matrix, layer_matrix(layer, (6, 6), 4), atol=1e-6)
    exact = np.linalg.norm(matrix, 2)
    assert exact <= layer.lipschitz_upper_bound() <= 0.7 * (1 + 1e-5)
    assert exact <= lipschitz_upper_bound(model) <= 0.7 * (1 + 1e-5)
    np.testing.assert_allclose(float(layer.operator_norm()), 0.7, atol=1e-5)
    # L-infinity: every output of a circular conv sees every tap, so the bound is the exact induced norm.
    np.testing.assert_allclose(layer.lipschitz_upper_bound("inf"), np.abs(matrix).sum(axis=1).max(), rtol=1e-5)


def test_config_roundtrip_and_cache_invalidation():
    layer = OrthogonalConv2D(6, (3, 2), strides=(1, 2), padding="same", lipschitz=2.0, inference_iterations=12,
                             training_steps=5, training_lower=0.2, use_bias=False, activation="relu")
    clone = OrthogonalConv2D.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    layer.build((None, 6, 6, 3))
    assert layer.inference_kernel().shape == (3, 4, 3, 6)
    x = tf.random.stateless_normal((1, 6, 6, 3), (7, 0))
    layer.projector_frames.assign(layer.projector_frames * tf.random.stateless_uniform(
        layer.projector_frames.shape, (7, 1), 0.2, 2.0))  # far from orthonormal: few iterations do not converge
    layer.inference_iterations = 1
    rough = np.asarray(layer(x))
    layer.inference_iterations = 40
    np.testing.assert_allclose(layer(x), np.maximum(orthogonal_conv_reference_same(layer, x), 0), atol=1e-4)
    assert np.abs(rough - np.asarray(layer(x))).max() > 1e-3


def orthogonal_conv_reference_same(layer, x):
    """Zero padding: the circular reference on a zero-embedded image, cropped (a restriction of the circular map)."""
    kh, kw = layer.kernel_size
    sh, sw = layer.strides
    ph, pw = sh * kh, sw * kw  # enough zeros that nothing wraps around
    padded = np.pad(np.asarray(x, np.float64), ((0, 0), (ph, ph), (pw, pw), (0, 0)))
    out = orthogonal_conv_reference(layer, padded)
    h, w = x.shape[1] // sh, x.shape[2] // sw
    return out[:, ph // sh : ph // sh + h, pw // sw : pw // sw + w]


@pytest.mark.parametrize("kwargs, message", [
    ({"filters": 0}, "filters"),
    ({"kernel_size": 0}, "kernel_size"),
    ({"kernel_size": (3, 3, 3)}, "kernel_size"),
    ({"strides": 0}, "strides"),
    ({"padding": "valid"}, "padding"),
    ({"lipschitz": -1.0}, "lipschitz"),
    ({"lipschitz": float("inf")}, "lipschitz"),
    ({"inference_iterations": 0}, "inference_iterations"),
    ({"training_steps": 0}, "training_steps"),
    ({"training_lower": 1.5}, "training_lower"),
    ({"training_lower": 0}, "training_lower"),
    ({"input_size": (0, 4)}, "input_size"),
    ({"data_format": "channels_first"}, "data_format"),
])
def test_bad_arguments(kwargs, message):
    arguments = {"filters": 4, "kernel_size": 3, **kwargs}
    with pytest.raises(ValueError, match=message):
        OrthogonalConv2D(**arguments)


def test_bad_shapes():
    with pytest.raises(ValueError, match="`filters`.*`strides`"):
        OrthogonalConv2D(7, 3, strides=2).build((None, 8, 8, 2))  # an isometry needs 2 * 2 * 2 = 8 filters
    with pytest.raises(ValueError, match="strides"):
        OrthogonalConv2D(8, 3, strides=2).build((None, 7, 8, 2))  # circular: not divisible by the stride
    with pytest.raises(ValueError, match="kernel_size"):
        OrthogonalConv2D(2, 7).build((None, 2, 8, 2))  # circular padding larger than the image
    with pytest.raises(ValueError, match="input_size"):
        OrthogonalConv2D(2, 3, input_size=(8, 8)).build((None, 6, 6, 2))
    OrthogonalConv2D(8, 3, strides=2, padding="same").build((None, 7, 8, 2))  # zero padding: any size


def make_circular():
    return OrthogonalConv2D(8, 3, strides=2, kernel_initializer="glorot_uniform", bias_initializer="random_normal")


def make_same():
    return OrthogonalConv2D(3, 2, padding="same", activation="relu")


def test_save_load(tmp_path):
    x = np.random.default_rng(0).standard_normal((2, 8, 8, 2)).astype("float32")
    for make in (make_circular, make_same):
        restored = check_save_load_roundtrip(make, x, tmp_path)
        assert isinstance(restored.layers[-1], OrthogonalConv2D)


def test_graph_modes():
    x = np.random.default_rng(1).standard_normal((2, 8, 8, 2)).astype("float32")
    for make in (make_circular, make_same):
        check_sequential_and_graph_modes(make, x)


def test_mirrored():
    x = np.random.default_rng(2).standard_normal((4, 8, 8, 2)).astype("float32")
    single, _ = check_mirrored_training(make_circular, x)
    np.testing.assert_allclose(singular_values(single.layers[-1], (8, 8), 2), 1.0, atol=1e-4)


@pytest.mark.parametrize("policy, tolerance", [("mixed_float16", 5e-3), ("mixed_bfloat16", 3e-2)])
def test_mixed_precision(policy, tolerance):
    x = np.random.default_rng(3).standard_normal((2, 8, 8, 2)).astype("float32")
    for make in (make_circular, make_same):
        check_mixed_precision(make, x, policy, tolerance)
