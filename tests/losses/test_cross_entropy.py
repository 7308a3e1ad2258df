"""Temperature-scaled and offset cross-entropy: numpy log-sum-exp references, limits, Keras use."""

import math

import keras
import numpy as np
import pytest

from tflip.losses import OffsetCrossEntropy, TemperatureCrossEntropy, offset_cross_entropy, temperature_cross_entropy


def reference(logits, labels, offset, tau):
    """(1/tau) log sum_j exp(tau (f_j - f_y + u [j = y])), in float64."""
    logits = np.asarray(logits, np.float64).copy()
    rows = np.arange(len(labels))
    logits[rows, labels] -= offset
    z = tau * (logits - logits[rows, labels][:, None])
    top = z.max(axis=1, keepdims=True)
    return (np.log(np.exp(z - top).sum(axis=1)) + top[:, 0]) / tau


def test_hand_computed_values():
    # Equal logits: log(2) / tau. Offset 1 on [2, 1] makes them equal: log(2).
    assert float(temperature_cross_entropy([0], [[1.0, 1.0]], temperature=2.0)[0]) == pytest.approx(math.log(2) / 2)
    assert float(offset_cross_entropy([0], [[2.0, 1.0]], offset=1.0, temperature=1.0)[0]) == pytest.approx(
        math.log(2)
    )
    # tau = 1, no offset: the plain softmax cross-entropy.
    logits = np.array([[0.3, -1.2, 2.0]], "float32")
    plain = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(np.array([2]), logits)
    assert float(TemperatureCrossEntropy(1.0)(np.array([2]), logits)) == pytest.approx(float(plain), rel=1e-6)


@pytest.mark.parametrize("offset,tau", [(0.0, 0.5), (math.sqrt(2), 4.0), (0.3, 30.0)])
def test_matches_reference(rng, offset, tau):
    logits = rng.normal(size=(20, 6)).astype("float32")
    labels = rng.integers(0, 6, size=20)
    np.testing.assert_allclose(offset_cross_entropy(labels, logits, offset, tau),
                               reference(logits, labels, offset, tau), rtol=1e-5, atol=1e-6)
    if offset == 0.0:
        np.testing.assert_allclose(temperature_cross_entropy(labels, logits, tau),
                                   reference(logits, labels, 0.0, tau), rtol=1e-5, atol=1e-6)
    one_hot = np.eye(6, dtype="float32")[labels]
    assert float(OffsetCrossEntropy(offset, tau)(one_hot, logits)) == pytest.approx(
        reference(logits, labels, offset, tau).mean(), rel=1e-5
    )


def test_large_temperature_tends_to_the_hinge_of_the_offset():
    # (1/tau) log sum exp -> max(0, u - margin) for the shifted logits; here margin 0.5.
    logits = [[1.0, 0.5, -3.0]]
    assert float(offset_cross_entropy([0], logits, offset=0.8, temperature=1e4)[0]) == pytest.approx(0.3, abs=1e-3)
    assert float(offset_cross_entropy([0], logits, offset=0.2, temperature=1e4)[0]) == pytest.approx(0.0, abs=1e-3)


def test_config_round_trip():
    for loss, extra in ((TemperatureCrossEntropy(8.0), {"temperature": 8.0}),
                        (OffsetCrossEntropy(0.5, 2.0), {"offset": 0.5, "temperature": 2.0})):
        config = loss.get_config()
        assert {key: config[key] for key in extra} == extra
        restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
        assert type(restored) is type(loss) and restored.get_config() == config
    assert keras.saving.get_registered_name(OffsetCrossEntropy) == "tflip>OffsetCrossEntropy"
    assert OffsetCrossEntropy().offset == pytest.approx(math.sqrt(2)) and OffsetCrossEntropy().temperature == 4.0


def test_bad_arguments():
    for value in (0.0, -1.0, "1"):
        with pytest.raises(ValueError, match="`temperature`"):
            TemperatureCrossEntropy(value)
        with pytest.raises(ValueError, match="`temperature`"):
            OffsetCrossEntropy(temperature=value)
    with pytest.raises(ValueError, match="`offset`"):
        OffsetCrossEntropy(offset=-0.1)
    with pytest.raises(ValueError, match="`logits`"):
        temperature_cross_entropy([0], [1.0, 2.0])


def test_offset_training_widens_margins(rng):
    x = rng.normal(size=(64, 4)).astype("float32")
    labels = (x[:, 0] > 0).astype("int32")
    margins = []
    for offset in (0.0, 2.0):
        keras.utils.set_random_seed(0)
        dense = keras.layers.Dense(2, kernel_constraint=keras.constraints.UnitNorm(0))
        model = keras.Sequential([keras.Input((4,)), dense])
        model.compile(keras.optimizers.Adam(0.05), loss=OffsetCrossEntropy(offset, temperature=1.0))
        model.fit(x, labels, epochs=20, batch_size=64, verbose=0)
        logits = model.predict(x, verbose=0)
        margins.append(np.median(np.abs(logits[:, 0] - logits[:, 1])))
    assert margins[1] > margins[0]
