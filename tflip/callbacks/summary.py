"""Shared machinery of the TensorBoard callbacks: period, chief-only writing, images, failures.

Every tflip callback that writes to TensorBoard:

- runs every `every_n_epochs` epochs, at the end of the epoch;
- writes only on the chief under multi-worker training (the strategy's
  `should_checkpoint`, which Keras' own BackupAndRestore also uses), so N
  workers do not write N copies of the same events;
- never stops training because of a logging failure: it warns with the
  exception and the epoch, and continues (`strict=True` re-raises, for tests
  and debugging);
- can also save its pictures as PNG files in `image_dir`.
"""

import os
import warnings

import keras
import numpy as np
import tensorflow as tf

from tflip import _validation


def is_chief(model):
    """Whether this process should write logs for `model` (False on non-chief workers)."""
    strategy = getattr(model, "distribute_strategy", None) or tf.distribute.get_strategy()
    return bool(getattr(strategy.extended, "should_checkpoint", True))


def figure_pixels(draw, size=(640, 480), dpi=100):
    """Renders a matplotlib figure off-screen and returns its RGB pixels `(h, w, 3)` uint8.

    Uses the Agg canvas directly (no pyplot state, no global backend switch).

    Args:
        draw: callable receiving a `matplotlib.figure.Figure` to draw on.
        size: `(width, height)` in pixels.
        dpi: resolution used for fonts and line widths.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(size[0] / dpi, size[1] / dpi), dpi=dpi)
    canvas = FigureCanvasAgg(figure)
    draw(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def _directory(name, value):
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        raise ValueError(f"`{name}` must be a directory path, got {value!r}.")
    return os.fspath(value)


class SummaryCallback(keras.callbacks.Callback):
    """Base class: subclasses implement `write(epoch, logs)` with `tf.summary` calls.

    Args:
        log_dir: TensorBoard directory the events are written to.
        every_n_epochs: writing period in epochs.
        image_dir: if given, pictures are also saved there as PNG files named
            `<tag>_epoch<NNNN>.png` (slashes in tags become underscores).
        strict: re-raise logging failures instead of warning.
    """

    def __init__(self, log_dir, every_n_epochs=1, image_dir=None, strict=False):
        super().__init__()
        self.log_dir = _directory("log_dir", log_dir)
        if self.log_dir is None:
            raise ValueError("`log_dir` must be a directory path, got None.")
        self.every_n_epochs = _validation.positive_int("every_n_epochs", every_n_epochs)
        self.image_dir = _directory("image_dir", image_dir)
        self.strict = bool(strict)
        self._writer = None
        self.image_files = []

    @property
    def writer(self):
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        return self._writer

    def write(self, epoch, logs):
        raise NotImplementedError

    def write_now(self, epoch=0, logs=None):
        """Writes one set of summaries at step `epoch` (also usable outside `fit`)."""
        with self.writer.as_default(step=epoch):
            self.write(epoch, logs if logs is not None else {})
        self.writer.flush()

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every_n_epochs or not is_chief(self.model):
            return
        try:
            self.write_now(epoch, logs)
        except Exception as error:  # logging must not end a long training run
            if self.strict:
                raise
            warnings.warn(
                f"{type(self).__name__} could not log epoch {epoch} and skipped it: {type(error).__name__}: {error}",
                stacklevel=2,
            )

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.flush()

    def image(self, tag, pixels, step):
        """Writes an RGB or grayscale `(h, w, c)` uint8 image to TensorBoard (and `image_dir`)."""
        pixels = np.asarray(pixels, dtype="uint8")
        if pixels.ndim == 2:
            pixels = pixels[..., None]
        tf.summary.image(tag, pixels[None], step=step)
        if self.image_dir is not None:
            os.makedirs(self.image_dir, exist_ok=True)
            path = os.path.join(self.image_dir, f"{tag.replace('/', '_')}_epoch{step:04d}.png")
            tf.io.write_file(path, tf.io.encode_png(pixels))
            self.image_files.append(path)
