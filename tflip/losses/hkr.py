"""Multiclass hinge-Kantorovich-Rubinstein (HKR) loss for 1-Lipschitz classifiers.

Serrurier, Mamalet, González-Sanz, Boissin, Loubes and del Barrio, "Achieving
robustness in classification using optimal transport with hinge
regularization" (CVPR 2021). For a binary problem with labels `y = +-1`, the
HKR loss of a 1-Lipschitz `f` is (their eq. 9)

    L(f) = -KR(f) + alpha * E[ max(0, m - y f(x)) ],
    KR(f) = E[f(x) | y = +1] - E[f(x) | y = -1],

the Kantorovich-Rubinstein dual estimate of the Wasserstein-1 distance
between the two classes, regularized by a hinge loss of margin `m`. The
optimum is a classifier whose value is (up to the hinge) the signed distance
to the decision boundary, so its margins are certified radii.

The multiclass version (their sec. 4.4) treats each class `k` one-versus-all
on logit `f_k` and averages over the `C` classes. On a batch with `n_k`
samples of class `k` out of `B`:

    KR = (1/C) sum_k [ (1/n_k) sum_{i: y_i = k} f_k(x_i)
                       - (1/(B - n_k)) sum_{i: y_i != k} f_k(x_i) ],
    hinge_i = (1/C) [ (C - 1) max(0, m/2 - f_{y_i}(x_i))
                      + sum_{k != y_i} max(0, m/2 + f_k(x_i)) ],
    loss = -KR + alpha * (1/B) sum_i hinge_i.

The hinge asks the true logit to exceed `m/2` and every other logit to stay
below `-m/2`, so a zero hinge gives a prediction margin of at least `m`; the
true-class term is weighted by `C - 1` to balance the `C - 1` other terms (the
weighting of deel-lip's `MulticlassHKR`, whose documentation this follows).

The KR term is not a mean of independent per-sample terms: its weights
`1/n_k` and `1/(B - n_k)` depend on the class counts of the whole batch.
Under `tf.distribute` each replica sees only its slice, so the counts (and
`B`) are all-reduced over the replicas here: the summed per-replica losses are
exactly the loss of the global batch, and a `MirroredStrategy` `fit` takes the
same steps as one device.
"""

import keras
import tensorflow as tf

from tflip import _validation
from tflip._replica import replica_info
from tflip.metrics.robustness import _check_batch, _logits, class_indices


def _global_statistics(one_hot):
    """Per-class counts and batch size over all replicas, and this replica's slice factor (float32, no gradient).

    Keras averages each replica's per-sample values over its own rows and
    divides by the number of replicas `R`. Multiplying the values by
    `(local rows * R / global rows)` (1 for equal slices and on one device)
    makes the sum over replicas the exact global mean for unequal slices too.
    """
    local = tf.concat([tf.reduce_sum(one_hot, axis=0), [tf.cast(tf.shape(one_hot)[0], tf.float32)]], axis=0)
    _, num_replicas = replica_info()
    total = local
    if num_replicas > 1:
        # One SUM all-reduce carries the class counts and the batch size.
        total = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, local)
    total = tf.stop_gradient(total)
    batch = total[-1]
    slice_factor = tf.math.divide_no_nan(local[-1] * num_replicas, batch) if num_replicas > 1 else 1.0
    return total[:-1], batch, slice_factor


def multiclass_kantorovich_rubinstein(y_true, y_pred):
    """Per-sample terms whose batch mean is the multiclass KR estimate (Serrurier et al. sec. 4.4).

    Sample `i` of class `y_i` contributes
    `(B/C) sum_k f_k(x_i) ([y_i = k] / n_k - [y_i != k] / (B - n_k))`, so that
    `mean_i` of the terms is `KR = (1/C) sum_k (E[f_k | k] - E[f_k | not k])`.
    Class counts `n_k` and the batch size `B` are taken over the global batch
    under a distribution strategy (see the module docstring); a class absent
    from the batch (or filling it) contributes only its other side.

    Args:
        y_true: Integer labels `(batch,)` / `(batch, 1)` or one-hot labels.
        y_pred: Logits `(batch, classes)`.

    Returns:
        A float32 tensor `(batch,)`.
    """
    logits = _logits(y_pred)
    num_classes = logits.shape[-1]
    indices = class_indices(y_true, num_classes)
    _check_batch(logits, indices)
    one_hot = tf.one_hot(indices, num_classes, dtype=tf.float32)
    return _kr_terms(logits, one_hot, _global_statistics(one_hot))


def _kr_terms(logits, one_hot, statistics):
    counts, batch, slice_factor = statistics
    positive = tf.math.divide_no_nan(one_hot, counts)
    negative = tf.math.divide_no_nan(1.0 - one_hot, batch - counts)
    return batch * tf.reduce_mean(logits * (positive - negative), axis=-1) * slice_factor


def _hinge_terms(logits, one_hot, margin):
    num_classes = logits.shape[-1]
    sign = 2.0 * one_hot - 1.0
    hinge = tf.nn.relu(margin / 2.0 - sign * logits)
    weights = one_hot * (num_classes - 1.0) + (1.0 - one_hot)
    return tf.reduce_mean(weights * hinge, axis=-1)


def multiclass_hkr(y_true, y_pred, alpha=10.0, margin=1.0):
    """Per-sample terms of the multiclass HKR loss; their batch mean is the loss.

    `-KR_i + alpha * hinge_i` with the terms of the module docstring
    (Serrurier et al. 2021, eq. 9 and sec. 4.4). Only the batch mean is
    meaningful: the KR terms are weighted by the global class counts.

    Args:
        y_true: Integer labels `(batch,)` / `(batch, 1)` or one-hot labels
            `(batch, classes)`.
        y_pred: Logits `(batch, classes)` of a 1-Lipschitz network.
        alpha: Positive weight of the hinge term (the paper uses large values,
            e.g. 10 to 200: a larger alpha favours accuracy over robustness).
        margin: Positive margin `m`: a zero hinge means a prediction margin of
            at least `m`, hence an L2 certificate `m / sqrt(2)` for a
            1-Lipschitz network.

    Returns:
        A float32 tensor `(batch,)`.

    Example:
        >>> multiclass_hkr([0, 1], [[1.0, -1.0], [-1.0, 1.0]], alpha=1.0, margin=1.0).numpy()
        array([-2., -2.], dtype=float32)
    """
    alpha = _validation.positive_number("alpha", alpha)
    margin = _validation.positive_number("margin", margin)
    logits = _logits(y_pred)
    num_classes = logits.shape[-1]
    indices = class_indices(y_true, num_classes)
    _check_batch(logits, indices)
    one_hot = tf.one_hot(indices, num_classes, dtype=tf.float32)
    statistics = _global_statistics(one_hot)
    hinge = _hinge_terms(logits, one_hot, margin) * statistics[2]
    return -_kr_terms(logits, one_hot, statistics) + alpha * hinge


@keras.saving.register_keras_serializable(package="tflip")
class MulticlassHKR(keras.losses.Loss):
    """Multiclass hinge-Kantorovich-Rubinstein loss (Serrurier et al., CVPR 2021), as a Keras loss.

    `loss = -KR + alpha * hinge`, where `KR` is the one-versus-all
    Kantorovich-Rubinstein estimate averaged over classes and `hinge` the
    one-versus-all hinge of margin `m` (formulas in `tflip.losses.hkr`).
    Train a 1-Lipschitz network (e.g. orthogonal or AOL layers with GroupSort)
    that outputs raw logits. Correct under `MirroredStrategy`: the class counts
    of the KR term are those of the global batch, not of each replica.
    Use the default `"sum_over_batch_size"` reduction: the per-sample values
    are only meaningful through their batch mean (with `sample_weight` the
    hinge is weighted per sample and the KR weights are unchanged).

    Args:
        alpha: Positive weight of the hinge term.
        margin: Positive margin `m` of the hinge.
        reduction: Keras loss reduction (default `"sum_over_batch_size"`).
        name: Loss name.
        dtype: Dtype of the loss (computed in float32).

    Example:
        >>> model.compile("adam", loss=MulticlassHKR(alpha=50.0, margin=1.0), metrics=["accuracy"])
    """

    def __init__(
        self, alpha=10.0, margin=1.0, reduction="sum_over_batch_size", name="multiclass_hkr", dtype=None
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.alpha = _validation.positive_number("alpha", alpha)
        self.margin = _validation.positive_number("margin", margin)

    def call(self, y_true, y_pred):
        return multiclass_hkr(y_true, y_pred, self.alpha, self.margin)

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha, "margin": self.margin, "dtype": self.dtype}
