"""A grid of generated images from fixed latent vectors."""

import math

import numpy as np

from tflip import _validation
from tflip.callbacks.summary import SummaryCallback


def tile_images(images, columns, value_range=(-1.0, 1.0), zoom=1, border=1):
    """Tiles `(n, h, w, c)` images into one uint8 `(H, W, c)` picture.

    Values are mapped linearly from `value_range` to [0, 255] and clipped;
    each image is enlarged `zoom` times (nearest neighbour) and framed by a
    `border`-pixel white margin. Rows are filled left to right; missing cells
    stay white.
    """
    images = np.asarray(images, dtype="float64")
    n, h, w, c = images.shape
    rows = math.ceil(n / columns)
    low, high = value_range
    scaled = np.clip((images - low) / (high - low), 0.0, 1.0) * 255.0
    scaled = np.repeat(np.repeat(scaled, zoom, axis=1), zoom, axis=2)
    h, w = h * zoom, w * zoom
    canvas = np.full((rows * h + (rows + 1) * border, columns * w + (columns + 1) * border, c), 255.0)
    for i in range(n):
        r, col = divmod(i, columns)
        top, left = border + r * (h + border), border + col * (w + border)
        canvas[top:top + h, left:left + w] = scaled[i]
    return np.round(canvas).astype("uint8")


class SampleGrid(SummaryCallback):
    """Logs a grid of generated images, from the same latent vectors every time.

    The latent vectors are drawn once (standard normal, `seed`) so the
    pictures of successive epochs show how the same samples evolve.

    Args:
        log_dir: TensorBoard directory.
        every_n_epochs: period.
        n: number of images (16).
        columns: images per row (default: ceil(sqrt(n))).
        image_shape: `(h, w)` or `(h, w, c)` to reshape flat samples to;
            default: the generator's output shape (`(n, h, w)`, `(n, h, w, c)`,
            or flat with a square number of pixels).
        value_range: the generator's output range mapped to black..white.
        zoom: integer enlargement (default: so the images are at least 64 px).
        seed: seed of the fixed latent vectors.
        use_ema: draw from the moving average of a `WGAN`'s generator (True),
            its raw generator (False), or (None, default) the average if the
            model keeps one (`WGAN.sampling_generator`).
        image_dir: also save the pictures as PNG files there (see `SummaryCallback`).
        strict: re-raise logging failures instead of warning.

    Example:

        >>> gan.fit(digits, epochs=50, callbacks=[tflip.callbacks.SampleGrid("logs/samples", image_shape=(8, 8))])
    """

    def __init__(self, log_dir, every_n_epochs=1, n=16, columns=None, image_shape=None, value_range=(-1.0, 1.0),
                 zoom=None, seed=0, image_dir=None, strict=False, use_ema=None):
        super().__init__(log_dir, every_n_epochs, image_dir, strict)
        self.n = _validation.positive_int("n", n)
        self.columns = math.ceil(math.sqrt(self.n)) if columns is None else _validation.positive_int("columns", columns)
        if image_shape is not None:
            image_shape = tuple(image_shape)
            if len(image_shape) not in (2, 3) or not all(isinstance(s, int) and s > 0 for s in image_shape):
                raise ValueError(f"`image_shape` must be (h, w) or (h, w, c) of positive ints, got {image_shape!r}.")
        self.image_shape = image_shape
        low, high = (float(v) for v in value_range)
        if not low < high:
            raise ValueError(f"`value_range` must be (low, high) with low < high, got {value_range!r}.")
        self.value_range = (low, high)
        self.zoom = None if zoom is None else _validation.positive_int("zoom", zoom)
        self.seed = seed
        self.use_ema = None if use_ema is None else _validation.boolean("use_ema", use_ema)
        self.latent = None

    def images(self):
        """The current `(n, h, w, c)` samples from the fixed latent vectors."""
        choose = getattr(self.model, "sampling_generator", None)
        if choose is None and self.use_ema:
            raise ValueError("`use_ema`=True needs a model with a generator EMA (`WGAN(ema_decay=...)`).")
        generator = self.model.generator if choose is None else choose(self.use_ema)
        if self.latent is None:
            self.latent = np.random.default_rng(self.seed).standard_normal((self.n, self.model.latent_dim))
            self.latent = self.latent.astype("float32")
        samples = np.asarray(generator(self.latent, training=False), dtype="float32")
        return as_images(samples, self.image_shape)

    def write(self, epoch, logs):
        images = self.images()
        zoom = self.zoom or max(1, math.ceil(64 / images.shape[1]))
        self.image("samples", tile_images(images, self.columns, self.value_range, zoom), epoch)


def as_images(samples, image_shape=None):
    """Samples as `(n, h, w, c)` with c in {1, 3, 4}."""
    n = samples.shape[0]
    if image_shape is not None:
        samples = samples.reshape(n, *image_shape)
    elif samples.ndim == 2:
        side = math.isqrt(samples.shape[1])
        if side * side != samples.shape[1]:
            raise ValueError(f"Cannot infer an image shape from samples of shape {samples.shape}: pass `image_shape`.")
        samples = samples.reshape(n, side, side)
    if samples.ndim == 3:
        samples = samples[..., None]
    if samples.ndim != 4 or samples.shape[-1] not in (1, 3, 4):
        raise ValueError(f"Samples of shape {samples.shape} are not images (h, w, c) with 1, 3 or 4 channels.")
    return samples
