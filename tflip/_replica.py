"""Replica-aware helpers for losses and random draws inside a `train_step`.

Under a `tf.distribute` strategy the same step runs once per replica on its
slice of the global batch. Two rules make a distributed step compute what the
single-device step computes on the global batch:

- every loss is divided by the number of replicas (each replica averages over
  its equal share of the batch; Keras sums the gradients across replicas);
- random numbers are drawn for the *global* batch from a counter-based
  stateless seed shared by all replicas, and each replica keeps its own rows.
  Replicas therefore never draw identical noise, the draws do not depend on
  the number of devices, and a run restored from a checkpoint (the counter is
  a saved weight) continues with the same numbers.
"""

import tensorflow as tf


def replica_info():
    """Returns `(replica_id, num_replicas)`; `(0, 1)` outside a replica context."""
    context = tf.distribute.get_replica_context()
    if context is None:  # cross-replica context: a single logical batch
        return 0, 1
    return context.replica_id_in_sync_group, context.num_replicas_in_sync


def scale_loss_for_replicas(loss):
    """Divides a per-replica mean loss so that summed gradients equal the global mean's."""
    _, num_replicas = replica_info()
    return loss / num_replicas if num_replicas > 1 else loss


def safe_mean(values):
    """Mean over a replica's share of a batch; 0 (not NaN) for an empty share.

    A distributed final batch smaller than the number of replicas leaves some
    replicas with no rows: their losses must contribute nothing, not NaN.
    """
    values = tf.reshape(values, [-1])
    count = tf.cast(tf.size(values), values.dtype)
    return tf.reduce_sum(values) / tf.maximum(count, 1.0)


def finite_max(values):
    """`reduce_max` whose value for an empty tensor is the dtype's lowest finite number (not -inf)."""
    values = tf.reshape(values, [-1])
    return tf.reduce_max(tf.concat([values, tf.constant([values.dtype.min], values.dtype)], axis=0))


def global_statistics(sums=(), maxima=()):
    """Sums and maxima of per-replica values over all replicas, by one all-reduce.

    Args:
        sums: scalars to sum over replicas.
        maxima: tensors whose maximum over all replicas is wanted.

    Returns:
        `(sums, maxima)`: lists of float32 scalars, not differentiated.

    ReduceOp has no MAX: each replica writes its maxima into its own slots of
    a zero vector that is summed with the sums, so one call costs a single
    SUM all-reduce, the cheapest way to reduce both.
    """
    sums = [tf.cast(tf.stop_gradient(v), "float32") for v in sums]
    maxima = [tf.cast(tf.stop_gradient(finite_max(v)), "float32") for v in maxima]
    replica_id, num_replicas = replica_info()
    if num_replicas == 1:
        return sums, maxima
    slots = tf.one_hot(replica_id, num_replicas, dtype="float32")
    packed = tf.concat([tf.stack(sums + [0.0])[:-1]] + [slots * m for m in maxima], axis=0)
    reduced = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, packed)
    count = len(sums)
    total = [reduced[i] for i in range(count)]
    largest = [tf.reduce_max(reduced[count + i * num_replicas : count + (i + 1) * num_replicas])
               for i in range(len(maxima))]
    return total, largest


def cross_replica_max(values):
    """The maximum of a per-replica vector over all replicas, differentiable.

    The returned scalar is the global maximum on every replica. Its gradient
    equals the single-device gradient of `reduce_max` over the global batch:
    TensorFlow splits the gradient of a maximum equally among tied entries
    (frequent with piecewise-linear critics, whose gradient norms are
    piecewise constant), so each replica receives the share of the global
    ties it holds, multiplied by the number of replicas to undo
    `scale_loss_for_replicas` before Keras sums the gradients over replicas.
    """
    local_max = finite_max(values)
    _, num_replicas = replica_info()
    if num_replicas == 1:
        return local_max
    (maximum,) = global_statistics(maxima=[local_max])[1]
    ties = tf.reduce_sum(tf.cast(tf.equal(tf.stop_gradient(values), maximum), values.dtype))
    (all_ties,) = global_statistics(sums=[ties])[0]
    share = ties / all_ties
    return maximum + num_replicas * share * (local_max - tf.stop_gradient(local_max))


# Fixed explicitly: "auto_select" may pick different generators with and
# without XLA, which would make `jit_compile=True` draw different numbers.
_ALGORITHM = "philox"


class RandomStream:
    """Stateless random draws derived from one seed, shared by all replicas.

    The k-th draw uses the seed `fold_in(seed, k)` with k counted in Python
    while tracing, so the draws of a step never depend on the execution order
    of stateful ops (several counter increments in one step were measured to
    be reordered by TensorFlow now and then, silently changing the noise).

    Each draw is made for the *global* batch and this replica keeps its own
    rows, so a distributed step sees the single-device numbers.

    Args:
        seed: int64 tensor of shape (2,).
    """

    def __init__(self, seed):
        self.seed = tf.cast(seed, tf.int64)
        self.draws = 0

    def next_seed(self):
        """A fresh seed (shape (2,)) for a sub-computation, e.g. a penalty call."""
        self.draws += 1
        return tf.random.experimental.stateless_fold_in(self.seed, self.draws, alg=_ALGORITHM)

    def _draw(self, sampler, local_shape):
        """Draws `sampler(global_shape, seed)` and keeps this replica's rows."""
        replica_id, num_replicas = replica_info()
        local_shape = tf.convert_to_tensor(local_shape, tf.int32)
        rows = local_shape[0]
        global_shape = tf.concat([[rows * num_replicas], local_shape[1:]], axis=0)
        values = sampler(global_shape, self.next_seed())
        if num_replicas == 1:
            return values
        start = tf.cast(replica_id, tf.int32) * rows
        return values[start : start + rows]

    def uniform(self, local_shape, minval=0.0, maxval=1.0):
        """Uniform float32 samples of `local_shape` (batch dimension first)."""
        return self._draw(
            lambda shape, seed: tf.random.stateless_uniform(shape, seed, minval=minval, maxval=maxval, alg=_ALGORITHM),
            local_shape,
        )

    def normal(self, local_shape, stddev=1.0):
        """Standard normal float32 samples of `local_shape`, times `stddev`."""
        return self._draw(
            lambda shape, seed: tf.random.stateless_normal(shape, seed, stddev=stddev, alg=_ALGORITHM), local_shape
        )


class SeedCounter:
    """A saved counter that hands out one `RandomStream` per call.

    Draws are a function of `(seed, counter)`: a run restored from a
    checkpoint (the counter is a weight of its owner) continues with the same
    numbers, and all replicas share the counter.

    Args:
        owner: the Keras layer or model that owns the counter weight.
        seed: Python int.
        name: name of the counter weight.
    """

    def __init__(self, owner, seed, name="random_counter"):
        self.seed = int(seed)
        self.counter = owner.add_weight(
            shape=(),
            dtype="int64",
            initializer="zeros",
            trainable=False,
            name=name,
            aggregation="only_first_replica",
        )

    def stream(self, seed=None):
        """A `RandomStream` from `seed` if given, else from the next counter value.

        Call it once per step: the counter is incremented once.
        """
        if seed is not None:
            return RandomStream(seed)
        count = self.counter.assign_add(1)
        return RandomStream(tf.stack([tf.constant(self.seed, tf.int64), tf.convert_to_tensor(count, tf.int64)]))
