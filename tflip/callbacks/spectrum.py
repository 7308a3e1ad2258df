"""TensorBoard logging of singular-value spectra, r(W) and Lipschitz bounds."""

import math
import warnings

import keras
import numpy as np
import tensorflow as tf

from tflip import _validation
from tflip.callbacks.summary import SummaryCallback, figure_pixels
from tflip.lipschitz import jacobian_norms, lipschitz_upper_bound
from tflip.lipschitz.spectra import CONVOLUTION, SpectrumAnalyzer, linear_layers


def model_parts(model):
    """`[(tag prefix, network)]`: a GAN's generator and critic, a critic model's critic, or the model itself."""
    parts = [(f"{name}/", getattr(model, name)) for name in ("generator", "critic")
             if isinstance(getattr(model, name, None), keras.Model)]
    return parts or [("", model)]


def model_optimizers(model):
    """`[(attribute, optimizer)]` of the model's optimizers that report `diagnostics()` (e.g. gradient clamps).

    Loss-scale wrappers (mixed precision) are looked through.
    """
    found = []
    for attribute in ("generator_optimizer", "critic_optimizer", "optimizer"):
        optimizer = getattr(model, attribute, None)
        while optimizer is not None and not hasattr(optimizer, "diagnostics"):
            optimizer = getattr(optimizer, "inner_optimizer", None)
        if optimizer is not None and all(optimizer is not other for _, other in found):
            found.append((attribute, optimizer))
    return found


class SpectrumLogger(SummaryCallback):
    """Logs the spectra of every Dense-like and Conv-like layer to TensorBoard.

    For each layer with a kernel (tflip's and Keras' own; for a `WGAN` in
    both the generator and the critic, tagged `generator/` and `critic/`):

    - histogram `<layer>/singular_values_dense`: the singular values of the
      effective kernel (exact SVD in float32);
    - for convolutions, histogram `<layer>/singular_values_conv_circular`:
      the exact spectrum of the convolution with circular padding on the
      layer's input grid (FFT, Sedghi et al. 2019; strides exactly), and
      scalar `<layer>/sigma_max` = the exact operator norm of the layer's
      zero-padded convolution (block power iteration with the convolution
      and its transpose in float64, warm-started, to relative tolerance
      1e-10), plus
      `<layer>/sigma_max_circular`;
    - other kernels (depthwise, 3-D, unknown input size):
      `<layer>/singular_values_reshaped_kernel`;
    - scalars `<layer>/sigma_max`, `<layer>/sigma_ratio` (sigma_0 / sigma_1)
      and `<layer>/rank_collapse`, r(W) = sum_i sigma_i / (k sigma_max) (the
      normalized area under the spectral plot of Sargent section 4.2.1:
      1 for a flat spectrum, 1/k for rank one; the thesis prints
      ||W||_F / (m sigma(W)), which gives 1/sqrt(m) for an orthogonal
      matrix and contradicts its own description);
    - per network, `lipschitz_upper_bound` (certified product of layer
      bounds, `tflip.lipschitz.lipschitz_upper_bound`; skipped with one
      warning if a layer has no known constant) and, given `probe`, the
      empirical input-gradient norms of the critic (or of the model)
      `probe_gradient_norm_max` / `probe_gradient_norm_mean`: the gap between
      the bound and the gradients actually reached;
    - image `spectral_plot`: sorted singular values divided by the largest,
      against the index scaled to [0, 1], one curve per layer (the thesis'
      spectral plots);
    - for optimizers with `diagnostics()` (`tflip.optimizers.SpectralGradientClamp`,
      also inside a loss-scale wrapper): `<optimizer attribute>/sigma_ratio_mean`,
      `sigma_ratio_max`, `clamp_fraction`, `clamp_count`.

    Everything is read from the weights in float32 outside the training
    step, so it works under MirroredStrategy, mixed precision and on models
    returned by `load_model`. The latest values are kept in `self.latest`.

    Args:
        log_dir: TensorBoard directory.
        every_n_epochs: logging period.
        layers: names of the layers to log (default: all with a kernel).
        probe: optional batch of critic inputs (e.g. real samples) for the
            empirical gradient norms.
        histogram_buckets: buckets of the TensorBoard histograms.
        max_frequencies: per convolution, decompose at most this many
            frequencies of the circular spectrum (a seeded uniform sample
            beyond it: large layers are summarized, never materialized).
        spectral_plot: write the spectral-plot image.
        known_lipschitz: `{layer name: constant}` for layers tflip cannot bound.
        image_dir: also save the pictures as PNG files there (see `SummaryCallback`).
        strict: re-raise logging failures instead of warning.

    Example:

        >>> gan.fit(data, epochs=20, callbacks=[
        ...     tflip.callbacks.SpectrumLogger("logs/spectra", probe=real[:256])])
    """

    def __init__(
        self,
        log_dir,
        every_n_epochs=1,
        layers=None,
        probe=None,
        histogram_buckets=30,
        max_frequencies=4096,
        spectral_plot=True,
        known_lipschitz=None,
        image_dir=None,
        strict=False,
    ):
        super().__init__(log_dir, every_n_epochs, image_dir, strict)
        if layers is not None and (isinstance(layers, str) or not all(isinstance(n, str) for n in layers)):
            raise ValueError(f"`layers` must be a list of layer names, got {layers!r}.")
        self.layers = None if layers is None else list(layers)
        self.probe = None if probe is None else np.asarray(probe, dtype="float32")
        if self.probe is not None and (self.probe.ndim < 2 or len(self.probe) == 0):
            raise ValueError(f"`probe` must be a non-empty batch of inputs, got shape {self.probe.shape}.")
        self.histogram_buckets = _validation.positive_int("histogram_buckets", histogram_buckets)
        self.analyzer = SpectrumAnalyzer(_validation.positive_int("max_frequencies", max_frequencies))
        self.spectral_plot = bool(spectral_plot)
        self.known_lipschitz = dict(known_lipschitz or {})
        self.latest = {}
        self._warned = set()

    def on_train_begin(self, logs=None):
        if self.layers is not None:
            found = {layer.name for _, part in model_parts(self.model) for layer in linear_layers(part)}
            missing = sorted(set(self.layers) - found)
            if missing:
                raise ValueError(f"`layers` names {missing} that are not layers with a kernel in the model.")

    def _warn_once(self, key, message):
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(message, stacklevel=3)

    def _scalar(self, tag, value, step):
        if value is None or not math.isfinite(value):
            return
        tf.summary.scalar(tag, value, step=step)
        self.latest[tag] = float(value)

    def write(self, epoch, logs):
        for prefix, network in model_parts(self.model):
            spectra = {}
            for layer in linear_layers(network):
                if self.layers is not None and layer.name not in self.layers:
                    continue
                spectrum = self.analyzer.analyze(layer)
                tag = f"{prefix}{layer.name}"
                tf.summary.histogram(f"{tag}/singular_values_{spectrum.kind}", spectrum.values,
                                     step=epoch, buckets=self.histogram_buckets)
                self._scalar(f"{tag}/sigma_max", spectrum.sigma_max, epoch)
                if spectrum.kind == CONVOLUTION and not spectrum.sampled:
                    self._scalar(f"{tag}/sigma_max_circular", spectrum.values[0], epoch)
                self._scalar(f"{tag}/sigma_ratio", spectrum.sigma_ratio, epoch)
                self._scalar(f"{tag}/rank_collapse", spectrum.rank_collapse, epoch)
                spectra[layer.name] = spectrum
            self._network_bounds(prefix, network, epoch)
            if self.spectral_plot and spectra:
                self.image(f"{prefix}spectral_plot", spectral_plot_pixels(spectra, prefix.rstrip("/")), epoch)
        for name, optimizer in model_optimizers(self.model):
            for key, value in optimizer.diagnostics().items():
                self._scalar(f"{name}/{key}", value, epoch)

    def _network_bounds(self, prefix, network, epoch):
        try:
            bound = lipschitz_upper_bound(network, known=self.known_lipschitz)
        except ValueError as error:
            self._warn_once(prefix, f"SpectrumLogger: no Lipschitz upper bound for {prefix or 'the model'}: {error}")
            bound = None
        self._scalar(f"{prefix}lipschitz_upper_bound", bound, epoch)
        if self.probe is not None and prefix != "generator/":
            norms = jacobian_norms(network, self.probe).numpy()
            self._scalar(f"{prefix}probe_gradient_norm_max", float(norms.max()), epoch)
            self._scalar(f"{prefix}probe_gradient_norm_mean", float(norms.mean()), epoch)


def spectral_plot_pixels(spectra, title=""):
    """The spectral plot of several layers as RGB pixels: sigma_i / sigma_0 against i / (k - 1)."""

    def draw(figure):
        axes = figure.add_subplot()
        for name, spectrum in spectra.items():
            values = np.asarray(spectrum.values, dtype="float64")
            if len(values) == 0 or values[0] <= 0:
                continue
            position = np.linspace(0.0, 1.0, len(values)) if len(values) > 1 else np.zeros(1)
            axes.plot(position, values / values[0], marker="o" if len(values) == 1 else None,
                      label=f"{name} (r={spectrum.rank_collapse:.2f})")
        axes.set_xlabel("singular value index / (k - 1)")
        axes.set_ylabel("sigma_i / sigma_max")
        axes.set_ylim(0.0, 1.05)
        axes.set_title(f"spectral plot {title}".strip())
        axes.legend(fontsize="small")
        axes.grid(alpha=0.3)

    return figure_pixels(draw)
