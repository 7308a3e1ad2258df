"""Pairwise last-layer certificate: exact for linear models, sound for Lipschitz backbones, >= the generic one."""

import keras
import numpy as np
import pytest

from tflip.metrics import certified_radius, pairwise_certified_accuracy, pairwise_certified_radius, prediction_margins


def _linear_problem(rng, features=6, classes=4, batch=50):
    kernel = rng.normal(size=(features, classes)).astype("float32")
    bias = rng.normal(size=classes).astype("float32")
    x = rng.normal(size=(batch, features)).astype("float32")
    labels = rng.integers(0, classes, size=batch)
    return kernel, bias, x, labels


def test_hand_computed_values():
    kernel = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]  # w_0 = e_1, w_1 = e_2, w_2 = 0
    # Gaps 2 (norm sqrt 2) and 1.5 (norm 1): min(sqrt 2, 1.5).
    np.testing.assert_allclose(pairwise_certified_radius([[2.0, 0.0, 0.5]], [0], kernel, 1.0), [np.sqrt(2)], rtol=1e-6)
    # Backbone constant 2 halves it; a misclassified point gets 0.
    np.testing.assert_allclose(
        pairwise_certified_radius([[2.0, 0.0, 0.5], [0.0, 1.0, 0.0]], [0, 0], kernel, 2.0), [np.sqrt(2) / 2, 0.0],
        rtol=1e-6)


def test_exact_distance_to_the_decision_boundary_of_a_linear_model(rng):
    kernel, bias, x, labels = _linear_problem(rng)
    logits = x @ kernel + bias
    radius = pairwise_certified_radius(logits, labels, kernel, 1.0).numpy()
    for point, label, r, row in zip(x.astype(np.float64), labels, radius, logits):
        if r == 0.0:
            assert np.argmax(row) != label or np.sum(row == row.max()) > 1
            continue
        # Closed form: the half-space {f_j >= f_y} is at distance (f_y - f_j) / ||w_y - w_j||.
        distances = [(row[label] - row[j]) / np.linalg.norm(kernel[:, label] - kernel[:, j])
                     for j in range(kernel.shape[1]) if j != label]
        assert r == pytest.approx(min(distances), rel=1e-5)
        # Tight: just beyond the radius towards the nearest boundary the prediction changes...
        j = [k for k in range(kernel.shape[1]) if k != label][int(np.argmin(distances))]
        direction = (kernel[:, j] - kernel[:, label]).astype(np.float64)
        direction /= np.linalg.norm(direction)
        assert np.argmax((point + 1.001 * r * direction) @ kernel + bias) != label
        # ...and no perturbation inside it does (random directions and the projections onto every boundary).
        deltas = rng.normal(size=(400, x.shape[1]))
        deltas = 0.999 * r * deltas / np.linalg.norm(deltas, axis=1, keepdims=True)
        for k in range(kernel.shape[1]):
            if k != label:
                towards = kernel[:, k] - kernel[:, label]
                deltas = np.vstack([deltas, 0.999 * r * towards / np.linalg.norm(towards)])
        assert np.all(np.argmax((point + deltas) @ kernel + bias, axis=1) == label)


def test_sound_for_a_lipschitz_backbone(rng):
    # g(x) = tanh(A x) is ||A||_2-Lipschitz; f = W^T g + b.
    a = rng.normal(size=(8, 5)).astype("float32")
    backbone_lipschitz = float(np.linalg.norm(a, 2))
    kernel, bias, _, _ = _linear_problem(rng, features=8, classes=3)
    x = rng.normal(size=(40, 5)).astype("float32")

    def f(points):
        return np.tanh(points @ a.T) @ kernel + bias

    logits = f(x)
    labels = np.argmax(logits, axis=1)
    radius = pairwise_certified_radius(logits, labels, kernel, backbone_lipschitz).numpy()
    assert np.all(radius > 0)
    for point, label, r in zip(x, labels, radius):
        deltas = rng.normal(size=(500, 5))
        deltas *= r * rng.uniform(0.5, 0.999, size=(500, 1)) / np.linalg.norm(deltas, axis=1, keepdims=True)
        assert np.all(np.argmax(f(point + deltas), axis=1) == label)


def test_never_below_the_generic_certificate(rng):
    kernel, bias, x, labels = _linear_problem(rng)
    logits = x @ kernel + bias
    backbone_lipschitz = 1.7
    pairwise = pairwise_certified_radius(logits, labels, kernel, backbone_lipschitz).numpy()
    generic = certified_radius(prediction_margins(logits, labels),
                               backbone_lipschitz * np.linalg.norm(kernel, 2)).numpy()
    assert np.all(pairwise >= generic * (1 - 1e-6))
    positive = generic > 0
    assert np.all(pairwise[positive] > 1.2 * generic[positive])  # a random W is far from orthogonal
    # Orthonormal columns: ||w_y - w_j|| = sqrt(2) = sqrt(2) ||W||, and the nearest pair is the top rival.
    q, _ = np.linalg.qr(rng.normal(size=(6, 4)))
    logits = x @ q + bias
    np.testing.assert_allclose(pairwise_certified_radius(logits, labels, q, 1.0),
                               certified_radius(prediction_margins(logits, labels), 1.0), rtol=1e-5, atol=1e-7)


def test_accepts_a_dense_layer_and_handles_identical_columns(rng):
    layer = keras.layers.Dense(3)
    x = rng.normal(size=(10, 4)).astype("float32")
    logits = layer(x).numpy()
    labels = np.argmax(logits, axis=1)
    np.testing.assert_array_equal(pairwise_certified_radius(logits, labels, layer, 1.0),
                                  pairwise_certified_radius(logits, labels, layer.kernel.numpy(), 1.0))
    # Columns 0 and 1 equal: their gap is the constant bias difference (no limit if positive, 0 if not).
    kernel = np.array([[1.0, 1.0, -1.0]], "float32")
    logits = [[1.0, 0.5, -1.0], [0.5, 1.0, -1.0], [0.3, 0.1, 0.3]]
    np.testing.assert_allclose(pairwise_certified_radius(logits, [0, 0, 0], kernel, 1.0), [1.0, 0.0, 0.0])
    assert np.isinf(pairwise_certified_radius([[1.0, 0.0]], [0], np.ones((2, 2), "float32"), 1.0)[0])


def test_accuracy_counts_radii_beyond_epsilon(rng):
    kernel, bias, x, labels = _linear_problem(rng)
    logits = x @ kernel + bias
    radius = pairwise_certified_radius(logits, labels, kernel, 1.0).numpy()
    epsilons = [0.0, 0.1, 0.5]
    expected = [np.mean(radius > e) for e in epsilons]
    np.testing.assert_allclose(pairwise_certified_accuracy(logits, labels, kernel, 1.0, epsilons), expected)
    clean = np.mean(np.argmax(logits, axis=1) == labels)
    assert float(pairwise_certified_accuracy(logits, labels, kernel, 1.0, 0.0)) == pytest.approx(clean)


def test_bad_arguments():
    logits, kernel = [[1.0, 0.0]], np.eye(2, dtype="float32")
    for value in (0.0, -1.0, float("inf")):
        with pytest.raises(ValueError, match="`backbone_lipschitz`"):
            pairwise_certified_radius(logits, [0], kernel, value)
    with pytest.raises(ValueError, match="`last_kernel`"):
        pairwise_certified_radius(logits, [0], np.eye(3, dtype="float32"), 1.0)
    with pytest.raises(ValueError, match="`last_kernel`"):
        pairwise_certified_radius(logits, [0], keras.layers.Flatten(), 1.0)
    with pytest.raises(ValueError, match="`epsilon`"):
        pairwise_certified_accuracy(logits, [0], kernel, 1.0, -0.1)
