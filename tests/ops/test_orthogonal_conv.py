"""BCOP kernels against numpy references: circular conv matrices built independently, transfer functions, SVD."""

import numpy as np
import pytest
import tensorflow as tf

from tflip.ops.bjorck import bjorck_orthonormalize, polar_express_orthonormalize
from tflip.ops.conv import ConvGeometry, conv_matrix
from tflip.ops.orthogonal_conv import (
    block_convolution_taps,
    circular_conv2d,
    circular_conv_norm,
    circular_pad,
    circular_padding_amounts,
    downsampled_kernel_from_strided,
    fold_kernel,
    orthogonal_conv_kernel,
    projectors_from_frames,
    strided_kernel_from_downsampled,
    transfer_gram_norm_bound,
)


def orthonormal_np(rng, m, n):
    """A random `m x n` matrix with orthonormal columns (m >= n) or rows (m < n)."""
    q, _ = np.linalg.qr(rng.standard_normal((max(m, n), min(m, n))))
    return q if m >= n else q.T


def projectors_np(rng, count, c):
    frames = [orthonormal_np(rng, c, c // 2) for _ in range(count)]
    return np.array([q @ q.T for q in frames]).reshape(count, c, c)


def circular_matrix_np(kernel, size, strides=(1, 1)):
    """Matrix of y[i, j, o] = sum_{a, b, c} x[(s_h i + a) % h, (s_w j + b) % w, c] K[a, b, c, o] (numpy loops)."""
    kernel = np.asarray(kernel, np.float64)
    kh, kw, c_in, c_out = kernel.shape
    h, w = size
    sh, sw = strides
    ho, wo = h // sh, w // sw
    matrix = np.zeros((ho, wo, c_out, h, w, c_in))
    for i in range(ho):
        for j in range(wo):
            for a in range(kh):
                for b in range(kw):
                    matrix[i, j, :, (sh * i + a) % h, (sw * j + b) % w, :] += kernel[a, b].T
    return matrix.reshape(ho * wo * c_out, h * w * c_in)


def test_block_convolution_taps_have_the_product_transfer_function(rng):
    """sum_t A[t] e^{i w t} equals prod_j (P_j + (I - P_j) e^{i w}), and is unitary."""
    c = 6
    projectors = projectors_np(rng, 3, c)
    taps = np.asarray(block_convolution_taps(tf.constant(projectors)), np.float64)
    assert taps.shape == (4, c, c)
    for omega in rng.uniform(0, 2 * np.pi, 5):
        z = np.exp(1j * omega)
        expected = np.eye(c, dtype=complex)
        for p in projectors:
            expected = expected @ (p + (np.eye(c) - p) * z)
        transfer = sum(t * z**k for k, t in enumerate(taps))
        np.testing.assert_allclose(transfer, expected, atol=1e-6)
        np.testing.assert_allclose(transfer.conj().T @ transfer, np.eye(c), atol=1e-6)
    np.testing.assert_array_equal(block_convolution_taps(tf.zeros((0, c, c))), np.eye(c)[None])


@pytest.mark.parametrize("kernel_size", [(1, 1), (2, 2), (3, 3), (5, 5), (2, 3)])
@pytest.mark.parametrize("c_in, c_out", [(4, 4), (2, 6), (6, 3)])
def test_bcop_kernel_is_orthogonal_isometric_or_coisometric_with_circular_padding(rng, kernel_size, c_in, c_out):
    kh, kw = kernel_size
    c = max(c_in, c_out)
    channel = orthonormal_np(rng, c_in, c_out)
    kernel = orthogonal_conv_kernel(
        tf.constant(channel, tf.float32),
        tf.constant(projectors_np(rng, kh - 1, c), tf.float32),
        tf.constant(projectors_np(rng, kw - 1, c), tf.float32),
    )
    assert kernel.shape == (kh, kw, c_in, c_out)
    for size in [(5, 6), (2, 3)]:  # includes a grid smaller than the kernel (wrap-around)
        values = np.linalg.svd(circular_matrix_np(kernel, size), compute_uv=False)
        assert len(values) == size[0] * size[1] * min(c_in, c_out)
        np.testing.assert_allclose(values, 1.0, atol=1e-5)


def test_bcop_kernel_equals_the_composition_of_its_factors(rng):
    """K[a, b] = M V[a] W[b] (isometry), V W computed from the factors' explicit matrices."""
    c_in, c = 3, 5
    channel = orthonormal_np(rng, c_in, c)
    vertical, horizontal = projectors_np(rng, 2, c), projectors_np(rng, 1, c)
    kernel = orthogonal_conv_kernel(*(tf.constant(a, tf.float32) for a in (channel, vertical, horizontal)))
    size = (4, 5)

    def block(p, axis):
        k = np.stack([p, np.eye(c) - p])
        return k[:, None] if axis == 0 else k[None, :]

    expected = circular_matrix_np(channel[None, None], size)
    for p in vertical:
        expected = circular_matrix_np(block(p, 0), size) @ expected
    for p in horizontal:
        expected = circular_matrix_np(block(p, 1), size) @ expected
    np.testing.assert_allclose(circular_matrix_np(kernel, size), expected, atol=1e-6)


@pytest.mark.parametrize("strides", [(2, 2), (2, 1), (3, 2)])
def test_strided_kernel_is_downsampling_then_conv(rng, strides):
    sh, sw = strides
    coarse = rng.standard_normal((2, 3, sh * sw * 2, 4)).astype("float32")
    fine = strided_kernel_from_downsampled(tf.constant(coarse), strides)
    assert fine.shape == (2 * sh, 3 * sw, 2, 4)
    np.testing.assert_array_equal(downsampled_kernel_from_strided(fine, strides), coarse)
    h, w = 4 * sh, 5 * sw
    x = rng.standard_normal((h, w, 2))
    # Space-to-depth in numpy: channel (p * s_w + q) * c_in + c of coarse pixel (m, n) is x[s_h m + p, s_w n + q, c].
    z = x.reshape(h // sh, sh, w // sw, sw, 2).transpose(0, 2, 1, 3, 4).reshape(h // sh, w // sw, -1)
    expected = circular_matrix_np(coarse, (h // sh, w // sw)) @ z.reshape(-1)
    np.testing.assert_allclose(circular_matrix_np(fine, (h, w), strides) @ x.reshape(-1), expected, atol=1e-5)


def test_circular_pad_wraps_like_numpy(rng):
    x = rng.standard_normal((2, 5, 4, 3)).astype("float32")
    for padding in [((1, 1), (1, 1)), ((0, 2), (3, 0)), ((5, 4), (4, 4)), ((0, 0), (0, 0))]:
        expected = np.pad(x, ((0, 0), *padding, (0, 0)), mode="wrap")
        np.testing.assert_array_equal(circular_pad(x, padding), expected)
        for spec in (tf.TensorSpec((None, None, None, 3)), tf.TensorSpec(None)):  # dynamic size, unknown rank
            dynamic = tf.function(lambda t, p=padding: circular_pad(t, p), input_signature=[spec])
            np.testing.assert_array_equal(dynamic(x), expected)
    with pytest.raises(ValueError, match="at least"):
        circular_pad(x, ((6, 0), (0, 0)))


@pytest.mark.parametrize("k, s", [(1, 1), (2, 1), (3, 1), (4, 1), (5, 1), (1, 2), (2, 2), (3, 2), (3, 3)])
def test_circular_conv2d_is_the_conv_of_the_periodic_image(rng, k, s):
    """Output (i, j) reads the "SAME" window of (i, j), taken periodically."""
    x = rng.standard_normal((2, 6 * s, 4 * s, 3)).astype("float32")
    kernel = rng.standard_normal((s * k, s * k, 3, 2)).astype("float32")
    (top, _), (left, _) = circular_padding_amounts((k, k), (s, s))
    shifted = np.roll(x, (top, left), axis=(1, 2))  # the window of output (i, j) starts at input s * (i, j) - pad
    matrix = circular_matrix_np(kernel, x.shape[1:3], (s, s))
    expected = np.stack([matrix @ xi.reshape(-1) for xi in shifted]).reshape(2, 6, 4, 2)
    np.testing.assert_allclose(circular_conv2d(x, kernel, (s, s)), expected, atol=1e-4)
    xla = tf.function(lambda t: circular_conv2d(t, kernel, (s, s)), jit_compile=True)
    np.testing.assert_allclose(xla(x), expected, atol=1e-4)
    # "SAME" alignment: away from the border the circular and the zero-padded convolutions agree.
    same = tf.nn.conv2d(x, kernel, s, "SAME").numpy()
    inner = slice(k, -k) if k > 1 else slice(None)
    np.testing.assert_allclose(same[:, inner, inner], expected[:, inner, inner], atol=1e-4)


def test_fold_kernel_gives_the_same_circular_map(rng):
    kernel = rng.standard_normal((5, 7, 2, 3)).astype("float32")
    for size in [(2, 3), (3, 7), (4, 4), (5, 9)]:
        folded = fold_kernel(tf.constant(kernel), size)
        assert folded.shape[:2] == (min(5, size[0]), min(7, size[1]))
        np.testing.assert_allclose(circular_matrix_np(folded, size), circular_matrix_np(kernel, size), atol=1e-5)


@pytest.mark.parametrize("strides", [(1, 1), (2, 2)])
def test_circular_conv_norm_is_the_exact_norm(rng, strides):
    kernel = rng.standard_normal((4, 6, 2, 3)).astype("float32")
    for size in [(4, 6), (6, 4), (8, 8)]:  # kernels larger than the grid are folded
        exact = np.linalg.norm(circular_matrix_np(kernel, size, strides), 2)
        bound = circular_conv_norm(kernel, size, strides)
        assert exact <= bound <= exact * (1 + 1e-8)
    with pytest.raises(ValueError, match="strides"):
        circular_conv_norm(kernel, (5, 6), (2, 2))


def test_transfer_gram_norm_bound_is_certified_on_every_grid_and_tight_for_bcop(rng):
    for c_in, c_out in [(3, 5), (5, 3), (4, 4)]:
        kernel = rng.standard_normal((3, 2, c_in, c_out)).astype("float32")
        bound = transfer_gram_norm_bound(kernel)
        for size in [(3, 2), (4, 5), (7, 3)]:
            assert np.linalg.norm(circular_matrix_np(kernel, size), 2) <= bound
            assert np.linalg.norm(conv_matrix(kernel, ConvGeometry(size, padding="same")), 2) <= bound
        # Not vacuous: at most the sum of the taps' norms (the naive bound) and near the exact sup.
        naive = sum(np.linalg.norm(kernel[a, b], 2) for a in range(3) for b in range(2))
        # The circular norm on a 64 x 64 grid: the largest transfer matrix norm at its frequencies.
        transfer = np.fft.fft2(kernel.astype(np.float64), s=(64, 64), axes=(0, 1))
        finest = np.linalg.norm(transfer, 2, axis=(2, 3)).max()
        assert finest <= bound <= naive
        c = max(c_in, c_out)
        orthogonal = orthogonal_conv_kernel(
            tf.constant(orthonormal_np(rng, c_in, c_out), tf.float32),
            tf.constant(projectors_np(rng, 2, c), tf.float32),
            tf.constant(projectors_np(rng, 1, c), tf.float32),
        )
        assert 1.0 - 1e-6 <= transfer_gram_norm_bound(orthogonal) <= 1.0 + 1e-5


def test_projectors_from_orthonormalized_frames(rng):
    frames = tf.constant(rng.standard_normal((3, 6, 3)), tf.float32)
    for orthonormal in (bjorck_orthonormalize(frames, 30), polar_express_orthonormalize(frames, 6, 0.05)):
        p = np.asarray(projectors_from_frames(orthonormal), np.float64)
        np.testing.assert_allclose(p, np.transpose(p, (0, 2, 1)), atol=1e-6)
        np.testing.assert_allclose(p @ p, p, atol=1e-5)
        np.testing.assert_allclose(np.trace(p, axis1=1, axis2=2), 3.0, atol=1e-5)


def test_batched_orthonormalization_equals_one_matrix_at_a_time(rng):
    """The projector frames are orthonormalized in one batched call (tflip.ops.bjorck)."""
    batch = tf.constant(rng.standard_normal((4, 7, 3)), tf.float32)
    for matrices in (batch, tf.linalg.matrix_transpose(batch)):
        for orthonormalize in (lambda m: polar_express_orthonormalize(m, 4), lambda m: bjorck_orthonormalize(m, 12)):
            one_by_one = tf.stack([orthonormalize(m) for m in matrices])
            np.testing.assert_allclose(orthonormalize(matrices), one_by_one, atol=1e-6)
