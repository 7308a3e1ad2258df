"""Iteration settings shared by the layers that orthonormalize a matrix (BjorckDense, OrthogonalConv2D)."""

from tflip import _validation


class OrthonormalizationSettings:
    """Mixin: validates and stores the orthonormalization settings; keeps the inference cache in step.

    `training_steps` and `training_lower` configure the Polar Express
    iteration of training calls (`tflip.ops.bjorck.polar_express_orthonormalize`),
    `inference_iterations` the Björck steps of the cached inference kernel.
    Changing `inference_iterations` invalidates that cache (the layer is a
    `CachedKernelLayer`).
    """

    def set_orthonormalization_settings(self, inference_iterations, training_steps, training_lower):
        """Stores the validated settings; ValueError naming the first bad one."""
        self.training_steps = _validation.positive_int("training_steps", training_steps)
        self.training_lower = _validation.unit_fraction("training_lower", training_lower)
        self.inference_iterations = inference_iterations

    @property
    def inference_iterations(self):
        return self._inference_iterations

    @inference_iterations.setter
    def inference_iterations(self, value):
        self._inference_iterations = _validation.positive_int("inference_iterations", value)
        self.invalidate_kernel_cache()  # the cached kernel was computed with the old count

    def orthonormalization_config(self):
        """The stored settings, for `get_config`."""
        return {
            "inference_iterations": self.inference_iterations,
            "training_steps": self.training_steps,
            "training_lower": self.training_lower,
        }
