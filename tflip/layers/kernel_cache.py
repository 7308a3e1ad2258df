"""Inference from an effective kernel computed once per change of the raw weights.

Constrained layers compute their effective kernel (orthonormalized,
projected, normalized) from raw variables. Training calls must recompute it
to differentiate through the constraint; inference calls need not, as long as
the raw variables have not changed since the last computation. This module
keeps one mechanism for that in every layer that has an effective kernel.
"""

import keras
import tensorflow as tf

from tflip.layers.base import float32_variable_read

# Largest part of a source compared by one op, and the most parts. Larger element-wise ops are split over the
# intra-op threads, whose hand-offs cost more than the comparison itself on few cores (a step-stats trace on 2
# cores: Equal + All over a 512x512 kernel 0.2 ms as one op pair, 0.1 ms as 16 pairs of 2^14 entries, which the
# executor runs side by side; 2^15-entry parts were already split again and slower).
_COMPARE_PART = 2**14
_MAX_PARTS = 64


def _identical(value, snapshot):
    """Scalar bool: every entry of `value` equals `snapshot`'s (compared in parts of at most `_COMPARE_PART`)."""
    size = value.shape.num_elements()
    parts = min(_MAX_PARTS, -(-size // _COMPARE_PART))
    if parts <= 1:
        return tf.reduce_all(tf.equal(value, snapshot))
    sizes = [size // parts + (1 if i < size % parts else 0) for i in range(parts)]
    pieces = zip(tf.split(tf.reshape(value, [-1]), sizes), tf.split(tf.reshape(snapshot, [-1]), sizes))
    return tf.reduce_all(tf.stack([tf.reduce_all(tf.equal(a, b)) for a, b in pieces]))


def _state_variable(name, shape, fill):
    # "on_read" synchronization: under a distribution strategy every replica
    # keeps (and refreshes) its own copy, so the refresh inside a replica's
    # `call` needs no cross-replica update; all copies are identical because
    # they are computed from identical mirrored raw weights.
    return keras.Variable(
        initializer=keras.initializers.Constant(fill),
        shape=shape,
        dtype="float32",
        trainable=False,
        autocast=False,
        aggregation="only_first_replica",
        synchronization="on_read",
        name=name,
    )


class CachedKernelLayer:
    """Mixin: `inference_kernel()` serves a cached effective kernel that is never stale.

    The layer calls `build_kernel_cache(kernel_shape)` at the end of `build`
    and implements `effective_kernel(training=False)` (the uncached float32
    computation) and `kernel_cache_sources()` (the variables the inference
    kernel is a function of: the raw kernel, power-iteration vectors...).

    The cache holds the last inference kernel and a snapshot of every source
    variable it was computed from. Each inference call compares the sources
    with their snapshots element by element (exact equality, under `tf.cond`)
    and recomputes the kernel only when one differs. Whatever changes a
    variable (an optimizer step, `set_weights`, `assign`, `load_weights`, a
    training-mode power iteration) is therefore seen by the next inference
    call, in eager mode, inside `tf.function` and under XLA. Changes to Python
    settings that the kernel depends on (e.g. a Björck iteration count) must
    call `invalidate_kernel_cache()`.

    Gradients flow as without the cache: with respect to the inputs through
    the cached kernel, and with respect to the raw weights by recomputing the
    effective kernel when such a gradient is taken (training should still
    use `training=True`, as `fit` does, for the training-mode kernel).
    """

    def build_kernel_cache(self, kernel_shape):
        """Creates the cache for an effective kernel of `kernel_shape`."""
        sources = self.kernel_cache_sources()
        if sources is None:
            return
        self.cached_kernel = _state_variable("cached_kernel", kernel_shape, 0.0)
        # NaN snapshots never compare equal, so the first inference call computes the kernel.
        self.kernel_snapshots = [
            _state_variable(f"{source.name}_snapshot", source.shape, float("nan")) for source in sources
        ]

    def kernel_cache_sources(self):
        """The variables the effective inference kernel depends on.

        `None` when the effective kernel is as cheap as reading a variable
        (e.g. a kernel constrained after each update): no cache is kept.
        """
        raise NotImplementedError

    def effective_kernel(self, training=False):
        raise NotImplementedError

    def inference_kernel(self):
        """The effective inference kernel (float32), recomputed only if a source changed."""
        variables = self.kernel_cache_sources()
        if variables is None:
            return self.effective_kernel(training=False)
        sources = [float32_variable_read(source) for source in variables]
        unchanged = None
        for s, snap in zip(sources, self.kernel_snapshots):
            same = _identical(s, float32_variable_read(snap))
            unchanged = same if unchanged is None else tf.logical_and(unchanged, same)

        def refresh():
            kernel = self.effective_kernel(training=False)
            updates = [self.cached_kernel.assign(kernel)]
            updates += [snap.assign(s) for s, snap in zip(sources, self.kernel_snapshots)]
            with tf.control_dependencies(updates):
                return tf.identity(kernel)

        def reuse():
            return tf.identity(float32_variable_read(self.cached_kernel))

        # Both branches give the same value; its gradient comes from `_with_kernel_gradient`.
        kernel = tf.stop_gradient(tf.cond(unchanged, reuse, refresh))
        return self._with_kernel_gradient(sources, kernel)

    def _with_kernel_gradient(self, sources, kernel):
        """`kernel`, differentiable with respect to the sources as `effective_kernel` is.

        The gradient recomputes the effective kernel, so it costs what an
        uncached call costs, and only when a gradient with respect to the
        weights is actually taken (e.g. a custom loop that calls the model
        without `training=True`).
        """
        variables = self.kernel_cache_sources()

        @tf.custom_gradient
        def attach(*inputs):
            def gradient(upstream):
                with tf.GradientTape() as tape:
                    tape.watch([variable.value for variable in variables])
                    recomputed = self.effective_kernel(training=False)
                grads = tape.gradient(recomputed, [variable.value for variable in variables], upstream)
                return [tf.zeros_like(s) if g is None else g for s, g in zip(inputs, grads)]

            return tf.identity(kernel), gradient

        return attach(*sources)

    def invalidate_kernel_cache(self):
        """Forces the next inference call to recompute the kernel."""
        if self.built and self.kernel_cache_sources() is not None:
            for snapshot in self.kernel_snapshots:
                snapshot.assign(tf.fill(snapshot.shape, float("nan")))

    def call_kernel(self, training):
        """The kernel a call uses: recomputed and differentiable in training, cached otherwise."""
        return self.effective_kernel(training=True) if training else self.inference_kernel()
