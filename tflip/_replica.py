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


def cross_replica_max(value):
    """The maximum of a per-replica scalar over all replicas, differentiable.

    The returned value is the global maximum on every replica; its gradient
    flows only on the replica that holds the maximum, multiplied by the number
    of replicas so that, after `scale_loss_for_replicas` and Keras' sum over
    replicas, the gradient equals the single-device gradient of the maximum.
    """
    replica_id, num_replicas = replica_info()
    if num_replicas == 1:
        return value
    context = tf.distribute.get_replica_context()
    global_max = tf.stop_gradient(context.all_reduce(tf.distribute.ReduceOp.MAX, value))
    owner = tf.cast(value >= global_max, value.dtype)
    return global_max + owner * num_replicas * (value - tf.stop_gradient(value))


class StatelessRandom:
    """Counter-based random draws shared by the replicas of a distributed step.

    Args:
        owner: the Keras layer or model that owns the counter weight.
        seed: Python int; draws are a deterministic function of
            `(seed, counter)`.
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

    def _next_seed(self):
        count = self.counter.assign_add(1)
        return tf.stack([tf.constant(self.seed, tf.int64), tf.convert_to_tensor(count, tf.int64)])

    def _draw(self, sampler, local_shape):
        """Draws `sampler(global_shape, seed)` and keeps this replica's rows."""
        replica_id, num_replicas = replica_info()
        local_shape = tf.convert_to_tensor(local_shape, tf.int32)
        rows = local_shape[0]
        global_shape = tf.concat([[rows * num_replicas], local_shape[1:]], axis=0)
        values = sampler(global_shape, self._next_seed())
        if num_replicas == 1:
            return values
        start = tf.cast(replica_id, tf.int32) * rows
        return values[start : start + rows]

    def uniform(self, local_shape, minval=0.0, maxval=1.0):
        """Uniform float32 samples of `local_shape` (batch dimension first)."""
        return self._draw(
            lambda shape, seed: tf.random.stateless_uniform(shape, seed, minval=minval, maxval=maxval),
            local_shape,
        )

    def normal(self, local_shape, stddev=1.0):
        """Standard normal float32 samples of `local_shape`, times `stddev`."""
        return self._draw(lambda shape, seed: tf.random.stateless_normal(shape, seed, stddev=stddev), local_shape)
