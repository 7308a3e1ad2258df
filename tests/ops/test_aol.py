"""AOL rescaling and SLL normalization against numpy and explicit matrices."""

import numpy as np
import pytest
import tensorflow as tf

import tflip.ops.aol as aol_ops
from tests.aol_sll_reference import absolute_gram_np, aol_scale_np, autocorrelation_np, sll_np
from tflip.ops.aol import (
    absolute_gram,
    aol_norm_upper_bound,
    aol_rescale,
    aol_scaling,
    gram_autocorrelation,
    rescaled_norm_upper_bound,
)
from tflip.ops.conv import ConvGeometry, conv_matrix
from tflip.ops.sll import sll_conv_residual, sll_dense_residual, sll_normalized_kernel


def random(shape, seed, scale=1.0):
    return (scale * np.random.default_rng(seed).standard_normal(shape)).astype("float32")


def spectral_norm(matrix):
    return np.linalg.norm(np.asarray(matrix, np.float64), 2)


@pytest.mark.parametrize("shape", [(3, 3, 2, 4), (2, 3, 3, 2), (5, 1, 1, 3)])
def test_gram_autocorrelation_matches_explicit_shifts(shape):
    kernel = random(shape, 0)
    np.testing.assert_allclose(gram_autocorrelation(kernel), autocorrelation_np(kernel), atol=1e-5)


@pytest.fixture(params=["tap_gram", "autocorrelation_conv"])
def gram_path(request, monkeypatch):
    """Runs a test through both ways `absolute_gram` computes a conv kernel's offset sums."""
    monkeypatch.setattr(aol_ops, "_uses_tap_gram", lambda shape: request.param == "tap_gram")
    return request.param


@pytest.mark.parametrize("kernel_size", [(3, 3), (2, 3), (1, 1), (4, 2)])
def test_conv_gram_sums_equal_a_central_row_of_the_explicit_operator(kernel_size, gram_path):
    """Row sums of |A^T A| for an input pixel far from the border, from the explicit matrix: the offset sums."""
    kh, kw = kernel_size
    c_in, c_out = 2, 3
    kernel = random((kh, kw, c_in, c_out), 1)
    n = 4 * max(kh, kw) + 1  # every output window touching the central pixel exists
    matrix = conv_matrix(kernel, ConvGeometry((n, n), padding="same"))
    gram = np.abs(matrix.T @ matrix).reshape(n, n, c_in, n, n, c_in)
    centre = gram[n // 2, n // 2].sum(axis=(1, 2))  # (c_in, c_in): summed over the other pixel
    np.testing.assert_allclose(absolute_gram(kernel), centre, rtol=1e-5, atol=1e-6)


def test_dense_scaling_is_d_from_the_explicit_gram():
    kernel = random((7, 4), 2)
    p = kernel.T.astype(np.float64)  # the paper's P (x -> P x)
    expected = 1.0 / np.sqrt(np.abs(p.T @ p).sum(axis=1))
    np.testing.assert_allclose(aol_scaling(kernel), expected, rtol=1e-5)
    np.testing.assert_allclose(aol_rescale(kernel), kernel * expected[:, None], rtol=1e-5)


# (3, 3, 3, 16) and (1, 1, 2, 3): at most c_out offsets, the blocks are summed by a 0/1 matmul; else a segment sum.
@pytest.mark.parametrize("shape", [(3, 3, 4, 2), (3, 2, 2, 5), (3, 3, 3, 16), (1, 1, 2, 3)])
def test_weighted_sums_match_numpy(shape, gram_path):
    kernel, log_q = random(shape, 3), random(shape[2], 4)
    np.testing.assert_allclose(aol_scaling(kernel, log_q), aol_scale_np(kernel, log_q), rtol=1e-5)
    np.testing.assert_allclose(absolute_gram(kernel), absolute_gram_np(kernel), rtol=1e-5, atol=1e-6)


def test_both_gram_paths_have_the_same_gradient(monkeypatch):
    kernel = tf.constant(random((3, 2, 5, 4), 5))
    weights = tf.constant(random((5, 5), 6))

    def gradient():
        with tf.GradientTape() as tape:
            tape.watch(kernel)
            value = tf.reduce_sum(absolute_gram(kernel) * weights)
        return tape.gradient(value, kernel)

    monkeypatch.setattr(aol_ops, "_uses_tap_gram", lambda shape: True)
    tap_gram = gradient()
    monkeypatch.setattr(aol_ops, "_uses_tap_gram", lambda shape: False)
    np.testing.assert_allclose(tap_gram, gradient(), rtol=1e-5, atol=1e-5)


def test_the_tap_gram_is_used_where_it_is_faster_and_fits():
    assert aol_ops._uses_tap_gram((3, 3, 64, 64))
    assert not aol_ops._uses_tap_gram((7, 7, 64, 3))  # few output channels: the convolution is faster
    assert not aol_ops._uses_tap_gram((3, 3, 512, 512))  # (9 x 512)^2 Gram entries exceed the limit


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("shape", [(6, 6), (9, 3), (3, 9)])
def test_dense_rescaled_norm_at_most_one(seed, shape):
    kernel = random(shape, seed, scale=3.0)
    log_q = random(shape[0], seed + 10)
    for q in (None, log_q):
        rescaled = aol_rescale(kernel, q)
        norm = spectral_norm(rescaled)
        assert norm <= 1.0 + 1e-5
        certificate = rescaled_norm_upper_bound(kernel, rescaled, q)
        assert norm <= certificate <= 1.0 + 1e-5
    # Orthogonal rows: D = I and the map stays orthogonal (the bound is tight).
    q_matrix = np.linalg.qr(random((9, 9), seed))[0][:4].astype("float32")
    np.testing.assert_allclose(aol_rescale(q_matrix), q_matrix, atol=1e-5)


@pytest.mark.parametrize("padding", ["same", "valid"])
@pytest.mark.parametrize("strides", [1, 2])
@pytest.mark.parametrize("size", [5, 8])
def test_conv_rescaled_norm_at_most_one_on_explicit_matrices(padding, strides, size):
    for seed in range(2):
        kernel = random((3, 3, 2, 3), seed, scale=2.0)
        rescaled = aol_rescale(kernel)
        norm = spectral_norm(conv_matrix(rescaled, ConvGeometry((size, size), (strides, strides), padding)))
        assert norm <= 1.0 + 1e-5
        assert norm <= rescaled_norm_upper_bound(kernel, rescaled) <= 1.0 + 1e-5
        # The unweighted test is valid too (any q), just not tight after rescaling.
        assert norm <= aol_norm_upper_bound(rescaled)


def test_strided_conv_is_a_row_subset_of_the_stride_one_conv_on_a_larger_grid():
    """Why strides keep the bound: every strided output window is a window of the full stride-1 correlation."""
    kernel = random((3, 3, 2, 2), 5)
    for padding in ("same", "valid"):
        strided = conv_matrix(kernel, ConvGeometry((8, 8), (2, 2), padding))
        full = conv_matrix(kernel, ConvGeometry((8, 8), (1, 1), "same"))
        valid = conv_matrix(kernel, ConvGeometry((8, 8), (1, 1), "valid"))
        rows = {tuple(np.round(r, 6)) for r in np.concatenate([full, valid])}
        assert all(tuple(np.round(r, 6)) in rows for r in strided)


def test_zero_channel_gives_zero_scale_and_finite_gradient():
    kernel = tf.Variable(random((3, 3, 3, 2), 6) * np.array([1.0, 0.0, 1.0], "float32")[None, None, :, None])
    with tf.GradientTape() as tape:
        rescaled = aol_rescale(kernel)
        loss = tf.reduce_sum(rescaled**2)
    assert float(aol_scaling(kernel)[1]) == 0.0
    assert np.all(np.isfinite(rescaled)) and np.all(np.isfinite(tape.gradient(loss, kernel)))


def test_bad_kernel_rank():
    with pytest.raises(ValueError, match="`kernel`"):
        absolute_gram(tf.zeros((2, 3, 4)))


@pytest.mark.parametrize("seed", range(2))
def test_sll_normalized_kernel_satisfies_the_sdp_condition(seed):
    """V V^T <= I: the explicit V^T map has norm at most 1; T from the inner-side Gram."""
    kernel, log_q = random((3, 3, 2, 5), seed, 2.0), random(5, seed + 1)
    v = sll_normalized_kernel(kernel, log_q)
    assert spectral_norm(conv_matrix(v, ConvGeometry((6, 6)))) <= 1.0 + 1e-5
    dense, dense_q = random((4, 7), seed), random(7, seed + 2)
    v = sll_normalized_kernel(dense, dense_q)
    assert spectral_norm(v) <= 1.0 + 1e-5
    t = (absolute_gram_np(dense.T) @ np.exp(dense_q.astype(np.float64))) / np.exp(dense_q.astype(np.float64))
    np.testing.assert_allclose(v, dense / np.sqrt(t)[None, :], rtol=1e-5)


def test_sll_residuals_equal_the_papers_form():
    x = random((3, 5), 7)
    kernel, bias, log_q = random((5, 8), 8), random(8, 9), random(8, 10)
    got = sll_dense_residual(x, sll_normalized_kernel(kernel, log_q), bias)
    np.testing.assert_allclose(got, sll_np(x.astype(np.float64), kernel, bias, log_q), atol=1e-5)
    x = random((2, 6, 5, 3), 11)
    kernel, bias, log_q = random((3, 3, 3, 4), 12), random(4, 13), random(4, 14)
    got = sll_conv_residual(x, sll_normalized_kernel(kernel, log_q), bias)
    np.testing.assert_allclose(got, sll_np(x.astype(np.float64), kernel, bias, log_q), atol=1e-5)


@pytest.mark.parametrize("kernel_size", [(2, 2), (3, 4)])
def test_sll_conv_uses_the_exact_adjoint_for_even_kernels(kernel_size):
    """With all ReLUs active and no bias, the map is I - 2 A^T A for the explicit matrix A of V^T."""
    kernel = tf.cast(sll_normalized_kernel(random((*kernel_size, 2, 3), 15), None), tf.float64)
    a = conv_matrix(kernel, ConvGeometry((5, 6)))
    x = random((1, 5, 6, 2), 16).astype(np.float64)
    # A large bias keeps every ReLU active; it adds the constant -2 A^T b, removed by differencing.
    bias = np.full(3, 1e3)
    y = np.asarray(sll_conv_residual(x, kernel, bias)) - np.asarray(sll_conv_residual(np.zeros_like(x), kernel, bias))
    expected = (np.eye(a.shape[1]) - 2.0 * a.T @ a) @ x.reshape(-1)
    np.testing.assert_allclose(y.reshape(-1), expected, atol=1e-9)
