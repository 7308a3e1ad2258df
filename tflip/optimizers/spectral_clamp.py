"""Spectral gradient clamping (Sargent thesis section 4.2.3, after Brock et al. 2018)."""

import keras
import tensorflow as tf

from tflip import _validation
from tflip.ops.spectra import matrix_to_kernel, spectral_clamp, top_singular_pairs, weight_matrix


def clampable(variable):
    """Weight matrices: Dense kernels and conv kernels (rank >= 2) whose matrix has two or more singular values."""
    shape = tuple(variable.shape)
    return len(shape) >= 2 and min(weight_matrix_shape(shape)) >= 2


def weight_matrix_shape(shape):
    """Shape of `tflip.ops.spectra.weight_matrix` for a kernel of `shape`."""
    if len(shape) == 2:
        return tuple(shape)
    rest = 1
    for size in shape[:-1]:
        rest *= size
    return (shape[-1], rest)


@keras.saving.register_keras_serializable(package="tflip")
class SpectralGradientClamp(keras.optimizers.Optimizer):
    """Optimizer wrapper clamping sigma_0 / sigma_1 of every weight gradient to at most `ratio`.

    Per weight matrix G (a Dense kernel, or a conv kernel reshaped to
    `out x (kh*kw*in)`), keeps running estimates of the top two singular
    triplets of the gradient (`iterations` steps of warm-started subspace
    iteration plus a Rayleigh-Ritz step per update) and replaces G by
    `G - max(0, sigma_0 - ratio * sigma_1) u_0 v_0^T` before the inner
    optimizer uses it. The thesis prints `min(0, .)`, a sign typo: clamping
    must lower sigma_0 to at most `ratio * sigma_1`. Biases and other
    vectors pass unchanged. Sargent found `ratio` of 1.5-2 harmless in the
    generator and >= 15 needed in the critic (section 5.5.3).

    Under a distribution strategy the clamp acts on the gradient summed
    over replicas (the update actually applied), not on per-replica
    gradients: the wrapper all-reduces the gradients itself, clamps them
    identically on every replica, and hands `1 / num_replicas` of the result
    to the inner optimizer, whose own all-reduce sums it back.

    The warm-start vectors and the diagnostics are optimizer variables,
    saved with the model. `diagnostics()` returns, for the last update,
    `sigma_ratio_mean` / `sigma_ratio_max` (sigma_0 / sigma_1 of the
    gradients before clamping), `clamp_fraction` (the share of matrices
    clamped) and `clamp_count` (clamps since creation);
    `tflip.callbacks.SpectrumLogger` logs them.

    Args:
        inner_optimizer: the Keras optimizer that applies the clamped gradients.
        ratio: the bound r > 1 on sigma_0 / sigma_1 of each update.
        iterations: subspace-iteration steps per update (>= 1); the warm
            start makes 1 enough for slowly varying gradients.
        name: optimizer name.

    Example:

        >>> optimizer = tflip.optimizers.SpectralGradientClamp(keras.optimizers.Adam(1e-4), ratio=2.0)
        >>> gan.compile(generator_optimizer=optimizer)
    """

    def __init__(self, inner_optimizer, ratio=2.0, iterations=1, name=None, **kwargs):
        if kwargs:
            raise ValueError(f"SpectralGradientClamp does not support arguments {sorted(kwargs)}; "
                             "set them on `inner_optimizer`.")
        if not isinstance(inner_optimizer, keras.optimizers.Optimizer):
            raise ValueError(f"`inner_optimizer` must be a keras.optimizers.Optimizer, got {inner_optimizer!r}.")
        super().__init__(learning_rate=0.0, name=name)
        self.inner_optimizer = inner_optimizer
        self.ratio = _validation.positive_number("ratio", ratio)
        if self.ratio <= 1.0:
            raise ValueError(f"`ratio` must be > 1, got {ratio!r}.")
        self.iterations_per_update = _validation.positive_int("iterations", iterations)

    def build(self, var_list):
        # Index of each clamped variable in var_list -> its state.
        self._clamped = [i for i, variable in enumerate(var_list) if clampable(variable)]
        self._right_vectors = []
        for i in self._clamped:
            columns = weight_matrix_shape(tuple(var_list[i].shape))[1]
            self._right_vectors.append(self.add_variable(
                (columns, 2), initializer=keras.initializers.RandomNormal(seed=i), dtype="float32",
                aggregation="only_first_replica", name=f"clamp_right_vectors_{i}",
            ))
        count = max(len(self._clamped), 1)
        self.sigma_ratio = self.add_variable((count,), dtype="float32", aggregation="only_first_replica",
                                             name="clamp_sigma_ratio")
        self.clamped = self.add_variable((count,), dtype="float32", aggregation="only_first_replica",
                                         name="clamp_clamped")
        self.clamp_count = self.add_variable((), dtype="int64", aggregation="only_first_replica",
                                             name="clamp_count")
        self.inner_optimizer.build(var_list)
        super().build(var_list)

    @property
    def variables(self):
        return self._variables + self.inner_optimizer.variables

    def clamp(self, grads):
        """The clamped gradients (one per trainable variable); updates the running state."""
        grads = list(grads)
        ratios, flags = [], []
        for position, (i, right) in enumerate(zip(self._clamped, self._right_vectors)):
            if grads[i] is None:
                ratios.append(tf.constant(0.0))
                flags.append(tf.constant(0.0))
                continue
            grad = tf.convert_to_tensor(grads[i])
            matrix = weight_matrix(grad)
            sigma, left, new_right = top_singular_pairs(matrix, right, self.iterations_per_update)
            right.assign(new_right)
            clamped, excess = spectral_clamp(matrix, self.ratio, sigma, left, new_right)
            grads[i] = tf.cast(matrix_to_kernel(clamped, grad.shape), grad.dtype)
            ratios.append(sigma[0] / tf.maximum(sigma[1], 1e-30))
            flags.append(tf.cast(excess > 0, tf.float32))
        if self._clamped:
            self.sigma_ratio.assign(tf.stack(ratios))
            self.clamped.assign(tf.stack(flags))
            self.clamp_count.assign_add(tf.cast(tf.reduce_sum(tf.stack(flags)), "int64"))
        return grads

    def apply(self, grads, trainable_variables=None):
        if not self.built:
            if trainable_variables is None:
                raise ValueError("Build the optimizer with `build(variables)` or pass `trainable_variables`.")
            with keras.name_scope(self.name, caller=self):
                self.build(list(trainable_variables))
            self.built = True
        grads = list(grads)
        context = tf.distribute.get_replica_context()
        replicas = context.num_replicas_in_sync if context is not None else 1
        if replicas > 1:
            present = [i for i, g in enumerate(grads) if g is not None]
            reduced = context.all_reduce(tf.distribute.ReduceOp.SUM, [grads[i] for i in present])
            for i, g in zip(present, reduced):
                grads[i] = g
        grads = self.clamp(grads)
        if replicas > 1:
            # The inner optimizer sums over replicas again: hand it an equal share.
            grads = [None if g is None else g / replicas for g in grads]
        self.inner_optimizer.apply(grads, trainable_variables)

    def stateless_apply(self, optimizer_variables, grads, trainable_variables):
        raise NotImplementedError("SpectralGradientClamp supports the TensorFlow backend's stateful `apply` only.")

    def diagnostics(self):
        """`{name: float}` of the last update (see the class docstring); empty before the first build."""
        if not self.built or not self._clamped:
            return {}
        ratio = tf.convert_to_tensor(self.sigma_ratio)
        return {
            "sigma_ratio_mean": float(tf.reduce_mean(ratio)),
            "sigma_ratio_max": float(tf.reduce_max(ratio)),
            "clamp_fraction": float(tf.reduce_mean(tf.convert_to_tensor(self.clamped))),
            "clamp_count": int(tf.convert_to_tensor(self.clamp_count)),
        }

    @property
    def learning_rate(self):
        return self.inner_optimizer.learning_rate

    @learning_rate.setter
    def learning_rate(self, learning_rate):
        # The base constructor sets a placeholder rate before the inner optimizer exists.
        if "inner_optimizer" in self.__dict__:
            self.inner_optimizer.learning_rate = learning_rate

    @property
    def iterations(self):
        return self.inner_optimizer.iterations

    def scale_loss(self, loss):
        return self.inner_optimizer.scale_loss(loss)

    def finalize_variable_values(self, var_list):
        self.inner_optimizer.finalize_variable_values(var_list)

    def get_config(self):
        return {
            "name": self.name,
            "inner_optimizer": keras.saving.serialize_keras_object(self.inner_optimizer),
            "ratio": self.ratio,
            "iterations": self.iterations_per_update,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        inner = keras.saving.deserialize_keras_object(config.pop("inner_optimizer"), custom_objects=custom_objects)
        return cls(inner, **config)
