"""Pictures of a 2-D critic: level sets with samples, and its gradient-norm heatmap."""

import keras
import numpy as np
import tensorflow as tf

from tflip import _validation
from tflip.callbacks.summary import SummaryCallback, figure_pixels
from tflip.gradients import values_and_input_gradients


def critic_of(model):
    """The critic network of a WGAN / WassersteinCritic, or the model itself."""
    critic = getattr(model, "critic", None)
    return critic if isinstance(critic, keras.Model) else model


def critic_field(critic, points, batch_size=8192):
    """Critic values and input-gradient norms at `points` `(n, 2)`, float32 numpy arrays `(n,)`."""
    values, norms = [], []
    for start in range(0, len(points), batch_size):
        x = tf.convert_to_tensor(points[start:start + batch_size], tf.float32)
        y, gradient = values_and_input_gradients(critic, x, training=False)
        values.append(y.numpy())
        norms.append(tf.norm(gradient, axis=1).numpy())
    return np.concatenate(values), np.concatenate(norms)


def _samples(name, value):
    value = np.asarray(value, dtype="float32")
    if value.ndim != 2 or value.shape[1] != 2 or len(value) == 0:
        raise ValueError(f"`{name}` must be 2-D samples of shape (n, 2), got shape {value.shape}.")
    return value


class CriticLevelSets(SummaryCallback):
    """Logs an image of a 2-D critic's level sets and of its gradient-norm heatmap.

    Left panel: filled contours of the critic f on a grid, with the real
    samples and generated (or `fake`) samples overlaid; right panel: the
    gradient norm ||grad f(x)|| on the same grid, with the level
    ||grad f|| = 1 drawn (Petzka et al. fig. 3, Terjek fig. 2). The grid
    extent is fixed at the first picture so pictures of successive epochs
    are comparable. Scalars `critic_grid_gradient_norm_max`, `_mean` and
    `critic_grid_fraction_above_1` summarize the heatmap.

    Args:
        real: real samples `(n, 2)` to overlay (a few hundred).
        log_dir: TensorBoard directory.
        every_n_epochs: period.
        fake: samples of the second distribution `(m, 2)` for critic-only
            models; by default `model.generate(len(real), seed)` (fixed
            latent draws across epochs).
        resolution: grid points per axis.
        extent: `(x_min, x_max, y_min, y_max)`; default: the real samples'
            bounding box with a 50% margin. Samples outside are not drawn.
        seed: seed of the generated samples.
        image_dir: also save the pictures as PNG files there (see `SummaryCallback`).
        strict: re-raise logging failures instead of warning.

    Example:

        >>> gan.fit(data, epochs=10, callbacks=[tflip.callbacks.CriticLevelSets(real[:500], "logs/pictures")])
    """

    def __init__(self, real, log_dir, every_n_epochs=1, fake=None, resolution=128, extent=None, seed=0,
                 image_dir=None, strict=False):
        super().__init__(log_dir, every_n_epochs, image_dir, strict)
        self.real = _samples("real", real)
        self.fake = None if fake is None else _samples("fake", fake)
        self.resolution = _validation.positive_int("resolution", resolution, minimum=2)
        if extent is not None:
            extent = tuple(float(v) for v in extent)
            if len(extent) != 4 or not (extent[0] < extent[1] and extent[2] < extent[3]):
                raise ValueError(f"`extent` must be (x_min, x_max, y_min, y_max) with min < max, got {extent!r}.")
        self.extent = extent
        self.seed = seed

    def _fake(self):
        if self.fake is not None:
            return self.fake
        if not hasattr(self.model, "generate"):
            raise ValueError("CriticLevelSets needs `fake` samples for a model without `generate`.")
        return np.asarray(self.model.generate(len(self.real), seed=self.seed), dtype="float32")

    def grid(self):
        """The grid points `(resolution**2, 2)` and their x and y axes."""
        x_min, x_max, y_min, y_max = self.extent
        xs = np.linspace(x_min, x_max, self.resolution, dtype="float32")
        ys = np.linspace(y_min, y_max, self.resolution, dtype="float32")
        mesh = np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2)
        return mesh, xs, ys

    def write(self, epoch, logs):
        fake = self._fake()
        if self.extent is None:
            low, high = self.real.min(axis=0), self.real.max(axis=0)
            margin = 0.5 * np.maximum(high - low, 1e-3)
            self.extent = (low[0] - margin[0], high[0] + margin[0], low[1] - margin[1], high[1] + margin[1])
        points, xs, ys = self.grid()
        values, norms = critic_field(critic_of(self.model), points)
        shape = (self.resolution, self.resolution)
        tf.summary.scalar("critic_grid_gradient_norm_max", float(norms.max()), step=epoch)
        tf.summary.scalar("critic_grid_gradient_norm_mean", float(norms.mean()), step=epoch)
        tf.summary.scalar("critic_grid_fraction_above_1", float(np.mean(norms > 1.0)), step=epoch)
        pixels = level_set_pixels(xs, ys, values.reshape(shape), norms.reshape(shape), self.real, fake, epoch)
        self.image("critic_level_sets", pixels, epoch)


def level_set_pixels(xs, ys, values, norms, real, fake, epoch=None):
    """The two-panel picture as RGB pixels (1200 x 500)."""

    def draw(figure):
        left, right = figure.subplots(1, 2)
        filled = left.contourf(xs, ys, values, levels=20, cmap="viridis")
        left.contour(xs, ys, values, levels=20, colors="k", linewidths=0.3)
        figure.colorbar(filled, ax=left, label="critic f(x)")
        left.scatter(real[:, 0], real[:, 1], s=5, c="red", edgecolors="black", linewidths=0.3, label="real")
        left.scatter(fake[:, 0], fake[:, 1], s=5, c="white", edgecolors="black", linewidths=0.3, label="generated")
        left.set_xlim(xs[0], xs[-1])
        left.set_ylim(ys[0], ys[-1])
        left.legend(loc="upper right", fontsize="small")
        left.set_title("critic level sets" + ("" if epoch is None else f", epoch {epoch}"))
        heat = right.imshow(norms, origin="lower", extent=(xs[0], xs[-1], ys[0], ys[-1]), aspect="auto",
                            cmap="magma", vmin=0.0)
        figure.colorbar(heat, ax=right, label="||grad f(x)||")
        if norms.min() < 1.0 < norms.max():
            right.contour(xs, ys, norms, levels=[1.0], colors="cyan", linewidths=0.8)
        right.set_title("gradient norm (cyan: = 1)")
        figure.tight_layout()

    return figure_pixels(draw, size=(1200, 500))
