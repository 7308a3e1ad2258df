"""Toy data against Gulrajani's definitions and Anil's known W1 = 1."""

import numpy as np
import pytest

from tflip import datasets
from tflip.metrics import wasserstein1_exact


def nearest(points, centres):
    distances = np.linalg.norm(points[:, None, :] - centres[None], axis=2)
    return distances.argmin(1), distances.min(1)


def test_eight_gaussians_centres_noise_and_scale():
    points = datasets.eight_gaussians(20000, seed=0)
    s = 1 / np.sqrt(2)
    centres = 2 * np.array([(1, 0), (-1, 0), (0, 1), (0, -1), (s, s), (s, -s), (-s, s), (-s, -s)]) / 1.414
    label, distance = nearest(points, centres)
    assert points.dtype == np.float32 and points.shape == (20000, 2)
    assert np.bincount(label, minlength=8).min() > 2200  # all eight modes, about equally
    residual = points - centres[label]
    np.testing.assert_allclose(residual.std(0), 0.02 / 1.414, rtol=0.05)


def test_twenty_five_gaussians_grid():
    points = datasets.twenty_five_gaussians(50000, seed=0)
    grid = 2 * np.array([(x, y) for x in range(-2, 3) for y in range(-2, 3)]) / 2.828
    label, _ = nearest(points, grid)
    assert len(np.unique(label)) == 25
    np.testing.assert_allclose((points - grid[label]).std(0), 0.05 / 2.828, rtol=0.05)


def test_swiss_roll_matches_scikit_learn_columns():
    from sklearn.datasets import make_swiss_roll

    points = datasets.swiss_roll(1000, seed=np.random.default_rng(3))
    reference = make_swiss_roll(1000, noise=0.25, random_state=int(np.random.default_rng(3).integers(2**31 - 1)))[0]
    np.testing.assert_allclose(points, reference[:, [0, 2]] / 7.5, rtol=1e-6)
    assert datasets.toy("swiss_roll", 10, seed=1).shape == (10, 2)


def test_samplers_are_reproducible():
    np.testing.assert_array_equal(datasets.eight_gaussians(50, seed=4), datasets.eight_gaussians(50, seed=4))
    assert not np.array_equal(datasets.eight_gaussians(50, seed=4), datasets.eight_gaussians(50, seed=5))


@pytest.mark.parametrize(
    "make",
    [
        lambda: datasets.absolute_value(1000, seed=0),
        lambda: datasets.three_cones(1000, seed=0),
        lambda: datasets.circular_cone(1000, dimension=16, seed=0),
    ],
    ids=["absolute_value", "three_cones", "circular_cone"],
)
def test_anil_pairs_have_w1_one(make):
    p, q = make()
    assert p.shape == q.shape and p.dtype == np.float32
    assert wasserstein1_exact(p, q) == pytest.approx(1.0, abs=0.01)


def test_anil_pair_supports():
    p, q = datasets.circular_cone(500, dimension=8, seed=0)
    np.testing.assert_array_equal(p, 0.0)
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0, rtol=1e-6)
    p, q = datasets.three_cones(3000, seed=1)
    assert {tuple(x) for x in p} == {(-2.0, 0.0), (0.0, 0.0), (2.0, 0.0)}
    _, distance = nearest(q, datasets.CONE_CENTRES)
    np.testing.assert_allclose(distance, 1.0, rtol=1e-5)
    p, q = datasets.absolute_value(100, seed=0)
    assert set(np.unique(q)) == {-1.0, 1.0} and np.all(p == 0)


def test_digits_scaled_to_minus_one_one():
    images, labels = datasets.digits()
    assert images.shape == (1797, 8, 8, 1) and labels.shape == (1797,)
    assert images.min() == -1.0 and images.max() == 1.0
    assert datasets.digits((64,))[0].shape == (1797, 64)


@pytest.mark.parametrize(
    "make, argument",
    [
        (lambda: datasets.eight_gaussians(0), "n"),
        (lambda: datasets.circular_cone(10, dimension=0), "dimension"),
        (lambda: datasets.toy("moons", 10), "name"),
        (lambda: datasets.digits((8, 8)), "image_shape"),
    ],
)
def test_bad_arguments(make, argument):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        make()
