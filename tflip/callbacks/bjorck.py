"""Tighten Björck-orthonormalized layers at the end of training."""

import keras

from tflip import _validation
from tflip.layers.base import iter_layers
from tflip.layers.bjorck_dense import BjorckDense


class BjorckTightening(keras.callbacks.Callback):
    """Raises the inference iterations of every `BjorckDense` at the end of training.

    Anil et al. (section 4.2.1, appendix B) train with a few Björck steps
    (2-3) and run 15 or more at the end so that the deployed weights are
    orthonormal to high accuracy. At `on_train_end` this callback sets each
    `BjorckDense` layer's `inference_iterations` to at least `iterations`
    (saved with the model: the raw kernel is never overwritten), measures the
    orthonormality error `max_i |sigma_i / lipschitz - 1|` before and after,
    and drops the model's cached predict/test functions so the next
    `predict`/`evaluate` traces with the new count.

    Args:
        iterations: Björck steps used at inference from then on (>= 1).
        verbose: print one line per layer.

    Attributes:
        report: `{layer path: (error before, error after)}` of the last run.

    Example:

        >>> model.fit(x, y, epochs=10, callbacks=[tflip.callbacks.BjorckTightening(30)])
    """

    def __init__(self, iterations=30, verbose=1):
        super().__init__()
        self.iterations = _validation.positive_int("iterations", iterations)
        self.verbose = verbose
        self.report = {}

    def tighten(self, model):
        """Applies the tightening to `model` now; returns the report."""
        self.report = {}
        layers = [layer for layer in iter_layers(model) if isinstance(layer, BjorckDense) and layer.built]
        for layer in layers:
            before = float(layer.orthonormality_error())
            layer.inference_iterations = max(layer.inference_iterations, self.iterations)
            after = float(layer.orthonormality_error())
            self.report[layer.path] = (before, after)
            if self.verbose:
                print(f"BjorckTightening: {layer.path}: orthonormality error {before:.2e} -> {after:.2e} "
                      f"({layer.inference_iterations} inference iterations)")
        for sub in iter_layers(model):
            if isinstance(sub, keras.Model):
                # Traced functions captured the old iteration count: rebuild
                # them untraced, so the next predict / evaluate traces anew.
                sub.make_predict_function(force=True)
                sub.make_test_function(force=True)
        return self.report

    def on_train_end(self, logs=None):
        self.tighten(self.model)
