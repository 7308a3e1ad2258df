"""Replica-aware reductions for losses and statistics inside a `train_step`.

Under a `tf.distribute` strategy the same step runs once per replica on its
slice of the global batch. Every loss is divided by the number of replicas
(each replica averages over its equal share of the batch; Keras sums the
gradients across replicas), and batch statistics (sums, maxima) are reduced
over all replicas, so that a distributed step computes what the single-device
step computes on the global batch. Random draws follow the same rule in
`tflip._random`.
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

