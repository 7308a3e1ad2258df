"""Provable robustness of classifiers from prediction margins and a Lipschitz constant.

Anil, Lucas and Grosse, "Sorting out Lipschitz Function Approximation" (ICML
2019), sec. 4.3 and 7.3 (after Tsuzuku et al. 2018): the prediction margin of
a Lipschitz classifier certifies that no perturbation smaller than a radius
proportional to the margin can change its decision.

The certificate. Let `f: (R^d, ||.||_p) -> (R^K, ||.||_q)` be L-Lipschitz and
let `M(x) = f_y(x) - max_{j != y} f_j(x)` be the margin of the true class `y`.
For every `j`, `f_y - f_j = <e_y - e_j, f>`, so by Hölder
`|(f_y - f_j)(x + delta) - (f_y - f_j)(x)| <= ||e_y - e_j||_q* L ||delta||_p`,
where `q*` is the dual of the output norm `q`: `||e_y - e_j||_q*` is `sqrt(2)`
for `q = 2` and `2` for `q = inf` (dual norm L1). Hence every logit difference
stays positive, and the prediction stays `y`, for all `||delta||_p < r` with

- `r = M / (sqrt(2) L)` if `L` is measured into the L2 norm of the logits
  (L2-constrained networks: `lipschitz_upper_bound(model, norm=2)`);
- `r = M / (2 L)` if `L` is measured into the L-infinity norm of the logits,
  i.e. each logit is L-Lipschitz (L-infinity networks with weights bounded in
  the matrix infinity-norm, `lipschitz_upper_bound(model, norm="inf")`).
  Anil et al. (sec. 4.3) print the condition `M > K epsilon / 2`, a factor
  of 4 weaker than this derivation allows (the linear example below breaks
  it); tflip certifies only `M > 2 L epsilon`.

The radius is measured in the input norm `p`, which only enters through `L`.
Both bounds are tight: for the linear map `f(x) = (x_1, x_2)` (L2 and
L-infinity constant 1) the nearest decision boundary `x_1 = x_2` is at L2
distance `M / sqrt(2)` and L-infinity distance `M / 2`.

A point counts as correctly classified only if its margin is strictly
positive (ties are errors), and as certified at `epsilon` if its margin
exceeds `c L epsilon` (`c = sqrt(2)` or `2`), which protects the closed ball
`||delta||_p <= epsilon`.
"""

import math
import numbers

import keras
import numpy as np
import tensorflow as tf

from tflip import _validation
from tflip.ops.norms import check_norm


def _logits(logits):
    """Float32 logits `(batch, classes)` with at least two classes, or raises."""
    logits = tf.cast(tf.convert_to_tensor(logits), tf.float32)
    if logits.shape.rank != 2 or logits.shape[-1] is None or logits.shape[-1] < 2:
        raise ValueError(f"`logits` must have shape (batch, classes) with classes >= 2, got {logits.shape}.")
    return logits


def class_indices(labels, num_classes):
    """Integer class indices `(batch,)` from integer or one-hot labels.

    Integer labels have shape `(batch,)` or `(batch, 1)` (float values, as
    Keras passes them to losses, are rounded). One-hot labels have shape
    `(batch, num_classes)`; the class is the argmax of each row, so smoothed
    labels work too. The two layouts cannot be confused since
    `num_classes >= 2`.

    Args:
        labels: Integer or one-hot labels.
        num_classes: Number of classes of the logits.

    Returns:
        An int32 tensor `(batch,)`.

    Raises:
        ValueError: For any other shape, and (when the values are known, i.e.
            outside `tf.function`) for integer labels that are not integers in
            `[0, num_classes)`.
    """
    labels = tf.convert_to_tensor(labels)
    shape = labels.shape
    if shape.rank == 2 and shape[-1] == num_classes:
        return tf.argmax(labels, axis=-1, output_type=tf.int32)
    if not (shape.rank == 1 or (shape.rank == 2 and shape[-1] == 1)):
        raise ValueError(
            f"`labels` must be integer labels (batch,) or (batch, 1), or one-hot labels (batch, {num_classes}), "
            f"got shape {shape}."
        )
    labels = tf.reshape(labels, (-1,))
    if labels.dtype.is_floating:
        rounded = tf.round(labels)
    else:
        rounded = labels
    if tf.executing_eagerly():
        # Out-of-range labels would silently select no class in one_hot; catch them where we can.
        values, whole = np.asarray(labels), np.asarray(rounded)
        bad = values[(values != whole) | (whole < 0) | (whole >= num_classes)]
        if bad.size:
            raise ValueError(f"`labels` must be integers in [0, {num_classes}), got {np.unique(bad)[:5]}.")
    return tf.cast(rounded, tf.int32)


def _check_batch(logits, indices):
    batch, count = logits.shape[0], indices.shape[0]
    if batch is not None and count is not None and batch != count:
        raise ValueError(f"`labels` has {count} samples but `logits` has {batch}.")


def margins_from_indices(logits, indices):
    """`f_y - max_{j != y} f_j` for float32 logits and int32 class indices (no checks)."""
    true_mask = tf.one_hot(indices, tf.shape(logits)[-1], on_value=True, off_value=False, dtype=tf.bool)
    true_logit = tf.reduce_sum(tf.where(true_mask, logits, tf.zeros_like(logits)), axis=-1)
    # -inf never wins the max since at least one other class exists; tf.where passes no gradient to it.
    best_other = tf.reduce_max(tf.where(true_mask, tf.fill(tf.shape(logits), -np.inf), logits), axis=-1)
    return true_logit - best_other


def prediction_margins(logits, labels):
    """Signed prediction margins: the true-class logit minus the largest other logit.

    Positive exactly where the prediction is correct (ties give 0). Anil et
    al. eq. 4 is `max(0, margin)`; the sign is kept here so that the margins
    also show how badly a point is misclassified.

    Args:
        logits: Float tensor `(batch, classes)`, `classes >= 2`.
        labels: Integer labels `(batch,)` / `(batch, 1)` or one-hot labels
            `(batch, classes)`, see `class_indices`.

    Returns:
        A float32 tensor `(batch,)`.

    Example:
        >>> prediction_margins([[3.0, 1.0, 2.5]], [0]).numpy()
        array([0.5], dtype=float32)
    """
    logits = _logits(logits)
    indices = class_indices(labels, logits.shape[-1])
    _check_batch(logits, indices)
    return margins_from_indices(logits, indices)


def certificate_factor(output_norm):
    """`||e_y - e_j||` in the dual of the logits' norm: `sqrt(2)` for L2, `2` for L-infinity."""
    return math.sqrt(2.0) if check_norm(output_norm) == 2 else 2.0


def resolve_lipschitz(lipschitz, norm, output_norm):
    """A positive Lipschitz constant from a number or a Keras model, and the output norm.

    Returns `(lipschitz, norm, output_norm)` with the norms normalized to 2 or "inf".
    """
    norm = check_norm(norm)
    if output_norm is None:
        output_norm = norm
    else:
        try:
            output_norm = check_norm(output_norm)
        except ValueError:
            raise ValueError(f"`output_norm` must be None, 2 or 'inf', got {output_norm!r}.") from None
    if isinstance(lipschitz, keras.Model):
        if output_norm != norm:
            raise ValueError(
                "`output_norm` must equal `norm` when `lipschitz` is a model: "
                "`lipschitz_upper_bound` measures inputs and outputs in the same norm."
            )
        from tflip.lipschitz import lipschitz_upper_bound

        lipschitz = lipschitz_upper_bound(lipschitz, norm)
    return _validation.positive_number("lipschitz", lipschitz), norm, output_norm


def certified_radius(margins, lipschitz, norm=2, output_norm=None):
    """Radius (in the input norm) within which each prediction provably cannot change.

    `radius = max(margin, 0) / (c L)` with `c = sqrt(2)` when `L` is measured
    into the L2 norm of the logits and `c = 2` when it is measured into their
    L-infinity norm (see the module docstring for the derivation). Every
    perturbation with `||delta||_norm < radius` keeps the prediction; points
    with non-positive margins get radius 0.

    Args:
        margins: Margins `(batch,)` from `prediction_margins`.
        lipschitz: The network's Lipschitz constant `L` (a positive number),
            or a built chain Keras model whose constant is then bounded by
            `tflip.lipschitz.lipschitz_upper_bound(model, norm)`.
        norm: Input norm of the certificate: 2 or "inf" (`np.inf` works too).
        output_norm: Norm of the logits in which `L` is measured: 2 or "inf".
            Defaults to `norm`, which is what `lipschitz_upper_bound` computes.
            Pass "inf" with `norm=2` if `L` bounds each logit separately (for
            instance a last layer with unit-norm rows).

    Returns:
        A float32 tensor `(batch,)`.

    Raises:
        ValueError: For a non-positive or non-finite `lipschitz`, an unknown
            norm, or a model with `output_norm != norm`.

    Example:
        >>> certified_radius([1.0, -0.5], lipschitz=1.0, norm="inf").numpy()
        array([0.5, 0. ], dtype=float32)
    """
    lipschitz, _, output_norm = resolve_lipschitz(lipschitz, norm, output_norm)
    margins = tf.cast(tf.convert_to_tensor(margins), tf.float32)
    return tf.nn.relu(margins) / (certificate_factor(output_norm) * lipschitz)


def _epsilons(epsilon):
    """A non-negative number, or a 1-D sequence of them, as a float32 tensor; and whether it was scalar."""
    if isinstance(epsilon, numbers.Real) and not isinstance(epsilon, bool):
        return tf.constant(_validation.non_negative_number("epsilon", epsilon), tf.float32), True
    values = np.asarray(epsilon, dtype=object)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"`epsilon` must be a non-negative number or a 1-D sequence of them, got {epsilon!r}.")
    return tf.constant([_validation.non_negative_number("epsilon", e) for e in values], tf.float32), False


def certified_accuracy(logits, labels, lipschitz, epsilon, norm=2, output_norm=None):
    """Fraction of points classified correctly with a certificate of radius `epsilon`.

    A point is certified if `margin > c L epsilon` (`c = sqrt(2)` for logits
    in L2, `2` for logits in L-infinity): then no perturbation with
    `||delta||_norm <= epsilon` changes its (correct) prediction, so this is a
    lower bound of the accuracy under any attack of that size (Anil et al.,
    fig. 9). At `epsilon = 0` it is the clean accuracy (ties count as errors).

    Args:
        logits: Float tensor `(batch, classes)`.
        labels: Integer labels `(batch,)` / `(batch, 1)` or one-hot labels.
        lipschitz: Positive number, or a chain Keras model (bounded by
            `lipschitz_upper_bound(model, norm)`), see `certified_radius`.
        epsilon: Non-negative perturbation size, or a 1-D sequence of sizes
            (for an accuracy-versus-epsilon curve).
        norm: Input norm: 2 or "inf".
        output_norm: Norm of the logits in which `L` is measured; defaults to `norm`.

    Returns:
        A float32 scalar tensor, or a tensor `(len(epsilon),)` for a sequence.

    Example:
        >>> logits = [[2.0, 0.0], [0.0, 0.5], [1.0, 0.0]]
        >>> certified_accuracy(logits, [0, 1, 0], lipschitz=1.0, epsilon=[0.0, 0.3], norm="inf").numpy()
        array([1.       , 0.6666667], dtype=float32)
    """
    lipschitz, _, output_norm = resolve_lipschitz(lipschitz, norm, output_norm)
    epsilons, scalar = _epsilons(epsilon)
    margins = prediction_margins(logits, labels)
    thresholds = certificate_factor(output_norm) * lipschitz * epsilons
    certified = tf.cast(margins[:, None] > tf.reshape(thresholds, (1, -1)), tf.float32)
    accuracy = tf.reduce_mean(certified, axis=0)
    return accuracy[0] if scalar else accuracy


@keras.saving.register_keras_serializable(package="tflip")
class CertifiedAccuracy(keras.metrics.Metric):
    """Keras metric: the (weighted) fraction of certified correct predictions at `epsilon`.

    Applies `certified_accuracy` to each batch of `(labels, logits)` and
    averages over batches, weighted by `sample_weight`. Use it in
    `model.compile(metrics=[...])` to monitor provable robustness during
    training of a network whose Lipschitz constant is enforced by
    construction (for instance the product of the layers' `lipschitz`).

    Args:
        lipschitz: Positive Lipschitz constant of the network (a number: a
            metric is serialized, a model is not).
        epsilon: Non-negative perturbation size.
        norm: Input norm: 2 or "inf".
        output_norm: Norm of the logits in which `lipschitz` is measured;
            defaults to `norm`.
        name: Metric name.
        dtype: Dtype of the metric's state.

    Example:
        >>> model.compile("adam", MulticlassHingeMargin(0.3), metrics=[CertifiedAccuracy(1.0, 0.1, norm="inf")])
    """

    def __init__(self, lipschitz, epsilon, norm=2, output_norm=None, name="certified_accuracy", dtype=None):
        super().__init__(name=name, dtype=dtype)
        if isinstance(lipschitz, keras.Model):
            raise ValueError("`lipschitz` must be a number for a metric (bound the model first).")
        self.lipschitz, self.norm, self.output_norm = resolve_lipschitz(lipschitz, norm, output_norm)
        self.epsilon = _validation.non_negative_number("epsilon", epsilon)
        self._threshold = certificate_factor(self.output_norm) * self.lipschitz * self.epsilon
        self.certified = self.add_variable(shape=(), initializer="zeros", name="certified", dtype="float32")
        self.total = self.add_variable(shape=(), initializer="zeros", name="total", dtype="float32")

    def update_state(self, y_true, y_pred, sample_weight=None):
        margins = prediction_margins(y_pred, y_true)
        certified = tf.cast(margins > self._threshold, tf.float32)
        if sample_weight is None:
            weights = tf.ones_like(certified)
        else:
            weights = tf.reshape(tf.cast(sample_weight, tf.float32), (-1,)) * tf.ones_like(certified)
        self.certified.assign_add(tf.reduce_sum(weights * certified))
        self.total.assign_add(tf.reduce_sum(weights))

    def result(self):
        return tf.math.divide_no_nan(self.certified, self.total)

    def reset_state(self):
        self.certified.assign(0.0)
        self.total.assign(0.0)

    def get_config(self):
        return {
            **super().get_config(),
            "lipschitz": self.lipschitz,
            "epsilon": self.epsilon,
            "norm": self.norm,
            "output_norm": self.output_norm,
        }


def _last_kernel(last_kernel, num_classes):
    """The float32 `(features, classes)` kernel of the last linear layer, from an array or a layer."""
    if isinstance(last_kernel, keras.layers.Layer):
        layer = last_kernel
        if hasattr(layer, "inference_kernel"):
            last_kernel = layer.inference_kernel()
        elif getattr(layer, "kernel", None) is not None:
            last_kernel = layer.kernel
        else:
            raise ValueError(f"`last_kernel` layer {layer.name!r} has no kernel.")
    kernel = tf.cast(tf.convert_to_tensor(last_kernel), tf.float32)
    if kernel.shape.rank != 2 or kernel.shape[-1] != num_classes:
        raise ValueError(
            f"`last_kernel` must have shape (features, {num_classes}) (a Dense kernel), got {kernel.shape}."
        )
    return kernel


def pairwise_certified_radius(logits, labels, last_kernel, backbone_lipschitz):
    """Certified L2 radius from the last linear layer's pairwise column distances.

    For a network `f(x) = W^T g(x) + b` whose backbone `g` is
    `L_backbone`-Lipschitz in L2 and whose last layer is linear with kernel
    `W = [w_1 ... w_C]`, each logit difference
    `f_y - f_j = <w_y - w_j, g(x)> + b_y - b_j` is
    `L_backbone ||w_y - w_j||_2`-Lipschitz (Cauchy-Schwarz). The prediction
    therefore stays `y` for every `||delta||_2 < r` with

        r = max(0, min_{j != y} (f_y - f_j) / (L_backbone ||w_y - w_j||_2)).

    This is the certificate of Tsuzuku, Sato and Sugiyama (NeurIPS 2018,
    sec. 4) and Singla and Feizi ("Skew Orthogonal Convolutions", ICML 2021,
    the "last layer normalization" certificate) evaluated with the exact pair
    constants. Since `||w_y - w_j|| = ||W (e_y - e_j)|| <= sqrt(2) ||W||_2`,
    it is never smaller than the generic `margin / (sqrt(2) L_backbone ||W||_2)`
    of `certified_radius`, and strictly larger when `W` is not orthogonal
    (e.g. a last layer with unit-norm columns). For a linear model
    (`g` = identity, `L_backbone = 1`) it is the exact distance to the nearest
    decision boundary. Pairs with `w_y = w_j` never change order: with
    `f_y > f_j` they impose no limit (radius `inf` if all pairs are such),
    with `f_y <= f_j` the point is misclassified (radius 0).

    Args:
        logits: Float tensor `(batch, classes)`, the network's outputs.
        labels: Integer labels `(batch,)` / `(batch, 1)` or one-hot labels.
        last_kernel: The last layer's kernel `(features, classes)` (Keras
            `Dense` layout), or the layer itself (its `inference_kernel()` or
            `kernel`). The logits must be `W^T g(x) + b` for this kernel.
        backbone_lipschitz: Positive L2 Lipschitz constant of the backbone `g`
            (e.g. `tflip.lipschitz.lipschitz_upper_bound(backbone)`).

    Returns:
        A float32 tensor `(batch,)`.

    Raises:
        ValueError: For a kernel of the wrong shape or a non-positive
            `backbone_lipschitz`.

    Example:
        >>> kernel = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]  # third logit is constant
        >>> pairwise_certified_radius([[2.0, 0.0, 0.5]], [0], kernel, 1.0).numpy()  # min(2/sqrt(2), 1.5/1)
        array([1.4142135], dtype=float32)
    """
    logits = _logits(logits)
    num_classes = logits.shape[-1]
    backbone_lipschitz = _validation.positive_number("backbone_lipschitz", backbone_lipschitz)
    indices = class_indices(labels, num_classes)
    _check_batch(logits, indices)
    kernel = _last_kernel(last_kernel, num_classes)
    # pair_norms[y, j] = ||w_y - w_j||_2 from the Gram matrix (classes x classes, small).
    gram = tf.matmul(kernel, kernel, transpose_a=True)
    diagonal = tf.linalg.diag_part(gram)
    pair_norms = tf.sqrt(tf.nn.relu(diagonal[:, None] + diagonal[None, :] - 2.0 * gram))
    true_logit = tf.gather(logits, indices, batch_dims=1)
    gaps = true_logit[:, None] - logits
    norms = tf.gather(pair_norms, indices) * backbone_lipschitz
    other = tf.logical_not(tf.one_hot(indices, num_classes, on_value=True, off_value=False, dtype=tf.bool))
    # A zero-norm pair is a constant gap: no limit if positive, radius 0 otherwise.
    safe_norms = tf.where(norms > 0.0, norms, tf.ones_like(norms))
    ratios = tf.where(norms > 0.0, gaps / safe_norms, tf.where(gaps > 0.0, np.inf, 0.0))
    ratios = tf.where(other, ratios, np.inf)
    return tf.nn.relu(tf.reduce_min(ratios, axis=-1))


def pairwise_certified_accuracy(logits, labels, last_kernel, backbone_lipschitz, epsilon):
    """Fraction of points whose `pairwise_certified_radius` exceeds `epsilon` (L2).

    At `epsilon = 0` this is the clean accuracy (ties are errors).

    Args:
        logits: Float tensor `(batch, classes)`.
        labels: Integer or one-hot labels.
        last_kernel: Kernel `(features, classes)` of the last linear layer, or the layer.
        backbone_lipschitz: Positive L2 Lipschitz constant of the backbone.
        epsilon: Non-negative radius, or a 1-D sequence of radii.

    Returns:
        A float32 scalar tensor, or a tensor `(len(epsilon),)` for a sequence.

    Example:
        >>> pairwise_certified_accuracy([[2.0, 0.0]], [0], [[1.0, -1.0]], 1.0, [0.0, 0.5, 1.5]).numpy()
        array([1., 1., 0.], dtype=float32)
    """
    epsilons, scalar = _epsilons(epsilon)
    radii = pairwise_certified_radius(logits, labels, last_kernel, backbone_lipschitz)
    certified = tf.cast(radii[:, None] > tf.reshape(epsilons, (1, -1)), tf.float32)
    accuracy = tf.reduce_mean(certified, axis=0)
    return accuracy[0] if scalar else accuracy
