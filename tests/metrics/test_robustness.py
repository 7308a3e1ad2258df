"""Margins and margin certificates against hand-computed values and exact boundary distances."""

import math

import keras
import numpy as np
import pytest

from tflip.metrics import CertifiedAccuracy, certified_accuracy, certified_radius, prediction_margins


def linear_model(kernel):
    """`x -> x @ kernel` without bias, so `lipschitz_upper_bound` is the exact operator norm."""
    kernel = np.asarray(kernel, "float32")
    model = keras.Sequential([keras.Input((kernel.shape[0],)), keras.layers.Dense(kernel.shape[1], use_bias=False)])
    model.layers[0].kernel.assign(kernel)
    return model


def test_margins_hand_computed():
    logits = [[3.0, 1.0, 2.5], [0.0, 2.0, 1.0], [1.0, 1.0, 0.0], [-1.0, -3.0, -2.0]]
    labels = [0, 0, 1, 2]
    expected = [0.5, -2.0, 0.0, -1.0]  # a tie is a zero margin
    np.testing.assert_allclose(prediction_margins(logits, labels), expected)
    np.testing.assert_allclose(prediction_margins(logits, np.eye(3)[labels]), expected)
    np.testing.assert_allclose(prediction_margins(logits, np.array(labels)[:, None]), expected)


def test_radius_formulas():
    margins = [1.0, 0.3, 0.0, -2.0]
    np.testing.assert_allclose(
        certified_radius(margins, 2.0, norm=2), [1 / (2 * math.sqrt(2)), 0.3 / (2 * math.sqrt(2)), 0, 0], rtol=1e-6
    )
    np.testing.assert_allclose(certified_radius(margins, 2.0, norm="inf"), [0.25, 0.075, 0, 0], rtol=1e-6)
    np.testing.assert_allclose(certified_radius(margins, 2.0, norm=np.inf), [0.25, 0.075, 0, 0], rtol=1e-6)
    # An L2-input constant measured into the logits' L-infinity norm (each logit L-Lipschitz): M / (2L).
    np.testing.assert_allclose(
        certified_radius(margins, 2.0, norm=2, output_norm="inf"), [0.25, 0.075, 0, 0], rtol=1e-6
    )


def test_radius_is_the_exact_boundary_distance_for_the_identity():
    # f(x) = x in R^2 is 1-Lipschitz in L2 and L-infinity, and the certificate is tight: the nearest point of
    # the boundary x_1 = x_2 from (a, b) is ((a + b) / 2, (a + b) / 2), at L2 distance (a - b) / sqrt(2) and
    # L-infinity distance (a - b) / 2.
    x = np.array([[2.0, 0.5], [0.3, -0.1]], "float32")
    margins = prediction_margins(x, [0, 0])
    midpoint = x.mean(axis=1, keepdims=True)
    np.testing.assert_allclose(certified_radius(margins, 1.0, 2), np.linalg.norm(x - midpoint, axis=1), rtol=1e-6)
    np.testing.assert_allclose(certified_radius(margins, 1.0, "inf"), np.abs(x - midpoint).max(axis=1), rtol=1e-6)


def test_lipschitz_from_a_model():
    # Kernel [[1, 1], [1, -1]] (Keras layout): spectral norm sqrt(2), largest column L1 norm 2.
    model = linear_model([[1.0, 1.0], [1.0, -1.0]])
    np.testing.assert_allclose(certified_radius([1.0], model, norm=2), [1.0 / 2.0], rtol=1e-6)
    np.testing.assert_allclose(certified_radius([1.0], model, norm="inf"), [1.0 / 4.0], rtol=1e-6)
    logits = [[1.0, 0.0]]
    assert float(certified_accuracy(logits, [0], model, epsilon=0.49, norm=2)) == 1.0
    assert float(certified_accuracy(logits, [0], model, epsilon=0.51, norm=2)) == 0.0


def test_certified_accuracy_hand_computed():
    logits = [[2.0, 0.0], [0.0, 0.5], [1.0, 0.0], [0.0, 0.0]]  # margins 2, 0.5, 1, 0 (tie: an error)
    labels = [0, 1, 0, 0]
    assert float(certified_accuracy(logits, labels, 1.0, 0.0, norm="inf")) == 0.75  # clean accuracy
    np.testing.assert_allclose(
        certified_accuracy(logits, labels, 1.0, [0.0, 0.2, 0.3, 0.6, 1.0], norm="inf"), [0.75, 0.75, 0.5, 0.25, 0.0]
    )
    # A margin exactly at the threshold 2 L epsilon = 0.5 protects only the open ball: not certified.
    assert float(certified_accuracy([[0.5, 0.0]], [0], 1.0, 0.25, norm="inf")) == 0.0
    # L2 with L = 0.5: threshold sqrt(2) * 0.5 * epsilon; margin 1 is certified up to epsilon sqrt(2).
    assert float(certified_accuracy([[1.0, 0.0]], [0], 0.5, 1.41, norm=2)) == 1.0
    assert float(certified_accuracy([[1.0, 0.0]], [0], 0.5, 1.42, norm=2)) == 0.0


def test_metric_accumulates_weighted_batches(rng):
    logits = rng.normal(size=(30, 4)).astype("float32")
    labels = rng.integers(0, 4, size=30)
    weights = rng.uniform(size=30).astype("float32")
    metric = CertifiedAccuracy(lipschitz=0.5, epsilon=0.2, norm=2)
    metric.update_state(labels[:13], logits[:13], sample_weight=weights[:13])
    metric.update_state(np.eye(4)[labels[13:]], logits[13:], sample_weight=weights[13:])
    certified = np.asarray(prediction_margins(logits, labels)) > math.sqrt(2) * 0.5 * 0.2
    assert 0 < certified.sum() < 30  # the test data exercise both outcomes
    assert float(metric.result()) == pytest.approx(np.sum(weights * certified) / np.sum(weights), rel=1e-6)
    metric.reset_state()
    assert float(metric.result()) == 0.0
    metric.update_state(labels, logits)
    assert float(metric.result()) == pytest.approx(certified.mean(), rel=1e-6)


def test_metric_in_evaluate_and_config(rng):
    x = rng.normal(size=(40, 2)).astype("float32")
    labels = rng.integers(0, 2, size=40)
    model = linear_model(np.eye(2))
    metric = CertifiedAccuracy(1.0, 0.1, norm="inf", name="cert")
    model.compile(loss="sparse_categorical_crossentropy", metrics=[metric])
    result = model.evaluate(x, labels, batch_size=16, verbose=0, return_dict=True)
    assert result["cert"] == pytest.approx(float(certified_accuracy(x, labels, 1.0, 0.1, norm="inf")), abs=1e-6)
    config = metric.get_config()
    assert config == {
        "name": "cert",
        "dtype": "float32",
        "lipschitz": 1.0,
        "epsilon": 0.1,
        "norm": "inf",
        "output_norm": "inf",
    }
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(metric))
    assert isinstance(restored, CertifiedAccuracy) and restored.get_config() == config


def test_bad_arguments():
    logits, labels = [[1.0, 0.0]], [0]
    for lipschitz in (0.0, -1.0, float("inf"), "1", None):
        with pytest.raises(ValueError, match="`lipschitz`"):
            certified_radius([1.0], lipschitz)
        with pytest.raises(ValueError, match="`lipschitz`"):
            certified_accuracy(logits, labels, lipschitz, 0.1)
        with pytest.raises(ValueError, match="`lipschitz`"):
            CertifiedAccuracy(lipschitz, 0.1)
    with pytest.raises(ValueError, match="`lipschitz`"):
        CertifiedAccuracy(linear_model(np.eye(2)), 0.1)
    for norm in (1, 3, "l2", None):
        with pytest.raises(ValueError, match="`norm`"):
            certified_radius([1.0], 1.0, norm=norm)
        with pytest.raises(ValueError, match="`norm`"):
            CertifiedAccuracy(1.0, 0.1, norm=norm)
    with pytest.raises(ValueError, match="`output_norm`"):
        certified_radius([1.0], 1.0, output_norm=1)
    with pytest.raises(ValueError, match="`output_norm`"):
        certified_radius([1.0], linear_model(np.eye(2)), norm=2, output_norm="inf")
    for epsilon in (-0.1, float("nan"), "0.1", [[0.1]], [], [0.1, -0.2]):
        with pytest.raises(ValueError, match="`epsilon`"):
            certified_accuracy(logits, labels, 1.0, epsilon)
    with pytest.raises(ValueError, match="`epsilon`"):
        CertifiedAccuracy(1.0, -0.1)
    with pytest.raises(ValueError, match="`logits`"):
        prediction_margins([1.0, 0.0], labels)
    with pytest.raises(ValueError, match="`labels`"):
        prediction_margins(logits, [2])
    with pytest.raises(ValueError, match="`labels`"):
        prediction_margins(logits, [0, 1])
