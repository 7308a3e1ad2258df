"""Exact Wasserstein-1 distance between two empirical distributions."""

import numpy as np
from scipy.spatial.distance import cdist


def _as_samples(name, x):
    x = np.asarray(x, dtype="float64")
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim < 2 or x.shape[0] == 0:
        raise ValueError(f"`{name}` must be a non-empty batch of samples, got shape {x.shape}.")
    return x.reshape(x.shape[0], -1)


def wasserstein1_exact(x, y, metric="euclidean"):
    """Exact W1 between the uniform empirical distributions on `x` and `y`.

    Solves the optimal-transport linear program: for equal sample counts by
    the Kuhn-Munkres assignment (scipy's `linear_sum_assignment`; an optimal
    plan between two uniform measures with equal counts is a permutation),
    otherwise by POT's network simplex (`ot.emd2`). Cost O(n^3): use up to a
    few thousand samples.

    Args:
        x: samples `(n, ...)` (flattened per sample).
        y: samples `(m, ...)` with the same sample size as `x`.
        metric: ground metric, any `scipy.spatial.distance.cdist` metric
            (`"euclidean"` for W1 in L2, `"cityblock"`, `"chebyshev"`).

    Returns:
        W1 as a Python float.
    """
    x = _as_samples("x", x)
    y = _as_samples("y", y)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"`x` and `y` must have the same sample size, got {x.shape[1]} and {y.shape[1]}.")
    cost = cdist(x, y, metric=metric)
    if x.shape[0] == y.shape[0]:
        from scipy.optimize import linear_sum_assignment

        rows, cols = linear_sum_assignment(cost)
        return float(cost[rows, cols].mean())
    import ot

    return float(ot.emd2(np.full(x.shape[0], 1.0 / x.shape[0]), np.full(y.shape[0], 1.0 / y.shape[0]), cost))


def optimal_transport_plan(x, y, metric="euclidean"):
    """The optimal assignment between equal-size sample sets: `y[plan[i]]` is `x[i]`'s partner."""
    from scipy.optimize import linear_sum_assignment

    x = _as_samples("x", x)
    y = _as_samples("y", y)
    if x.shape != y.shape:
        raise ValueError(f"`x` and `y` must have the same shape, got {x.shape} and {y.shape}.")
    rows, cols = linear_sum_assignment(cdist(x, y, metric=metric))
    plan = np.empty(len(rows), dtype=int)
    plan[rows] = cols
    return plan
