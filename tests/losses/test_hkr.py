"""Multiclass HKR loss (Serrurier et al. 2021): hand values, a class-mean reference, MirroredStrategy."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.layer_checks import mirrored_strategy
from tflip.losses import MulticlassHKR, multiclass_hkr, multiclass_kantorovich_rubinstein


def reference_hkr(logits, labels, alpha, margin):
    """The batch loss written from the definitions: class-conditional means and the one-vs-all hinge."""
    logits = np.asarray(logits, np.float64)
    labels = np.asarray(labels)
    batch, classes = logits.shape
    kr = []
    for k in range(classes):
        inside, outside = logits[labels == k, k], logits[labels != k, k]
        kr.append((inside.mean() if inside.size else 0.0) - (outside.mean() if outside.size else 0.0))
    hinge = []
    for row, label in zip(logits, labels):
        terms = [(classes - 1) * max(0.0, margin / 2 - row[label])]
        terms += [max(0.0, margin / 2 + row[j]) for j in range(classes) if j != label]
        hinge.append(sum(terms) / classes)
    return -np.mean(kr) + alpha * np.mean(hinge), np.mean(kr)


def test_hand_computed_case():
    # Three samples, three classes. KR per class: class 0: mean(2, 0) - (-1) = 2;
    # class 1: 1 - mean(0, 0.5) = 0.75; class 2 (absent): 0 - mean(0.5, -1, 0.2) = 0.1.
    # KR = (2 + 0.75 + 0.1) / 3 = 2.85 / 3.
    logits = np.array([[2.0, 0.0, 0.5], [-1.0, 1.0, -1.0], [0.0, 0.5, 0.2]], "float32")
    labels = [0, 1, 0]
    # Hinge, margin 1 (true logit >= 0.5, others <= -0.5), weights (C - 1) = 2 on the true class:
    # row 0: (2*0 + relu(0.5 + 0) + relu(0.5 + 0.5)) / 3 = 1.5 / 3; row 1: (0 + 0 + 0) / 3 = 0;
    # row 2: (2*relu(0.5 - 0) + relu(0.5 + 0.5) + relu(0.5 + 0.2)) / 3 = 2.7 / 3. Mean: 4.2 / 9.
    expected = -2.85 / 3 + 2.0 * 4.2 / 9
    # The two terms nearly cancel (-0.95 + 0.933): compare in absolute terms at float32 resolution.
    assert float(keras.ops.mean(multiclass_hkr(labels, logits, alpha=2.0, margin=1.0))) == pytest.approx(
        expected, abs=1e-6
    )
    assert float(MulticlassHKR(alpha=2.0, margin=1.0)(labels, logits)) == pytest.approx(expected, abs=1e-6)
    assert float(keras.ops.mean(multiclass_kantorovich_rubinstein(labels, logits))) == pytest.approx(
        2.85 / 3, rel=1e-6
    )
    assert reference_hkr(logits, labels, 2.0, 1.0)[0] == pytest.approx(expected, abs=1e-7)  # float32 inputs


@pytest.mark.parametrize("alpha,margin", [(10.0, 1.0), (0.5, 0.3)])
def test_matches_reference_on_random_batches(rng, alpha, margin):
    for classes in (2, 5):
        logits = rng.normal(size=(33, classes)).astype("float32")
        labels = rng.integers(0, classes, size=33)
        loss, kr = reference_hkr(logits, labels, alpha, margin)
        assert float(MulticlassHKR(alpha, margin)(labels, logits)) == pytest.approx(loss, rel=1e-5)
        assert float(keras.ops.mean(multiclass_kantorovich_rubinstein(labels, logits))) == pytest.approx(kr, rel=1e-5)


def test_label_layouts_agree(rng):
    logits = rng.normal(size=(10, 4)).astype("float32")
    labels = rng.integers(0, 4, size=10)
    expected = multiclass_hkr(labels, logits).numpy()
    for layout in (labels[:, None], labels.astype("float32"), np.eye(4, dtype="float32")[labels]):
        np.testing.assert_allclose(multiclass_hkr(layout, logits), expected, rtol=1e-6)


def test_gradient_of_kr_term_is_the_class_mean_difference():
    # dKR/df_k(x_i) = (1/C) (1/n_k if y_i = k else -1/(B - n_k)): per-sample terms carry the batch counts.
    logits = tf.constant([[0.3, -0.2], [0.1, 0.4], [0.0, 0.0], [1.0, -1.0]])
    labels = [0, 1, 0, 0]
    with tf.GradientTape() as tape:
        tape.watch(logits)
        kr = keras.ops.mean(multiclass_kantorovich_rubinstein(labels, logits))
    expected = np.array([[1 / 3, -1 / 3], [-1.0, 1.0], [1 / 3, -1 / 3], [1 / 3, -1 / 3]]) / 2
    np.testing.assert_allclose(tape.gradient(kr, logits), expected, rtol=1e-6)


def test_config_round_trip():
    loss = MulticlassHKR(alpha=50.0, margin=0.5, name="hkr")
    config = loss.get_config()
    assert config == {"name": "hkr", "reduction": "sum_over_batch_size", "alpha": 50.0, "margin": 0.5,
                      "dtype": "float32"}
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert isinstance(restored, MulticlassHKR) and restored.get_config() == config
    assert keras.saving.get_registered_name(MulticlassHKR) == "tflip>MulticlassHKR"


def test_bad_arguments():
    for value in (0.0, -1.0, float("nan"), "1"):
        with pytest.raises(ValueError, match="`alpha`"):
            MulticlassHKR(alpha=value)
        with pytest.raises(ValueError, match="`margin`"):
            MulticlassHKR(margin=value)
    with pytest.raises(ValueError, match="`logits`"):
        multiclass_hkr([0], [[1.0]])
    with pytest.raises(ValueError, match="`labels`"):
        multiclass_hkr([2], [[1.0, 0.0]])


def _data():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(16, 5)).astype("float32")
    # The first half (replica 0's slice) is all class 0: per-replica class counts differ from the global ones.
    labels = np.concatenate([np.zeros(8, "int32"), rng.integers(0, 3, size=8).astype("int32")])
    labels[8:11] = [1, 2, 1]
    return x, labels


def test_per_replica_counts_would_give_another_loss():
    # The reason for the all-reduce: HKR of the halves averaged is not HKR of the batch.
    x, labels = _data()
    logits = np.random.default_rng(4).normal(size=(16, 3)).astype("float32")
    whole = reference_hkr(logits, labels, 10.0, 1.0)[0]
    halves = np.mean([reference_hkr(logits[s], labels[s], 10.0, 1.0)[0] for s in (slice(0, 8), slice(8, 16))])
    assert abs(whole - halves) > 0.1


def test_mirrored_fit_matches_one_device():
    x, labels = _data()
    batch_size = 16

    def train(strategy):
        keras.utils.set_random_seed(5)
        with strategy.scope():
            model = keras.Sequential(
                [keras.Input((5,)), keras.layers.Dense(8, activation="tanh"), keras.layers.Dense(3)]
            )
            model.compile(optimizer=keras.optimizers.SGD(0.1), loss=MulticlassHKR(alpha=10.0, margin=1.0))
        history = model.fit(x, labels, batch_size=batch_size, epochs=3, verbose=0, shuffle=False)
        return model, history.history["loss"]

    single, single_loss = train(tf.distribute.OneDeviceStrategy("/cpu:0"))
    mirrored, mirrored_loss = train(mirrored_strategy())
    for a, b in zip(single.weights, mirrored.weights):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6, err_msg=a.path)
    np.testing.assert_allclose(mirrored_loss, single_loss, rtol=1e-5)
    # And the one-device loss is the reference loss of the whole batch.
    logits = single.predict(x, verbose=0)
    assert float(single.evaluate(x, labels, batch_size=batch_size, verbose=0)) == pytest.approx(
        reference_hkr(logits, labels, 10.0, 1.0)[0], rel=1e-5
    )


def test_unequal_replica_slices_sum_to_the_global_loss():
    # Keras' fit cannot split a batch unevenly on logical CPUs, so drive the replicas directly:
    # slices of 5 and 2 rows, each reduced as Keras does (local mean / replicas), summed.
    strategy = mirrored_strategy()
    rng = np.random.default_rng(6)
    logits = rng.normal(size=(7, 3)).astype("float32")
    labels = np.array([0, 0, 0, 1, 0, 2, 1], "int32")
    slices = [slice(0, 5), slice(5, 7)]
    loss = MulticlassHKR(alpha=3.0, margin=0.7)

    def values(context):
        part = slices[context.replica_id_in_sync_group]
        return tf.constant(labels[part]), tf.constant(logits[part])

    distributed = strategy.experimental_distribute_values_from_function(values)
    per_replica = strategy.run(lambda pair: loss(pair[0], pair[1]), args=(distributed,))
    total = strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)
    assert float(total) == pytest.approx(reference_hkr(logits, labels, 3.0, 0.7)[0], rel=1e-5)
