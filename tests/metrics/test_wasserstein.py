"""Exact W1 against closed forms and between the two solvers."""

import numpy as np
import pytest

from tflip.metrics import optimal_transport_plan, wasserstein1_exact


def test_one_dimensional_closed_form(rng):
    # In 1-D, W1 between equal-size empirical measures is the mean gap of sorted samples.
    x = rng.normal(size=300)
    y = rng.exponential(size=300)
    expected = np.mean(np.abs(np.sort(x) - np.sort(y)))
    assert wasserstein1_exact(x, y) == pytest.approx(expected, rel=1e-10)


def test_equal_and_unequal_sizes_agree(rng):
    x = rng.normal(size=(120, 3))
    y = rng.normal(size=(120, 3)) + 1.0
    # Duplicating every sample of y leaves the measure unchanged; POT solves the unequal case.
    assert wasserstein1_exact(x, np.concatenate([y, y])) == pytest.approx(wasserstein1_exact(x, y), rel=1e-9)


def test_translation_and_metric(rng):
    x = rng.normal(size=(200, 2))
    shift = np.array([3.0, 4.0])
    assert wasserstein1_exact(x, x + shift) == pytest.approx(5.0, rel=1e-9)
    assert wasserstein1_exact(x, x + shift, metric="cityblock") == pytest.approx(7.0, rel=1e-9)


def test_plan_is_the_optimal_assignment(rng):
    x = rng.normal(size=(50, 2))
    permutation = rng.permutation(50)
    y = x[permutation] + 1e-3
    plan = optimal_transport_plan(x, y)
    np.testing.assert_array_equal(plan, np.argsort(permutation))  # y[plan[i]] is x[i] shifted


def test_bad_inputs():
    with pytest.raises(ValueError, match="`x`"):
        wasserstein1_exact(np.zeros((0, 2)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="same sample size"):
        wasserstein1_exact(np.zeros((3, 2)), np.zeros((3, 3)))
