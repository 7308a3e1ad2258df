"""Cross-entropy losses for Lipschitz classifiers: temperature-scaled and offset (margin-enforcing).

A 1-Lipschitz network cannot produce the large logits that plain softmax
cross-entropy drives towards, so its logits stay small and the loss keeps
pulling on correctly classified points without widening their margins.
Scaling the logits by a temperature `tau` fixes the trade-off between accuracy
and margin (Béthune, Boissin, Serrurier, Mamalet, Friedrich and González-Sanz,
"Pay attention to your loss: understanding misconceptions about 1-Lipschitz
neural networks", NeurIPS 2022, sec. 4):

    L_tau(f, y) = (1/tau) CE(softmax(tau f), y)
                = (1/tau) log sum_j exp(tau (f_j - f_y)).

Dividing by `tau` keeps the gradient scale independent of `tau`: as `tau`
grows the loss tends to `max_j (f_j - f_y)`, i.e. `max(0, -margin)` (a hinge
with zero margin); as `tau` shrinks it becomes linear in the logits.

The offset cross-entropy additionally lowers the true logit by an offset `u`
before the softmax (Prach and Lampert, "Almost-orthogonal layers for efficient
general-purpose Lipschitz networks", ECML 2022, sec. 5; used for SLL by
Araujo, Havens, Delattre, Allauzen and Hu, ICLR 2023, and in the comparison of
Prach, Brau, Buttazzo and Lampert, "1-Lipschitz Layers Compared", CVPR 2024):

    L_{u,tau}(f, y) = (1/tau) CE(softmax(tau (f - u e_y)), y),

so the loss only becomes small once `f_y` beats every other logit by more
than `u`: the offset is the target margin, `u = sqrt(2) eps` for an L2
certificate of radius `eps` of a 1-Lipschitz network. Prach and Lampert use
`u = sqrt(2)` and temperature `t = 1/4` (written as a divisor `t`; here
`tau = 1/t = 4`).
"""

import math

import keras
import tensorflow as tf

from tflip import _validation
from tflip.metrics.robustness import _check_batch, _logits, class_indices


def _shifted_cross_entropy(y_true, y_pred, temperature, offset):
    temperature = _validation.positive_number("temperature", temperature)
    offset = _validation.non_negative_number("offset", offset)
    logits = _logits(y_pred)
    num_classes = logits.shape[-1]
    indices = class_indices(y_true, num_classes)
    _check_batch(logits, indices)
    shifted = logits - offset * tf.one_hot(indices, num_classes, dtype=tf.float32)
    return tf.nn.sparse_softmax_cross_entropy_with_logits(indices, temperature * shifted) / temperature


def temperature_cross_entropy(y_true, y_pred, temperature=1.0):
    """Per-sample temperature-scaled softmax cross-entropy `CE(softmax(tau f), y) / tau`.

    Béthune et al. (NeurIPS 2022), sec. 4 (see the module docstring).

    Args:
        y_true: Integer labels `(batch,)` / `(batch, 1)` or one-hot labels
            `(batch, classes)` (the class is the argmax of each row).
        y_pred: Logits `(batch, classes)`.
        temperature: Positive multiplier `tau` of the logits.

    Returns:
        A float32 tensor `(batch,)`.

    Example:
        >>> temperature_cross_entropy([0], [[1.0, 1.0]], temperature=2.0).numpy()  # log(2) / 2
        array([0.3465736], dtype=float32)
    """
    return _shifted_cross_entropy(y_true, y_pred, temperature, 0.0)


def offset_cross_entropy(y_true, y_pred, offset=math.sqrt(2.0), temperature=4.0):
    """Per-sample offset cross-entropy `CE(softmax(tau (f - u e_y)), y) / tau`.

    Prach and Lampert (ECML 2022), sec. 5; Araujo et al. (ICLR 2023); Prach et
    al. (CVPR 2024). See the module docstring.

    Args:
        y_true: Integer labels `(batch,)` / `(batch, 1)` or one-hot labels.
        y_pred: Logits `(batch, classes)`.
        offset: Non-negative offset `u` subtracted from the true logit (the
            target margin; `sqrt(2) eps` for L2 radius `eps` at Lipschitz 1).
        temperature: Positive multiplier `tau` of the shifted logits.

    Returns:
        A float32 tensor `(batch,)`.

    Example:
        >>> offset_cross_entropy([0], [[2.0, 1.0]], offset=1.0, temperature=1.0).numpy()  # log(2)
        array([0.6931472], dtype=float32)
    """
    return _shifted_cross_entropy(y_true, y_pred, temperature, offset)


@keras.saving.register_keras_serializable(package="tflip")
class TemperatureCrossEntropy(keras.losses.Loss):
    """Temperature-scaled softmax cross-entropy `CE(softmax(tau f), y) / tau` (Béthune et al., NeurIPS 2022).

    For 1-Lipschitz classifiers, whose logits cannot grow to fit plain
    cross-entropy: `tau` trades accuracy (large `tau`) for margins (small
    `tau`). Labels may be integer or one-hot; the model outputs raw logits.

    Args:
        temperature: Positive multiplier `tau` of the logits.
        reduction: Keras loss reduction (default `"sum_over_batch_size"`).
        name: Loss name.
        dtype: Dtype of the loss (computed in float32).

    Example:
        >>> model.compile("adam", loss=TemperatureCrossEntropy(temperature=8.0), metrics=["accuracy"])
    """

    def __init__(self, temperature=1.0, reduction="sum_over_batch_size", name="temperature_cross_entropy",
                 dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.temperature = _validation.positive_number("temperature", temperature)

    def call(self, y_true, y_pred):
        return temperature_cross_entropy(y_true, y_pred, self.temperature)

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature, "dtype": self.dtype}


@keras.saving.register_keras_serializable(package="tflip")
class OffsetCrossEntropy(keras.losses.Loss):
    """Offset (margin-enforcing) cross-entropy `CE(softmax(tau (f - u e_y)), y) / tau`.

    The loss of Prach and Lampert (ECML 2022, sec. 5) used to train AOL, SLL
    (Araujo et al., ICLR 2023) and the layers compared by Prach et al. (CVPR
    2024): the true logit is lowered by the offset `u` before a
    temperature-scaled softmax, so training pushes margins beyond `u`.
    Defaults `u = sqrt(2)`, `tau = 4` are Prach and Lampert's (`t = 1/4`).

    Args:
        offset: Non-negative offset `u` (target margin).
        temperature: Positive multiplier `tau` of the shifted logits.
        reduction: Keras loss reduction (default `"sum_over_batch_size"`).
        name: Loss name.
        dtype: Dtype of the loss (computed in float32).

    Example:
        >>> model.compile("adam", loss=OffsetCrossEntropy(offset=0.5, temperature=4.0), metrics=["accuracy"])
    """

    def __init__(self, offset=math.sqrt(2.0), temperature=4.0, reduction="sum_over_batch_size",
                 name="offset_cross_entropy", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.offset = _validation.non_negative_number("offset", offset)
        self.temperature = _validation.positive_number("temperature", temperature)

    def call(self, y_true, y_pred):
        return offset_cross_entropy(y_true, y_pred, self.offset, self.temperature)

    def get_config(self):
        return {**super().get_config(), "offset": self.offset, "temperature": self.temperature, "dtype": self.dtype}
