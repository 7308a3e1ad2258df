"""Conv operator math against explicit matrices and numpy's SVD."""

import numpy as np
import pytest
import tensorflow as tf

from tflip.ops.conv import (
    ConvGeometry,
    circular_conv_singular_values,
    conv_matrix,
    conv_norm_upper_bound,
    conv_operator_norm,
    reshaped_kernel_norm,
)

CASES = [
    # kernel, c_in, c_out, stride, padding, size, dilation
    (3, 2, 3, 1, "same", 8, 1),
    (3, 3, 40, 2, "same", 8, 1),
    (5, 2, 2, 2, "valid", 9, 1),
    (1, 4, 3, 1, "same", 6, 1),
    (3, 2, 2, 1, "same", 8, 2),
    (4, 3, 3, 2, "same", 10, 1),
    (3, 3, 5, 2, "valid", 8, 1),
]


def numpy_conv_matrix(kernel, size, stride, padding):
    """Independent loop construction of the cross-correlation matrix (TF's padding rule)."""
    kh, kw, c_in, c_out = kernel.shape
    if padding == "same":
        out = -(-size // stride)
        pad = max((out - 1) * stride + kh - size, 0) // 2
    else:
        out = (size - kh) // stride + 1
        pad = 0
    matrix = np.zeros((out, out, c_out, size, size, c_in))
    for i in range(out):
        for j in range(out):
            for a in range(kh):
                for b in range(kw):
                    r, c = i * stride - pad + a, j * stride - pad + b
                    if 0 <= r < size and 0 <= c < size:
                        matrix[i, j, :, r, c, :] += kernel[a, b].T
    return matrix.reshape(out * out * c_out, size * size * c_in)


@pytest.mark.parametrize("stride,padding,size", [(1, "same", 6), (2, "same", 7), (2, "valid", 7), (2, "same", 8)])
def test_conv_matrix_matches_independent_construction(rng, stride, padding, size):
    kernel = rng.normal(size=(3, 3, 2, 3))
    geometry = ConvGeometry((size, size), (stride, stride), padding)
    np.testing.assert_allclose(
        conv_matrix(kernel, geometry), numpy_conv_matrix(kernel, size, stride, padding), atol=1e-12
    )


def test_adjoint_is_the_transpose(rng):
    kernel = rng.normal(size=(3, 3, 2, 4))
    geometry = ConvGeometry((7, 7), (2, 2), "same")
    x = rng.normal(size=(1, 7, 7, 2))
    y = rng.normal(size=(1, 4, 4, 4))
    lhs = np.sum(geometry.apply(x, kernel).numpy() * y)
    rhs = np.sum(x * geometry.apply_adjoint(tf.constant(y), kernel).numpy())
    assert lhs == pytest.approx(rhs, rel=1e-10)


@pytest.mark.parametrize("case", CASES)
def test_power_iteration_norm_and_certified_bound(rng, case):
    k, c_in, c_out, stride, padding, size, dilation = case
    kernel = rng.normal(size=(k, k, c_in, c_out))
    geometry = ConvGeometry((size, size), (stride, stride), padding, (dilation, dilation))
    # A dilated kernel acts as the kernel with dilation - 1 zeros between its taps (TensorFlow allows stride 1 only).
    dilated = np.zeros(((k - 1) * dilation + 1, (k - 1) * dilation + 1, c_in, c_out))
    dilated[::dilation, ::dilation] = kernel
    exact = np.linalg.norm(numpy_conv_matrix(dilated, size, stride, padding), 2)
    assert conv_operator_norm(kernel, geometry) == pytest.approx(exact, rel=1e-5)
    # Circular (Gram iteration) bound: above the exact norm, with slack on these small inputs.
    assert conv_norm_upper_bound(kernel, geometry, exact_limit=0) >= exact * (1 - 1e-12)
    # Small enough for the explicit-matrix path: the exact norm, raised only by the rounding margin.
    bound = conv_norm_upper_bound(kernel, geometry)
    assert exact <= bound <= exact * (1 + 2e-9)


def test_exact_path_removes_the_circular_slack_on_digit_sized_inputs(rng):
    """A stride-2 conv on a 4x4 input: the circular bound is loose, the certified bound is now exact."""
    kernel = rng.normal(size=(4, 4, 8, 16))
    geometry = ConvGeometry((4, 4), (2, 2), "same")
    exact = np.linalg.norm(numpy_conv_matrix(kernel, 4, 2, "same"), 2)
    assert conv_norm_upper_bound(kernel, geometry, exact_limit=0) > 1.02 * exact
    assert exact <= conv_norm_upper_bound(kernel, geometry) <= exact * (1 + 2e-9)
    # Above the limit (output 2 * 2 * 16 = 64 entries on the smaller side) the circular bound is used.
    assert conv_norm_upper_bound(kernel, geometry, exact_limit=63) == conv_norm_upper_bound(
        kernel, geometry, exact_limit=0)


@pytest.mark.parametrize("c_in,c_out,stride,exact_path", [
    (1, 32, 1, True),  # 64 -> 2048 entries: the first conv of examples/digits_wgan.py
    (32, 16, 2, True),  # 2048 -> 256
    (24, 24, 1, False),  # 1536 on both sides: above the limit for the smaller side
])
def test_exact_path_size_rule_on_wide_layers(rng, c_in, c_out, stride, exact_path):
    kernel = rng.normal(size=(3, 3, c_in, c_out))
    geometry = ConvGeometry((8, 8), (stride, stride), "same")
    exact = np.linalg.norm(numpy_conv_matrix(kernel, 8, stride, "same"), 2)
    bound = conv_norm_upper_bound(kernel, geometry)
    assert bound >= exact
    if exact_path:
        assert bound <= exact * (1 + 2e-9)
    else:
        assert bound == conv_norm_upper_bound(kernel, geometry, exact_limit=0)


def test_explicit_norm_upper_bound_against_svd(rng):
    from tflip.ops.conv import explicit_norm_upper_bound

    for shape in ((3, 200), (200, 3), (50, 50)):
        matrix = rng.normal(size=shape)
        sigma = np.linalg.svd(matrix, compute_uv=False)[0]
        assert sigma <= explicit_norm_upper_bound(matrix) <= sigma * (1 + 2e-9)


def test_gram_bound_converges_to_circular_norm(rng):
    """Six Gram iterations land within 0.5% of the exact circular norm on the same grid."""
    kernel = rng.normal(size=(3, 3, 4, 4))
    geometry = ConvGeometry((14, 14), (1, 1), "same")  # grid 16 x 16
    circular = float(circular_conv_singular_values(kernel, (16, 16))[0])
    bound = conv_norm_upper_bound(kernel, geometry, iterations=6, exact_limit=0)
    assert circular * (1 - 1e-6) <= bound <= 1.005 * circular


def circular_matrix(kernel, size):
    c_in = kernel.shape[2]
    basis = np.eye(size * size * c_in).reshape(-1, size, size, c_in)
    pad = kernel.shape[0] // 2
    wrapped = np.pad(basis, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="wrap")
    out = tf.nn.conv2d(wrapped, kernel, 1, "VALID").numpy()
    return out.reshape(size * size * c_in, -1).T


def test_fft_spectrum_matches_svd_of_circular_matrix(rng):
    kernel = rng.normal(size=(3, 3, 2, 3))
    expected = np.sort(np.linalg.svd(circular_matrix(kernel, 6), compute_uv=False))[::-1]
    np.testing.assert_allclose(circular_conv_singular_values(kernel, (6, 6)), expected, atol=1e-4)


def test_reshaped_norm_underestimates_operator_norm(rng):
    kernel = rng.normal(size=(3, 3, 3, 3))
    geometry = ConvGeometry((8, 8))
    exact = np.linalg.norm(conv_matrix(kernel, geometry), 2)
    assert float(reshaped_kernel_norm(kernel)) < 0.9 * exact


def test_bad_padding_raises():
    with pytest.raises(ValueError, match="padding"):
        ConvGeometry((8, 8), padding="circular")


def test_spectrum_needs_grid_at_least_kernel():
    with pytest.raises(ValueError, match="input_size"):
        circular_conv_singular_values(np.ones((5, 5, 1, 1)), (3, 3))


def strided_circular_matrix(kernel, size, stride, dilation=1):
    """Independent loop construction: y[m, n, o] = sum K[a, b, i, o] x[(s m + d a) % N, (s n + d b) % N, i]."""
    kh, kw, c_in, c_out = kernel.shape
    out = size // stride
    matrix = np.zeros((out, out, c_out, size, size, c_in))
    for m in range(out):
        for n in range(out):
            for a in range(kh):
                for b in range(kw):
                    rows = (stride * m + dilation * a) % size
                    cols = (stride * n + dilation * b) % size
                    matrix[m, n, :, rows, cols, :] += kernel[a, b].T
    return matrix.reshape(out * out * c_out, size * size * c_in)


@pytest.mark.parametrize("kernel_size, c_in, c_out, stride, size, dilation", [
    (3, 2, 3, 1, 6, 1),
    (3, 2, 3, 2, 8, 1),
    (4, 3, 2, 2, 8, 1),
    (3, 1, 5, 3, 9, 1),
    (3, 2, 2, 1, 8, 2),
])
def test_strided_circular_spectrum_matches_explicit_matrix(rng, kernel_size, c_in, c_out, stride, size, dilation):
    kernel = rng.normal(size=(kernel_size, kernel_size, c_in, c_out))
    expected = np.linalg.svd(strided_circular_matrix(kernel, size, stride, dilation), compute_uv=False)
    expected = np.sort(expected)[::-1][: (size // stride) ** 2 * min(c_out, stride * stride * c_in)]
    values = circular_conv_singular_values(kernel, (size, size), (stride, stride), (dilation, dilation))
    assert values.shape == expected.shape
    np.testing.assert_allclose(values, expected, atol=1e-4 * expected[0])


def test_sampled_circular_spectrum_is_a_subset(rng):
    kernel = rng.normal(size=(3, 3, 2, 2))
    full = circular_conv_singular_values(kernel, (8, 8)).numpy()
    sampled = circular_conv_singular_values(kernel, (8, 8), max_frequencies=10, seed=3).numpy()
    assert sampled.shape == (20,)
    assert np.all(np.min(np.abs(sampled[:, None] - full[None, :]), axis=1) < 1e-5)
    assert sampled[0] <= full[0] + 1e-6
    again = circular_conv_singular_values(kernel, (8, 8), max_frequencies=10, seed=3).numpy()
    np.testing.assert_array_equal(sampled, again)


def test_circular_spectrum_rejects_bad_sizes(rng):
    kernel = rng.normal(size=(3, 3, 2, 2))
    with pytest.raises(ValueError, match="input_size"):
        circular_conv_singular_values(kernel, (2, 2))
    with pytest.raises(ValueError, match="strides"):
        circular_conv_singular_values(kernel, (9, 9), (2, 2))


def test_subspace_iteration_reaches_the_exact_conv_norm(rng):
    """Plain power iteration stalls near 1e-4 relative error on conv spectra; the block method does not."""
    from tflip.ops.power_iteration import operator_norm_by_subspace_iteration

    kernel = rng.normal(size=(3, 3, 2, 3))
    geometry = ConvGeometry((8, 8), (1, 1), "same")
    exact = np.linalg.norm(numpy_conv_matrix(kernel, 8, 1, "same"), 2)
    start = tf.random.stateless_normal((8, 8, 8, 2), (0, 0), dtype=tf.float64)
    norm, block = operator_norm_by_subspace_iteration(*geometry.operators(tf.constant(kernel)), start)
    assert abs(norm - exact) <= 1e-9 * exact
    assert block.shape == start.shape


@pytest.mark.parametrize("stride,padding", [(1, "same"), (2, "valid")])
def test_top_singular_vector_is_the_svd_vector(rng, stride, padding):
    """Norm and vector against numpy's SVD of the explicit conv matrix (the vector up to sign)."""
    from tflip.ops.power_iteration import top_singular_vector

    kernel = rng.normal(size=(3, 3, 2, 3))
    geometry = ConvGeometry((8, 8), (stride, stride), padding)
    matrix = numpy_conv_matrix(kernel, 8, stride, padding)
    _, singular_values, right = np.linalg.svd(matrix)
    start = tf.random.stateless_normal((1, 8, 8, 2), (1, 0), dtype=tf.float64)
    norm, vector = top_singular_vector(*geometry.operators(tf.constant(kernel)), start, tolerance=1e-14)
    assert abs(norm - singular_values[0]) <= 1e-9 * singular_values[0]
    assert vector.shape == start.shape
    v = vector.numpy().ravel()
    assert np.linalg.norm(v) == pytest.approx(1.0, abs=1e-12)
    # The vector attains the norm, and is the top singular vector up to sign even with the close second value
    # of the stride-1 case (relative gap 1.5e-4, where a single power-iteration vector stalls).
    assert np.linalg.norm(matrix @ v) == pytest.approx(singular_values[0], rel=1e-10)
    assert abs(np.dot(v, right[0])) == pytest.approx(1.0, abs=1e-5)
