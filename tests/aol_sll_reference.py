"""Independent numpy references for AOL and SLL (float64, explicit loops, no TensorFlow)."""

import numpy as np


def autocorrelation_np(kernel):
    """M[delta] = sum_{a, o} K[a + delta, i, o] K[a, j, o] over all offsets, by explicit shifts.

    Returns `(2 kh - 1, 2 kw - 1, c_in, c_in)`, offsets from -(k - 1) to k - 1.
    """
    kernel = np.asarray(kernel, np.float64)
    kh, kw, c_in, _ = kernel.shape
    out = np.zeros((2 * kh - 1, 2 * kw - 1, c_in, c_in))
    for dh in range(-(kh - 1), kh):
        for dw in range(-(kw - 1), kw):
            for a in range(kh):
                for b in range(kw):
                    if 0 <= a + dh < kh and 0 <= b + dw < kw:
                        out[dh + kh - 1, dw + kw - 1] += kernel[a + dh, b + dw] @ kernel[a, b].T
    return out


def absolute_gram_np(kernel):
    """`|W W^T|` for a dense `(in, out)` kernel, the offset sum of `|M|` for a conv kernel."""
    kernel = np.asarray(kernel, np.float64)
    if kernel.ndim == 2:
        return np.abs(kernel @ kernel.T)
    return np.abs(autocorrelation_np(kernel)).sum(axis=(0, 1))


def aol_scale_np(kernel, log_q=None):
    """d_i = (sum_j |G_ij| q_j / q_i)^(-1/2) (0 for zero sums)."""
    gram = absolute_gram_np(kernel)
    q = np.ones(gram.shape[0]) if log_q is None else np.exp(np.asarray(log_q, np.float64))
    sums = (gram @ q) / q
    return np.where(sums > 0, 1.0 / np.sqrt(np.where(sums > 0, sums, 1.0)), 0.0)


def aol_kernel_np(kernel, lipschitz=1.0):
    kernel = np.asarray(kernel, np.float64)
    scale = aol_scale_np(kernel)
    return lipschitz * (kernel * scale[:, None] if kernel.ndim == 2 else kernel * scale[None, None, :, None])


def conv_same_np(x, kernel):
    """Stride-1 'same' cross-correlation (TensorFlow's padding rule), channels last, float64."""
    kh, kw, _, _ = kernel.shape
    padded = np.pad(x, ((0, 0), ((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2), (0, 0)))
    h, w = x.shape[1:3]
    out = np.zeros(x.shape[:3] + (kernel.shape[-1],))
    for i in range(kh):
        for j in range(kw):
            out += np.einsum("bhwc,cf->bhwf", padded[:, i : i + h, j : j + w], kernel[i, j])
    return out


def sll_inner_t_np(kernel, log_q):
    """T_k = sum_l |W^T W|_kl q_l / q_k on the inner side, from the channel-swapped kernel."""
    kernel = np.asarray(kernel, np.float64)
    swapped = kernel.T if kernel.ndim == 2 else kernel.transpose(0, 1, 3, 2)
    gram = absolute_gram_np(swapped)
    q = np.exp(np.asarray(log_q, np.float64))
    return (gram @ q) / q


def sll_np(x, kernel, bias, log_q):
    """The paper's form y = x - 2 W T^-1 ReLU(W^T x + b) with b = T^(1/2) b' (b' the layer's bias).

    Dense kernels `(d, m)`; conv kernels `(kh, kw, c, m)` with odd sizes, whose
    adjoint is the 'same' correlation with the flipped, channel-swapped kernel.
    """
    kernel = np.asarray(kernel, np.float64)
    t = sll_inner_t_np(kernel, log_q)
    b = np.sqrt(t) * np.asarray(bias, np.float64)
    if kernel.ndim == 2:
        return x - 2.0 * (np.maximum(x @ kernel + b, 0.0) / t) @ kernel.T
    inner = np.maximum(conv_same_np(x, kernel) + b, 0.0) / t
    adjoint = kernel[::-1, ::-1].transpose(0, 1, 3, 2)
    return x - 2.0 * conv_same_np(inner, adjoint)
