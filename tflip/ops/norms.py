"""Operator norms of dense kernels in the L2 and L-infinity metrics."""

import numpy as np
import tensorflow as tf


def check_norm(norm):
    """Returns 2 or "inf", or raises a ValueError naming `norm`."""
    if isinstance(norm, str):
        if norm.lower() == "inf":
            return "inf"
    elif not isinstance(norm, bool) and norm in (2, np.inf):
        return 2 if norm == 2 else "inf"
    raise ValueError(f"`norm` must be 2 or 'inf', got {norm!r}.")


def dense_kernel_norm(kernel, norm=2):
    """Operator norm of x -> x @ kernel (Keras layout `(in, out)`), as a Python float.

    `norm=2`: the largest singular value, by an SVD in float64 (exact to
    rounding). `norm="inf"`: the induced L-infinity norm, the largest L1 norm
    of the weights feeding one output (a column of the kernel).
    """
    kernel = np.asarray(tf.cast(kernel, tf.float64))
    if check_norm(norm) == 2:
        return float(np.linalg.norm(kernel, 2))
    return float(np.max(np.sum(np.abs(kernel), axis=0)))
