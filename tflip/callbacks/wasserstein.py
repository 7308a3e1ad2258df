"""A callback logging the exact W1 between generated and real samples."""

import keras
import numpy as np

from tflip import _validation
from tflip.metrics.wasserstein import wasserstein1_exact


class ExactWasserstein(keras.callbacks.Callback):
    """Logs `w1_exact`, the exact W1 between generated and real samples, every N epochs.

    At the end of every `every_n_epochs`-th epoch, generates `len(real)`
    samples with the model's `generate` and solves the optimal-transport
    problem to the held-out `real` samples exactly (Kuhn-Munkres; Petzka et
    al. section 6 used 500 samples). The value is added to the epoch logs
    (place this callback before `TensorBoard` / `CSVLogger` so they record
    it) and kept in `self.values` as `(epoch, w1)` pairs.

    Args:
        real: held-out real samples, `(n, ...)`; n = 500 to 2000 is typical.
        every_n_epochs: evaluation period in epochs.
        seed: seed of the generated samples (fixed latents across epochs
            make the curve smoother).
        name: the log key.
        use_ema: passed to the model's `generate`: True samples from the
            moving average of the generator (`WGAN(ema_decay=...)`), False
            from the raw generator; None (default) lets the model decide (a
            `WGAN` uses its average when it keeps one).

    Example:

        >>> monitor = ExactWasserstein(tflip.datasets.eight_gaussians(500, seed=1))
        >>> gan.fit(data, epochs=10, callbacks=[monitor, keras.callbacks.TensorBoard("logs")])
    """

    def __init__(self, real, every_n_epochs=1, seed=0, name="w1_exact", use_ema=None):
        super().__init__()
        self.real = np.asarray(real, dtype="float32")
        if self.real.ndim < 1 or len(self.real) == 0:
            raise ValueError(f"`real` must be a non-empty batch of samples, got shape {self.real.shape}.")
        self.every_n_epochs = _validation.positive_int("every_n_epochs", every_n_epochs)
        self.seed = seed
        self.name = name
        self.use_ema = None if use_ema is None else _validation.boolean("use_ema", use_ema)
        self.values = []

    def evaluate(self):
        """The exact W1 between `len(real)` generated samples and `real`."""
        # Only an explicit choice is passed on: models whose `generate` has no `use_ema` work as before.
        options = {} if self.use_ema is None else {"use_ema": self.use_ema}
        generated = self.model.generate(len(self.real), seed=self.seed, **options)
        return wasserstein1_exact(generated, self.real)

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every_n_epochs:
            return
        value = self.evaluate()
        self.values.append((epoch, value))
        if logs is not None:
            logs[self.name] = value
