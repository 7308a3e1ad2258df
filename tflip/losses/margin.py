"""Multi-class hinge margin loss for provably robust Lipschitz classifiers.

Anil, Lucas and Grosse, "Sorting out Lipschitz Function Approximation" (ICML
2019), eq. 5: with logits `f` and true class `t`,

    L(f, t) = sum_{j != t} max(0, margin - (f_t - f_j)).

It vanishes exactly when the true logit beats every other logit by at least
`margin`. For an L-Lipschitz network such a point is certified robust up to
radius `margin / (c L)` (`c = sqrt(2)` for L2 logits, `2` for L-infinity,
see `tflip.metrics.robustness`), so the paper picks `margin = a L` for a
target radius proportional to `a` (a = 0.1 or 0.3, sec. 7.3).
`aggregate="max"` keeps only the worst class (Crammer and Singer's hinge,
`max(0, margin - M)` with `M` the prediction margin), which penalizes exactly
the points whose certificate is below target.
"""

import keras
import tensorflow as tf

from tflip import _validation
from tflip.metrics.robustness import _check_batch, _logits, class_indices

_AGGREGATES = ("sum", "max")


def multiclass_hinge_margin(y_true, y_pred, margin=1.0, aggregate="sum"):
    """Per-sample multi-class hinge margin loss (Anil et al. eq. 5).

    Args:
        y_true: Integer labels `(batch,)` or `(batch, 1)` (float values are
            rounded, as Keras passes them), or one-hot labels
            `(batch, classes)` (the class is the argmax of each row).
        y_pred: Logits `(batch, classes)`, `classes >= 2`.
        margin: Positive target margin `kappa`.
        aggregate: `"sum"` over the other classes (eq. 5) or `"max"` (only the
            most competitive other class).

    Returns:
        A float32 tensor `(batch,)`.

    Raises:
        ValueError: For a bad `margin` or `aggregate`, logits that are not
            `(batch, classes >= 2)`, or labels of another shape (and, outside
            `tf.function`, labels outside `[0, classes)`).

    Example:
        >>> multiclass_hinge_margin([0], [[1.0, 0.5, -1.0]], margin=1.0).numpy()  # 0.5 + 0
        array([0.5], dtype=float32)
    """
    margin = _validation.positive_number("margin", margin)
    aggregate = _validation.one_of("aggregate", aggregate, _AGGREGATES)
    logits = _logits(y_pred)
    indices = class_indices(y_true, logits.shape[-1])
    _check_batch(logits, indices)
    true_mask = tf.one_hot(indices, logits.shape[-1], on_value=True, off_value=False, dtype=tf.bool)
    true_logit = tf.reduce_sum(tf.where(true_mask, logits, tf.zeros_like(logits)), axis=-1, keepdims=True)
    # The true class itself would add the constant max(0, margin): excluded as in eq. 5.
    violations = tf.where(true_mask, tf.zeros_like(logits), tf.nn.relu(margin - (true_logit - logits)))
    if aggregate == "sum":
        return tf.reduce_sum(violations, axis=-1)
    return tf.reduce_max(violations, axis=-1)


@keras.saving.register_keras_serializable(package="tflip")
class MulticlassHingeMargin(keras.losses.Loss):
    """Multi-class hinge margin loss of Anil et al. (2019), eq. 5, as a Keras loss.

    `sum_{j != t} max(0, margin - (f_t - f_j))` per sample, reduced over the
    batch by `reduction`. Labels may be integer (`(batch,)` or `(batch, 1)`,
    as for `SparseCategoricalCrossentropy`) or one-hot (`(batch, classes)`, as
    for `CategoricalCrossentropy`); the layout is read from the shape. The
    model must output raw logits (no softmax).

    Args:
        margin: Positive target margin `kappa`. For a network with Lipschitz
            constant `L` and a target certified radius `r`, `margin = c L r`
            with `c = sqrt(2)` (L2) or `2` (L-infinity).
        aggregate: `"sum"` (eq. 5, default) or `"max"` over the other classes.
        reduction: Keras loss reduction (default `"sum_over_batch_size"`).
        name: Loss name.
        dtype: Dtype of the loss computation (the loss itself is computed in
            float32).

    Example:
        >>> model.compile("adam", loss=MulticlassHingeMargin(margin=0.3), metrics=["accuracy"])
    """

    def __init__(
        self, margin=1.0, aggregate="sum", reduction="sum_over_batch_size", name="multiclass_hinge_margin", dtype=None
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.margin = _validation.positive_number("margin", margin)
        self.aggregate = _validation.one_of("aggregate", aggregate, _AGGREGATES)

    def call(self, y_true, y_pred):
        return multiclass_hinge_margin(y_true, y_pred, self.margin, self.aggregate)

    def get_config(self):
        return {**super().get_config(), "margin": self.margin, "aggregate": self.aggregate, "dtype": self.dtype}
