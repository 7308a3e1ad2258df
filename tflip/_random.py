"""Counter-based stateless random draws that every replica and every resumed run agree on.

Random numbers are drawn for the *global* batch from a stateless seed shared
by all replicas, and each replica keeps its own rows. Replicas therefore
never draw identical noise, the draws do not depend on the number of
devices, and a run restored from a checkpoint (the counter is a saved weight)
continues with the same numbers.

Names: a `seed` is a Python int or an int64 seed tensor of shape (2,); a
`SeedCounter` is the saved counter that hands out one `RandomStream` (a
`stream`) per step.
"""

import tensorflow as tf

from tflip._replica import replica_info

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
