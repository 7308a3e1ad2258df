"""Gradient attacks (FGSM, PGD) on classifiers, to check certificates empirically.

Anil, Lucas and Grosse, "Sorting out Lipschitz Function Approximation" (ICML
2019), sec. 7.3 and app. G.4, attack L-infinity networks with the fast
gradient sign method (Goodfellow et al. 2015) and projected gradient descent
(Madry et al. 2018) on the Carlini-Wagner margin loss

    cw(x) = max_{j != y} f_j(x) - f_y(x)  (= -prediction margin),

which they found much stronger than cross-entropy against large-margin
Lipschitz networks. Both attacks here maximize that loss inside the ball
`||x_adv - x||_norm <= epsilon` (L-infinity or per-sample L2) and,
optionally, the box `clip = (lo, hi)` of valid inputs; `x` itself is assumed
to lie in the box. The point is misclassified once `cw >= 0` (ties count as
errors, as in `tflip.metrics.robustness`).

All computations are float32 TensorFlow ops with fixed iteration counts, so
the attacks run eagerly or inside a `tf.function` (with Python numbers for
the hyper-parameters, which are checked when traced). The error an attack
achieves is only a lower bound of the true robust error (a stronger attack
may find more); `1 - tflip.metrics.certified_accuracy` is a provable upper
bound.
"""

import functools
import numbers

import tensorflow as tf

from tflip import _validation
from tflip.metrics.robustness import _check_batch, _logits, class_indices, margins_from_indices
from tflip.ops.norms import check_norm

_ATTACKS = ("fgsm", "pgd")


def _sample_axes(x):
    return list(range(1, x.shape.rank))


def _l2_norms(v):
    """Per-sample L2 norms, shaped to broadcast against `v`."""
    return tf.sqrt(tf.reduce_sum(tf.square(v), axis=_sample_axes(v), keepdims=True))


def _ascent_direction(grad, norm):
    """The unit-norm steepest-ascent direction: sign for L-infinity, normalized gradient for L2."""
    if norm == "inf":
        return tf.sign(grad)
    # A zero gradient (flat region) gives a zero step rather than NaN.
    return tf.math.divide_no_nan(grad, _l2_norms(grad))


def _project(x_adv, x, epsilon, norm, clip):
    """Projection onto the epsilon-ball around `x`, then onto the box.

    Clipping to the box only shrinks each coordinate of the perturbation
    towards 0 (`x` is in the box), so the result stays in the ball: the two
    steps give a point of the intersection (the exact projection for L-infinity).
    """
    delta = x_adv - x
    if norm == "inf":
        delta = tf.clip_by_value(delta, -epsilon, epsilon)
    else:
        lengths = _l2_norms(delta)
        # A zero perturbation gets factor 0 from divide_no_nan, which leaves it zero as it should.
        delta = delta * tf.minimum(1.0, tf.math.divide_no_nan(tf.constant(epsilon, tf.float32), lengths))
    x_adv = x + delta
    if clip is not None:
        x_adv = tf.clip_by_value(x_adv, clip[0], clip[1])
    return x_adv


def _cw_loss_and_gradient(model, x, indices=None, labels=None):
    """CW loss and its input gradient; `labels` are converted to `indices` on the way if given."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        logits = _logits(model(x, training=False))
        if indices is None:
            indices = class_indices(labels, logits.shape[-1])
            _check_batch(logits, indices)
        loss = -margins_from_indices(logits, indices)
        total = tf.reduce_sum(loss)  # samples are independent: one backward pass for all gradients
    return loss, tape.gradient(total, x), indices


def _inputs(x):
    x = tf.cast(tf.convert_to_tensor(x), tf.float32)
    if x.shape.rank is None or x.shape.rank < 2:
        raise ValueError(f"`x` must be a batch of samples (batch, ...), got shape {x.shape}.")
    return x


# The attacks have no Python control flow on tensors: skipping AutoGraph's source transformation (of the attack
# and, through it, of the model's code) saves seconds of tracing under tf.function.
@tf.autograph.experimental.do_not_convert
def fgsm(model, x, labels, epsilon, norm="inf", clip=None):
    """Fast gradient (sign) method on the Carlini-Wagner margin loss.

    One step of size `epsilon` along the steepest-ascent direction of the CW
    loss in the attack norm: `x + epsilon * sign(g)` for L-infinity (FGSM,
    Goodfellow et al. 2015), `x + epsilon * g / ||g||_2` per sample for L2
    (the fast gradient method), then clipped to `clip`.

    Args:
        model: Keras model (or callable `model(x, training=False)`) returning
            logits `(batch, classes)`.
        x: Inputs `(batch, ...)`, cast to float32.
        labels: Integer labels `(batch,)` / `(batch, 1)` or one-hot labels.
        epsilon: Non-negative attack radius.
        norm: `"inf"` (default) or 2.
        clip: `None` or the input box `(lo, hi)`.

    Returns:
        Float32 adversarial inputs of the shape of `x`.

    Raises:
        ValueError: For a bad `epsilon`, `norm`, `clip`, `x` or `labels`.

    Example:
        >>> x_adv = fgsm(model, images, labels, epsilon=0.1, norm="inf", clip=(0.0, 1.0))
    """
    epsilon = _validation.non_negative_number("epsilon", epsilon)
    norm = check_norm(norm)
    clip = None if clip is None else _validation.interval("clip", clip)
    x = _inputs(x)
    _, grad, _ = _cw_loss_and_gradient(model, x, labels=labels)
    x_adv = x + epsilon * _ascent_direction(grad, norm)
    return _project(x_adv, x, epsilon, norm, clip)


def _random_start(x, radius, norm, seed):
    """A uniform random point of the `radius`-ball around every sample (stateless, reproducible)."""
    shape = tf.shape(x)
    if norm == "inf":
        return x + tf.random.stateless_uniform(shape, seed=(seed, 0), minval=-radius, maxval=radius)
    # Uniform in the L2 ball: a uniform direction and a radius distributed as u^(1/d).
    direction = tf.random.stateless_normal(shape, seed=(seed, 1))
    direction = tf.math.divide_no_nan(direction, _l2_norms(direction))
    dimension = tf.cast(tf.reduce_prod(shape[1:]), tf.float32)
    u = tf.random.stateless_uniform(tf.concat([shape[:1], tf.ones_like(shape[1:])], 0), seed=(seed, 2))
    return x + radius * tf.pow(u, 1.0 / dimension) * direction


def _check_random_start(random_start):
    if isinstance(random_start, bool):
        return 1.0 if random_start else 0.0
    if isinstance(random_start, numbers.Real) and 0.0 <= random_start <= 1.0:
        return float(random_start)
    raise ValueError(f"`random_start` must be a bool or a fraction of `epsilon` in [0, 1], got {random_start!r}.")


@tf.autograph.experimental.do_not_convert
def pgd(model, x, labels, epsilon, step_size, steps, norm="inf", clip=None, random_start=True, seed=0):
    """Projected gradient ascent on the Carlini-Wagner margin loss (Madry et al. 2018).

    Starts at a random point of the ball (optional), then repeats `steps`
    times: a step of length `step_size` along the steepest-ascent direction
    in the attack norm (sign of the gradient for L-infinity, normalized
    per-sample gradient for L2), projection onto the `epsilon`-ball around
    `x` and onto `clip`. Returns, per sample, the point with the largest CW
    loss among `x` itself and all iterates, so a point misclassified at any
    time (or from the start) stays misclassified.

    Args:
        model: Keras model (or callable `model(x, training=False)`) returning
            logits `(batch, classes)`.
        x: Inputs `(batch, ...)`, cast to float32.
        labels: Integer labels `(batch,)` / `(batch, 1)` or one-hot labels.
        epsilon: Non-negative attack radius.
        step_size: Positive step length (in the attack norm), typically
            `2.5 * epsilon / steps`.
        steps: Number of gradient steps, an integer >= 1.
        norm: `"inf"` (default) or 2.
        clip: `None` or the input box `(lo, hi)`.
        random_start: `True` (uniform start in the ball), `False` (start at
            `x`), or a fraction of `epsilon` in `[0, 1]`: the radius of the
            start ball (Anil et al., app. G.4, used `0.1`).
        seed: Integer >= 0, seed of the stateless random start.

    Returns:
        Float32 adversarial inputs of the shape of `x`.

    Raises:
        ValueError: For any bad argument.

    Example:
        >>> x_adv = pgd(model, images, labels, epsilon=0.1, step_size=0.01, steps=40, clip=(0.0, 1.0))
    """
    epsilon = _validation.non_negative_number("epsilon", epsilon)
    step_size = _validation.positive_number("step_size", step_size)
    steps = _validation.positive_int("steps", steps)
    norm = check_norm(norm)
    clip = None if clip is None else _validation.interval("clip", clip)
    start = _check_random_start(random_start)
    seed = _validation.random_seed("seed", seed)
    x = _inputs(x)
    best_x = x
    # The clean point is the first candidate: an already misclassified sample stays so.
    logits = _logits(model(x, training=False))
    indices = class_indices(labels, logits.shape[-1])
    _check_batch(logits, indices)
    best_loss = -margins_from_indices(logits, indices)
    x_adv = x
    if start > 0.0 and epsilon > 0.0:
        x_adv = _project(_random_start(x, start * epsilon, norm, seed), x, epsilon, norm, clip)
    shape = [1] * x.shape.rank

    def keep_best(candidate, loss, best_x, best_loss):
        better = loss > best_loss
        return tf.where(tf.reshape(better, [-1] + shape[1:]), candidate, best_x), tf.maximum(loss, best_loss)

    def body(i, x_adv, best_x, best_loss):
        loss, grad, _ = _cw_loss_and_gradient(model, x_adv, indices)
        best_x, best_loss = keep_best(x_adv, loss, best_x, best_loss)
        x_adv = _project(x_adv + step_size * _ascent_direction(grad, norm), x, epsilon, norm, clip)
        return i + 1, x_adv, best_x, best_loss

    # A while loop keeps the graph one step long under tf.function (a Python loop would unroll `steps` copies).
    # Its last pass only scores the final iterate: the step it takes is discarded, but no third copy of the
    # model's graph is traced for that score.
    _, _, best_x, _ = tf.while_loop(
        lambda i, *_: i <= steps, body, (tf.constant(0), x_adv, best_x, best_loss), maximum_iterations=steps + 1
    )
    return best_x


def robust_error(model, x, labels, attack="pgd", batch_size=None, **attack_kwargs):
    """Fraction of samples misclassified at `x` or at the attack's adversarial point.

    An empirical lower bound of the error under all perturbations of the
    attack's size (Anil et al., table 3); compare with `1 - certified_accuracy`,
    a provable upper bound. The built-in attacks are compiled once with
    `tf.function` and reused for every batch (eager PGD pays the Python
    overhead of every op at every step).

    Args:
        model: Keras model returning logits `(batch, classes)`.
        x: Inputs `(n, ...)`.
        labels: Integer labels `(n,)` / `(n, 1)` or one-hot labels `(n, classes)`.
        attack: `"pgd"` (default), `"fgsm"`, or a callable
            `attack(model, x, class_indices, **attack_kwargs)` returning
            adversarial inputs (it receives int32 class indices `(batch,)`).
        batch_size: Samples attacked at once (`None`: all).
        **attack_kwargs: Arguments of the attack (`epsilon`, `norm`, `clip`,
            and for PGD `step_size`, `steps`, `random_start`, `seed`).

    Returns:
        The robust error as a Python float in `[0, 1]`.

    Raises:
        ValueError: For an unknown `attack`, bad `x`, `labels` or
            `batch_size`, or bad attack arguments.

    Example:
        >>> robust_error(model, x, y, "pgd", epsilon=0.1, step_size=0.01, steps=100, clip=(0.0, 1.0))
    """
    if callable(attack):
        run = functools.partial(attack, model, **attack_kwargs)
    else:
        function = {"fgsm": fgsm, "pgd": pgd}[_validation.one_of("attack", attack, _ATTACKS)]
        run = tf.function(functools.partial(function, model, **attack_kwargs), reduce_retracing=True)
    x = _inputs(x)
    if x.shape[0] == 0:
        raise ValueError(f"`x` must be a non-empty batch of samples (n, ...), got shape {x.shape}.")
    labels = tf.convert_to_tensor(labels)
    count = x.shape[0]
    if labels.shape.rank is None or labels.shape.rank == 0 or labels.shape[0] != count:
        raise ValueError(f"`labels` must hold one label per sample of `x` ({count}), got shape {labels.shape}.")
    batch_size = count if batch_size is None else _validation.positive_int("batch_size", batch_size)
    errors = 0
    for begin in range(0, count, batch_size):
        xb, yb = x[begin : begin + batch_size], labels[begin : begin + batch_size]
        clean = _logits(model(xb, training=False))
        # Labels are checked here, eagerly: inside the compiled attack their values are not known.
        indices = class_indices(yb, clean.shape[-1])
        _check_batch(clean, indices)
        x_adv = run(xb, indices)
        adversarial = _logits(model(x_adv, training=False))
        wrong = (margins_from_indices(clean, indices) <= 0) | (margins_from_indices(adversarial, indices) <= 0)
        errors += int(tf.reduce_sum(tf.cast(wrong, tf.int32)))
    return errors / count
