"""Multi-class hinge margin loss (Anil et al. eq. 5): hand values, a loop reference, Keras use."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tflip.losses import MulticlassHingeMargin, multiclass_hinge_margin


def reference_loss(logits, labels, margin, aggregate):
    """Eq. 5 written as the plain double loop."""
    out = []
    for row, label in zip(np.asarray(logits, np.float64), labels):
        terms = [max(0.0, margin - (row[label] - row[j])) for j in range(len(row)) if j != label]
        out.append(sum(terms) if aggregate == "sum" else max(terms))
    return np.array(out)


def test_hand_computed_values():
    logits = [[1.0, 0.5, -1.0], [0.0, 2.0, 1.5], [3.0, 0.0, 0.0]]
    labels = [0, 1, 0]
    # Row 0: gaps 0.5 and 2 give (1 - 0.5) + 0 = 0.5. Row 1: gaps 2 and 0.5 give 0 + 0.5.
    # Row 2: gaps 3 and 3 exceed the margin: 0.
    np.testing.assert_allclose(multiclass_hinge_margin(labels, logits, margin=1.0), [0.5, 0.5, 0.0], atol=1e-7)
    # Margin 2.5: row 0: 2 + 0.5; row 1: 0.5 + 2; row 2: 0.
    np.testing.assert_allclose(multiclass_hinge_margin(labels, logits, margin=2.5), [2.5, 2.5, 0.0], atol=1e-6)
    np.testing.assert_allclose(
        multiclass_hinge_margin(labels, logits, margin=2.5, aggregate="max"), [2.0, 2.0, 0.0], atol=1e-6
    )


@pytest.mark.parametrize("aggregate", ["sum", "max"])
def test_matches_loop_reference(rng, aggregate):
    logits = rng.normal(size=(40, 5)).astype("float32")
    labels = rng.integers(0, 5, size=40)
    expected = reference_loss(logits, labels, 0.7, aggregate)
    np.testing.assert_allclose(multiclass_hinge_margin(labels, logits, 0.7, aggregate), expected, rtol=1e-6, atol=1e-6)


def test_integer_column_float_and_one_hot_labels_agree(rng):
    logits = rng.normal(size=(12, 4)).astype("float32")
    labels = rng.integers(0, 4, size=12)
    expected = multiclass_hinge_margin(labels, logits, 0.5).numpy()
    for layout in (labels[:, None], labels.astype("float32"), np.eye(4, dtype="float32")[labels]):
        np.testing.assert_array_equal(multiclass_hinge_margin(layout, logits, 0.5), expected)


def test_gradient_pushes_the_violating_pair_apart():
    logits = tf.constant([[1.0, 0.5, -1.0]])
    with tf.GradientTape() as tape:
        tape.watch(logits)
        loss = multiclass_hinge_margin([0], logits, margin=1.0)
    # Only class 1 violates the margin: d/df_0 = -1, d/df_1 = +1, class 2 is inactive.
    np.testing.assert_allclose(tape.gradient(loss, logits), [[-1.0, 1.0, 0.0]])


def test_zero_exactly_beyond_the_margin():
    logits = [[1.0, 0.0], [1.0, 0.0]]
    np.testing.assert_allclose(multiclass_hinge_margin([0, 0], logits, margin=1.0), [0.0, 0.0])
    assert float(multiclass_hinge_margin([0], [[1.0, 0.01]], margin=1.0)[0]) > 0.0


def test_keras_loss_reduction_and_sample_weight(rng):
    logits = rng.normal(size=(6, 3)).astype("float32")
    labels = rng.integers(0, 3, size=6)
    weights = rng.uniform(size=6).astype("float32")
    per_sample = reference_loss(logits, labels, 0.3, "sum")
    loss = MulticlassHingeMargin(margin=0.3)
    assert float(loss(labels, logits)) == pytest.approx(per_sample.mean(), rel=1e-6)
    assert float(loss(labels, logits, sample_weight=weights)) == pytest.approx(
        np.sum(per_sample * weights) / 6, rel=1e-6
    )
    summed = MulticlassHingeMargin(margin=0.3, reduction="sum")
    assert float(summed(labels, logits)) == pytest.approx(per_sample.sum(), rel=1e-6)


def test_config_round_trip():
    loss = MulticlassHingeMargin(margin=0.3, aggregate="max", reduction="sum", name="hinge")
    config = loss.get_config()
    assert config == {"name": "hinge", "reduction": "sum", "margin": 0.3, "aggregate": "max", "dtype": "float32"}
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert isinstance(restored, MulticlassHingeMargin)
    assert restored.get_config() == config
    assert keras.saving.get_registered_name(MulticlassHingeMargin) == "tflip>MulticlassHingeMargin"


@pytest.mark.parametrize("one_hot", [False, True])
def test_trains_in_fit(rng, one_hot):
    x = rng.normal(size=(64, 4)).astype("float32")
    labels = (x[:, 0] > 0).astype("int32") + (x[:, 1] > 0).astype("int32")
    y = np.eye(3, dtype="float32")[labels] if one_hot else labels
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.compile(keras.optimizers.SGD(0.1), loss=MulticlassHingeMargin(margin=0.5))
    before = float(model.evaluate(x, y, verbose=0))
    expected = reference_loss(model.predict(x, verbose=0), labels, 0.5, "sum").mean()
    assert before == pytest.approx(expected, rel=1e-5)
    model.fit(x, y, epochs=5, batch_size=16, verbose=0)
    assert float(model.evaluate(x, y, verbose=0)) < before


def test_bad_arguments():
    logits = [[1.0, 0.0, 0.0]]
    for margin in (0.0, -1.0, float("inf"), "1", True):
        with pytest.raises(ValueError, match="`margin`"):
            MulticlassHingeMargin(margin=margin)
        with pytest.raises(ValueError, match="`margin`"):
            multiclass_hinge_margin([0], logits, margin=margin)
    with pytest.raises(ValueError, match="`aggregate`"):
        MulticlassHingeMargin(aggregate="mean")
    with pytest.raises(ValueError, match="`logits`"):
        multiclass_hinge_margin([0], [1.0, 0.0])
    with pytest.raises(ValueError, match="`logits`"):
        multiclass_hinge_margin([0], [[1.0]])
    with pytest.raises(ValueError, match="`labels`"):
        multiclass_hinge_margin([[0.0, 1.0]], logits)  # neither (batch, 1) nor (batch, 3)
    with pytest.raises(ValueError, match="`labels`"):
        multiclass_hinge_margin([3], logits)
    with pytest.raises(ValueError, match="`labels`"):
        multiclass_hinge_margin([-1], logits)
    with pytest.raises(ValueError, match="`labels`"):
        multiclass_hinge_margin([0.5], logits)
    with pytest.raises(ValueError, match="`labels`"):
        multiclass_hinge_margin([0, 1], logits)
