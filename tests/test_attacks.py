"""FGSM and PGD against exact boundary distances of linear models, and against margin certificates."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tflip.attacks import fgsm, pgd, robust_error
from tflip.layers import BjorckDense, GroupSort, LInfProjectedDense, MaxMin
from tflip.lipschitz import lipschitz_upper_bound
from tflip.metrics import certified_accuracy, certified_radius, prediction_margins

NORMS = [2, "inf"]
DUAL = {2: 2, "inf": 1}  # the boundary distance of a hyperplane u.x + c = 0 is |u.x + c| / ||u||_dual


def linear_model(kernel, bias):
    kernel, bias = np.asarray(kernel, "float32"), np.asarray(bias, "float32")
    model = keras.Sequential([keras.Input((kernel.shape[0],)), keras.layers.Dense(kernel.shape[1])])
    model.layers[0].kernel.assign(kernel)
    model.layers[0].bias.assign(bias)
    return model


def exact_distances(kernel, bias, x, labels, norm):
    """Signed distance (in `norm`) to the nearest decision boundary of the linear classifier `x @ W + b`."""
    kernel, bias, x = (np.asarray(a, np.float64) for a in (kernel, bias, x))
    logits = x @ kernel + bias
    out = []
    for row, label in zip(logits, labels):
        distances = [
            (row[label] - row[j]) / np.linalg.norm(kernel[:, label] - kernel[:, j], DUAL[norm])
            for j in range(kernel.shape[1])
            if j != label
        ]
        out.append(min(distances))  # negative if misclassified
    return np.array(out)


def attack(name, model, x, labels, epsilon, norm, **kwargs):
    if name == "fgsm":
        return fgsm(model, x, labels, epsilon, norm=norm, **kwargs)
    return pgd(model, x, labels, epsilon, step_size=epsilon / 4, steps=20, norm=norm, **kwargs)


def is_wrong(model, x, labels):
    return np.asarray(prediction_margins(model(x), labels)) <= 0


@pytest.mark.parametrize("name", ["fgsm", "pgd"])
@pytest.mark.parametrize("norm", NORMS)
def test_two_class_linear_broken_exactly_beyond_the_boundary_distance(rng, name, norm):
    # For two classes the CW gradient is the constant normal of the boundary, so both attacks reach the
    # closest boundary point: a sample falls iff its distance is below epsilon.
    kernel, bias = rng.normal(size=(6, 2)), rng.normal(size=2)
    x = rng.normal(size=(200, 6)).astype("float32")
    labels = rng.integers(0, 2, size=200)
    distance = exact_distances(kernel, bias, x, labels, norm)
    epsilon = float(np.median(np.abs(distance)))
    clear = np.abs(distance - epsilon) > 0.01 * epsilon  # leave out float32 rounding ties
    model = linear_model(kernel, bias)
    x_adv = attack(name, model, x, labels, epsilon, norm)
    np.testing.assert_array_equal(is_wrong(model, x_adv, labels)[clear], (distance < epsilon)[clear])
    assert clear.sum() > 180


@pytest.mark.parametrize("name", ["fgsm", "pgd"])
@pytest.mark.parametrize("norm", NORMS)
def test_multi_class_linear_never_broken_below_the_boundary_distance(rng, name, norm):
    kernel, bias = rng.normal(size=(5, 4)), rng.normal(size=4)
    x = rng.normal(size=(200, 5)).astype("float32")
    labels = rng.integers(0, 4, size=200)
    distance = exact_distances(kernel, bias, x, labels, norm)
    model = linear_model(kernel, bias)
    epsilon = float(np.median(distance[distance > 0]))
    wrong = is_wrong(model, attack(name, model, x, labels, epsilon, norm), labels)
    assert not np.any(wrong[distance > 1.001 * epsilon])
    assert np.all(wrong[distance <= 0])  # misclassified points stay misclassified
    assert np.any(wrong[(distance > 0) & (distance < epsilon)])
    # The margin certificate with the model's Lipschitz bound never claims more than the exact distance.
    radius = np.asarray(
        certified_radius(prediction_margins(model(x), labels), lipschitz_upper_bound(model, norm), norm)
    )
    assert np.all(radius <= np.maximum(distance, 0) * (1 + 1e-5))


@pytest.mark.parametrize("norm", NORMS)
def test_certificate_is_tight_for_the_identity_logits(rng, norm):
    # f(x) = x in R^2: L = 1 in both norms, and the boundary x_1 = x_2 lies exactly at the certified radius,
    # so the sqrt(2) (L2) and 2 (L-infinity) factors cannot be improved: PGD breaks every point just beyond it.
    shift = rng.normal(size=(50, 1))
    x = np.concatenate([shift + 0.5, shift - 0.5], axis=1).astype("float32")  # margin 1 everywhere
    labels = np.zeros(50, int)
    model = linear_model(np.eye(2), np.zeros(2))
    radius = np.asarray(certified_radius(prediction_margins(model(x), labels), 1.0, norm))
    expected = 1 / np.sqrt(2) if norm == 2 else 0.5
    np.testing.assert_allclose(radius, expected, rtol=1e-6)
    for factor, broken in ((1.01, True), (0.99, False)):
        epsilon = factor * expected
        # In L2 the iterates turn towards the boundary normal by a factor ~ 1 / (1 + step / epsilon) per step.
        x_adv = pgd(model, x, labels, epsilon, epsilon / 4, 40, norm)
        assert np.all(is_wrong(model, x_adv, labels) == broken)


def lipschitz_network(norm):
    if norm == 2:
        layers = [BjorckDense(16), GroupSort(2), BjorckDense(16), GroupSort(2), BjorckDense(3)]
    else:
        layers = [LInfProjectedDense(16), MaxMin(), LInfProjectedDense(16), MaxMin(), LInfProjectedDense(3)]
    return keras.Sequential([keras.Input((8,)), *layers])


@pytest.mark.parametrize("norm", NORMS)
def test_no_certified_point_is_broken(rng, norm):
    model = lipschitz_network(norm)
    lipschitz = lipschitz_upper_bound(model, norm)
    x = rng.normal(size=(256, 8)).astype("float32")
    labels = np.argmax(model(x), axis=1)  # the network's own predictions: every point starts correct
    labels[::4] = rng.integers(0, 3, size=64)  # and some misclassified ones
    radius = np.asarray(certified_radius(prediction_margins(model(x), labels), lipschitz, norm))
    epsilon = float(np.median(radius[radius > 0]))
    certified = radius > epsilon
    assert certified.sum() > 50  # the claim below is about many points
    compiled_pgd = tf.function(lambda x, y: pgd(model, x, y, epsilon, epsilon / 4, 20, norm))
    for x_adv in (fgsm(model, x, labels, epsilon, norm), compiled_pgd(x, labels)):
        broken = is_wrong(model, x_adv, labels)
        assert not np.any(broken[certified])
        assert np.any(broken[(radius > 0) & ~certified])  # the attack does break uncertified points
    # Hence the empirical robust error never exceeds the certified error bound.
    assert np.mean(broken) <= 1.0 - float(certified_accuracy(model(x), labels, lipschitz, epsilon, norm))


@pytest.mark.parametrize("norm", NORMS)
def test_adversarial_points_stay_in_the_ball_and_box(rng, norm):
    model = lipschitz_network(norm)
    x = rng.uniform(0.0, 1.0, size=(64, 8)).astype("float32")
    labels = rng.integers(0, 3, size=64)
    for x_adv in (
        fgsm(model, x, labels, 0.3, norm=norm, clip=(0.0, 1.0)),
        pgd(model, x, labels, 0.3, 0.1, 5, norm=norm, clip=(0.0, 1.0), seed=3),
    ):
        assert x_adv.dtype == tf.float32 and x_adv.shape == x.shape
        delta = np.asarray(x_adv) - x
        sizes = np.abs(delta).max(axis=1) if norm == "inf" else np.linalg.norm(delta, axis=1)
        assert sizes.max() <= 0.3 * (1 + 1e-5)
        assert sizes.max() > 0.2  # the attack moves
        assert np.asarray(x_adv).min() >= 0.0 and np.asarray(x_adv).max() <= 1.0


def test_image_shaped_inputs_and_label_layouts(rng):
    # Per-sample L2 norms run over all non-batch axes; one-hot labels give the same attack.
    model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(), BjorckDense(3)])
    x = rng.normal(size=(10, 4, 4, 1))  # float64 on purpose: cast to float32
    labels = rng.integers(0, 3, size=10)
    x_adv = pgd(model, x, labels, 0.5, 0.2, 5, norm=2, seed=1)
    assert x_adv.dtype == tf.float32
    np.testing.assert_array_less(np.linalg.norm((np.asarray(x_adv) - x).reshape(10, -1), axis=1), 0.5 * (1 + 1e-5))
    np.testing.assert_array_equal(x_adv, pgd(model, x, np.eye(3)[labels], 0.5, 0.2, 5, norm=2, seed=1))
    np.testing.assert_array_equal(fgsm(model, x, labels, 0.5, 2), fgsm(model, x, labels[:, None], 0.5, 2))


def test_pgd_under_tf_function_matches_eager(rng):
    # Plain Dense layers: this checks the attack's graph, not the (slow to trace) constrained layers.
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16), GroupSort(2), keras.layers.Dense(3)])
    x = rng.normal(size=(16, 8)).astype("float32")
    labels = rng.integers(0, 3, size=16)
    eager = pgd(model, x, labels, 0.4, 0.1, 8, norm=2, seed=5)
    compiled = tf.function(lambda x, y: pgd(model, x, y, 0.4, 0.1, 8, norm=2, seed=5))
    np.testing.assert_allclose(compiled(tf.constant(x), tf.constant(labels)), eager, atol=1e-5)
    # Different seeds give different random starts; random_start=False is deterministic without seed.
    other_seed = pgd(model, x, labels, 0.4, 0.1, 1, norm=2, seed=6)
    assert not np.allclose(other_seed, pgd(model, x, labels, 0.4, 0.1, 1, norm=2, seed=5))
    np.testing.assert_array_equal(
        pgd(model, x, labels, 0.4, 0.1, 3, random_start=False, seed=1),
        pgd(model, x, labels, 0.4, 0.1, 3, random_start=False, seed=2),
    )


def test_robust_error_of_a_linear_classifier(rng):
    # FGSM is exact on a two-class linear model: the error is the fraction within distance epsilon.
    kernel, bias = rng.normal(size=(3, 2)), rng.normal(size=2)
    x = rng.normal(size=(100, 3)).astype("float32")
    labels = rng.integers(0, 2, size=100)
    distance = exact_distances(kernel, bias, x, labels, "inf")
    epsilon = 0.2
    assert np.all(np.abs(distance - epsilon) > 1e-4) and np.all(np.abs(distance) > 1e-4)
    model = linear_model(kernel, bias)
    expected = np.mean(distance < epsilon)
    assert robust_error(model, x, labels, "fgsm", epsilon=epsilon) == pytest.approx(expected)
    assert robust_error(model, x, labels, "fgsm", batch_size=7, epsilon=epsilon) == pytest.approx(expected)
    assert robust_error(model, x, labels, "pgd", batch_size=64, epsilon=epsilon, step_size=0.05, steps=10) == (
        pytest.approx(expected)
    )
    # A callable attack that does nothing measures the clean error.
    assert robust_error(model, x, labels, lambda m, x, y: x) == pytest.approx(np.mean(distance < 0))


def test_bad_arguments(rng):
    model = lipschitz_network(2)
    x = rng.normal(size=(4, 8)).astype("float32")
    labels = [0, 1, 2, 0]
    for epsilon in (-0.1, float("inf"), "0.1", None):
        with pytest.raises(ValueError, match="`epsilon`"):
            fgsm(model, x, labels, epsilon)
        with pytest.raises(ValueError, match="`epsilon`"):
            pgd(model, x, labels, epsilon, 0.1, 5)
    for norm in (1, "l2", 3):
        with pytest.raises(ValueError, match="`norm`"):
            fgsm(model, x, labels, 0.1, norm=norm)
        with pytest.raises(ValueError, match="`norm`"):
            pgd(model, x, labels, 0.1, 0.1, 5, norm=norm)
    for clip in ((1.0, 0.0), (0.0,), "ab", (0.0, float("inf")), 1.0, (0.0, 0.0)):
        with pytest.raises(ValueError, match="`clip`"):
            fgsm(model, x, labels, 0.1, clip=clip)
        with pytest.raises(ValueError, match="`clip`"):
            pgd(model, x, labels, 0.1, 0.1, 5, clip=clip)
    for step_size in (0.0, -1.0):
        with pytest.raises(ValueError, match="`step_size`"):
            pgd(model, x, labels, 0.1, step_size, 5)
    for steps in (0, 2.5, True):
        with pytest.raises(ValueError, match="`steps`"):
            pgd(model, x, labels, 0.1, 0.1, steps)
    for random_start in (1.5, -0.1, "yes"):
        with pytest.raises(ValueError, match="`random_start`"):
            pgd(model, x, labels, 0.1, 0.1, 5, random_start=random_start)
    for seed in (-1, 1.5):
        with pytest.raises(ValueError, match="`seed`"):
            pgd(model, x, labels, 0.1, 0.1, 5, seed=seed)
    with pytest.raises(ValueError, match="`x`"):
        fgsm(model, x[0], labels[0], 0.1)
    with pytest.raises(ValueError, match="`labels`"):
        fgsm(model, x, labels[:3], 0.1)
    with pytest.raises(ValueError, match="`labels`"):
        pgd(model, x, [0, 1, 2, 3], 0.1, 0.1, 5)
    with pytest.raises(ValueError, match="`attack`"):
        robust_error(model, x, labels, "cw", epsilon=0.1)
    with pytest.raises(ValueError, match="`batch_size`"):
        robust_error(model, x, labels, "fgsm", batch_size=0, epsilon=0.1)
    with pytest.raises(ValueError, match="`x`"):
        robust_error(model, x[:0], labels[:0], "fgsm", epsilon=0.1)
    with pytest.raises(ValueError, match="`labels`"):
        robust_error(model, x, labels[:3], "fgsm", epsilon=0.1)
    with pytest.raises(ValueError, match="`labels`"):
        robust_error(model, x, [0, 1, 2, 5], "fgsm", epsilon=0.1)
    with pytest.raises(ValueError, match="`epsilon`"):  # raised while the compiled attack is traced
        robust_error(model, x, labels, "pgd", epsilon=-0.1, step_size=0.1, steps=2)
