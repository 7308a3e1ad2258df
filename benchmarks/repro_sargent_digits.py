"""Sargent's thesis, chapter 5, at small scale: Toeplitz-normalized critics on the 8x8 digits.

What is reproduced (Sargent, "Lipschitz constraints in Wasserstein GANs"):

1. A "Fréchet digits distance": the Fréchet (FID) distance computed on the
   penultimate-layer features of a small classifier trained on the digits
   (Inception features make no sense for 8x8 grey digits). The distance
   between the real train and test sets is the noise floor.
2. Section 4.1.2: a spectrally normalized conv critic divided (a) by the norm
   of the reshaped kernel (Miyato et al.) or (b) by the exact operator norm
   of the convolution (power iteration through conv / conv-transpose). The
   true Lipschitz constant of each trained critic is measured: the product of
   the exact per-layer norms (largest singular value of each layer's
   explicit Toeplitz matrix), the certified bound of
   `tflip.lipschitz.lipschitz_upper_bound`, and an empirical lower bound from
   gradients and difference quotients.
3. Section 5.5.1: the sweep of the per-layer gain k in {1, 2, 4, 8} with the
   Toeplitz critic (the thesis found an inverted U, best at k = 2), scored by
   the Fréchet digits distance of generated samples; same budget and seeds
   for every k.
4. Appendix B: spectral plots of the critic and generator of one run, and a
   grid of samples per k.

Kept from the thesis (sec. 5.3): hinge loss (the thesis found it best; the
WGAN model trains it with `loss="hinge"`), 5 critic steps per generator step,
critic batch 64, generator batch 128, Adam with beta_1 = 0, beta_2 = 0.9 and
the learning rate decayed linearly to 0, batch norm in the generator only,
uniform instance noise on the real images (one intensity level of the digits,
the analogue of the thesis' 1/128 on 8-bit images), one power iteration per
call. Changed for the scale: 8x8 digits instead of CIFAR-10; a plain 5-conv
critic and a small DCGAN-like generator instead of the ResNets
(`lipschitz_upper_bound` bounds chains only); 500 generator steps instead of
50,000, hence a learning rate of 5e-4 instead of 2e-4; two seeds per gain,
one for the reshaped-kernel baseline (`--seeds` changes them). See
docs/reproductions/sargent.md.

Run:
    nice -n 10 python benchmarks/repro_sargent_digits.py [--smoke] [--out DIR] [--seeds 0 1]
"""

import dataclasses
import json
import math
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from reproduction import reproduction_parser, write_results  # noqa: E402

from tflip import datasets  # noqa: E402
from tflip.callbacks.sample_grid import tile_images  # noqa: E402
from tflip.callbacks.spectrum import spectral_plot_pixels  # noqa: E402
from tflip.callbacks.summary import figure_pixels  # noqa: E402
from tflip.layers import SpectralNormConv2D, SpectralNormDense  # noqa: E402
from tflip.lipschitz import lipschitz_lower_bound, lipschitz_upper_bound  # noqa: E402
from tflip.lipschitz.spectra import SpectrumAnalyzer, linear_layers  # noqa: E402
from tflip.metrics import FrechetDistance, frechet_distance  # noqa: E402
from tflip.models import WGAN  # noqa: E402
from tflip.ops.conv import conv_matrix, reshaped_kernel_norm  # noqa: E402

DEFAULT_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "sargent_digits")

# Sargent, figure 5.5: Inception Score on CIFAR-10 against the per-layer gain k (higher is better).
THESIS_INCEPTION_SCORE = {1: 2.62, 2: 7.34, 4: 5.77, 8: 3.05}

# The critic's convolutions: (filters, kernel size, stride), spatial size 8x8 -> 8x8 -> 4x4 -> 4x4 -> 2x2.
FULL_CRITIC = ((8, 3, 1), (8, 3, 1), (16, 4, 2), (16, 3, 1), (32, 4, 2))


@dataclasses.dataclass(frozen=True)
class Scale:
    """Budget and widths of one mode (full or smoke)."""

    classifier_epochs: int
    generator_steps: int  # generator updates per GAN run (each after `n_critic` critic updates)
    evaluations: int  # Fréchet distance evaluated this many times during a run (the last one is reported)
    critic_convs: tuple  # (filters, kernel size, stride) per spectrally normalized convolution
    generator_width: int
    latent_dim: int
    critic_batch: int
    generator_batch: int
    n_critic: int
    gains: tuple
    seeds: tuple
    n_test: int  # held-out real digits (noise floor) and generated samples per Fréchet evaluation
    probe: int  # samples for the empirical Lipschitz lower bound
    ascent_steps: int
    learning_rate: float
    power_iterations: int = 1  # per training-mode call of each normalized layer (Miyato et al., the thesis: 1)


# Full: about 17 minutes on 2 shared cores. Widths are small so the budget goes to steps: the critic runs three
# times per critic step, each layer call with a power-iteration step, and halving its widths made a step 1.75x faster.
SCALES = {
    "full": Scale(
        classifier_epochs=40, generator_steps=500, evaluations=5, critic_convs=FULL_CRITIC, generator_width=64,
        latent_dim=32, critic_batch=64, generator_batch=128, n_critic=5, gains=(1.0, 2.0, 4.0, 8.0), seeds=(0, 1),
        n_test=500, probe=128, ascent_steps=10, learning_rate=5e-4,
    ),
    # Smoke: graph tracing dominates (seconds per model), so two convolutions, one critic step, one gain (k = 2, so
    # the gain is exercised) and the reshaped-kernel run beside it.
    "smoke": Scale(
        classifier_epochs=2, generator_steps=30, evaluations=2, critic_convs=((8, 3, 1), (16, 4, 2)),
        generator_width=16, latent_dim=8, critic_batch=16, generator_batch=32, n_critic=1, gains=(2.0,), seeds=(0,),
        n_test=300, probe=32, ascent_steps=2, learning_rate=5e-4,
    ),
}


def split_digits(n_test, seed=0):
    """Stratified train / test split of the 1797 digits, images in [-1, 1] of shape (8, 8, 1)."""
    from sklearn.model_selection import train_test_split

    images, labels = datasets.digits((8, 8, 1))
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=n_test, random_state=seed, stratify=labels
    )
    return x_train, x_test, y_train, y_test


def build_classifier():
    """A small conv classifier; its 64-unit penultimate layer defines the Fréchet digits features."""
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(inputs)
    h = keras.layers.Conv2D(64, 3, strides=2, padding="same", activation="relu")(h)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dropout(0.3)(h)
    features = keras.layers.Dense(64, activation="relu", name="features")(h)
    outputs = keras.layers.Dense(10)(keras.layers.Dropout(0.3)(features))
    return keras.Model(inputs, outputs), keras.Model(inputs, features)


def train_classifier(scale, x_train, y_train, x_test, y_test):
    """Trains the feature classifier (seed 0); returns it, its feature model and its test accuracy."""
    keras.utils.set_random_seed(0)
    classifier, feature_model = build_classifier()
    classifier.compile(
        keras.optimizers.Adam(1e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    classifier.fit(x_train, y_train, batch_size=64, epochs=scale.classifier_epochs, verbose=0)
    accuracy = np.mean(np.argmax(classifier(x_test, training=False), axis=1) == y_test)
    return classifier, feature_model, float(accuracy)


def build_critic(scale, norm, gain):
    """Plain conv critic: spectrally normalized convolutions of gain `gain`, LeakyReLU(0.1), a 1-Lipschitz head.

    `norm` is "toeplitz" (exact operator norm) or "reshape" (reshaped-kernel
    norm). As in the thesis only the convolutions carry the gain k, so the
    nominal Lipschitz bound is k^5 for the full critic (k^7 for the thesis'
    ResNet critic).
    """
    layers = [keras.Input((8, 8, 1))]
    for i, (filters, size, stride) in enumerate(scale.critic_convs):
        layers.append(
            SpectralNormConv2D(
                filters, size, strides=stride, padding="same", norm=norm, lipschitz=gain,
                power_iterations=scale.power_iterations, name=f"conv{i + 1}",
            )
        )
        layers.append(keras.layers.LeakyReLU(0.1, name=f"lrelu{i + 1}"))
    layers += [
        keras.layers.Flatten(),
        SpectralNormDense(1, lipschitz=1.0, power_iterations=scale.power_iterations, name="head"),
    ]
    return keras.Sequential(layers, name=f"critic_{norm}")


def build_generator(scale):
    """DCGAN-like generator: latent -> 4x4 -> (transposed conv) 8x8 -> conv -> tanh image; batch norm inside."""
    w = scale.generator_width
    return keras.Sequential(
        [
            keras.Input((scale.latent_dim,)),
            keras.layers.Dense(4 * 4 * w, use_bias=False, name="project"),
            keras.layers.Reshape((4, 4, w)),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.Conv2DTranspose(w // 2, 4, strides=2, padding="same", use_bias=False, name="up"),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.Conv2D(w // 4, 3, padding="same", use_bias=False, name="conv"),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.Conv2D(1, 3, padding="same", activation="tanh", name="to_image"),
        ],
        name="generator",
    )


def real_dataset(x_train, scale, seed):
    """Shuffled, repeated batches of `n_critic * critic_batch` real digits with uniform instance noise.

    The thesis adds U[0, 1/128] (one level of an 8-bit image in [-1, 1]); one
    level of the 17-level digits is 1/8, added centred so that white pixels
    do not leave the range the generator's tanh can reach by more than 1/16.
    """
    level = 2.0 / 16.0

    def noisy(x):
        return x + tf.random.uniform(tf.shape(x), -0.5 * level, 0.5 * level, seed=seed)

    return (
        tf.data.Dataset.from_tensor_slices(x_train)
        .shuffle(len(x_train), seed=seed, reshuffle_each_iteration=True)
        .repeat()
        .batch(scale.n_critic * scale.critic_batch, drop_remainder=True)
        .map(noisy)
        .prefetch(2)
    )


def linear_decay_adam(scale, updates):
    """Adam(beta_1=0, beta_2=0.9) with the learning rate decayed linearly from `scale.learning_rate` to 0 (sec. 5.3).

    Args:
        scale: The `Scale` whose `learning_rate` starts the schedule.
        updates: Number of optimizer updates over which it reaches 0.
    """
    schedule = keras.optimizers.schedules.PolynomialDecay(scale.learning_rate, updates, 0.0, power=1.0)
    return keras.optimizers.Adam(schedule, beta_1=0.0, beta_2=0.9)


def generate(gan, n, seed):
    """`n` samples from seeded standard normal latents, as `WGAN.generate` draws them.

    Calls the generator directly: `generate` goes through `predict`, whose
    graph would be traced anew for every run (seconds each, the bulk of a
    smoke run).
    """
    latent = np.random.default_rng(seed).standard_normal((n, gan.latent_dim)).astype("float32")
    return np.asarray(gan.generator(latent, training=False), dtype="float32")


class FrechetTrace(keras.callbacks.Callback):
    """Fréchet digits distance of fixed-latent samples at the end of every epoch (an epoch = a slice of the run)."""

    def __init__(self, frechet, reference, n, seed):
        super().__init__()
        self.frechet, self.reference, self.n, self.seed = frechet, reference, n, seed
        self.values = []

    def on_epoch_end(self, epoch, logs=None):
        samples = generate(self.model, self.n, self.seed + 1000)
        self.values.append(self.frechet(self.reference, samples) if np.all(np.isfinite(samples)) else float("nan"))


def top_singular_value(matrix):
    """Largest singular value of an explicit float64 matrix (ARPACK; a dense SVD for tiny matrices)."""
    from scipy.sparse.linalg import svds

    if min(matrix.shape) < 3:
        return float(np.linalg.svd(matrix, compute_uv=False)[0])
    return float(svds(matrix, k=1, return_singular_vectors=False, random_state=0)[0])


def exact_layer_norms(critic):
    """Per linear layer of the critic: nominal gain, the layer's own estimate, exact norm, reshaped-kernel norm."""
    rows = []
    for layer in linear_layers(critic):
        kernel = layer.effective_kernel(training=False)
        row = {"layer": layer.name, "nominal": float(layer.lipschitz), "layer_estimate": float(layer.operator_norm())}
        if isinstance(layer, SpectralNormConv2D):
            # The doubly-block-Toeplitz matrix T_K of the convolution on its actual 8x8 / 4x4 inputs (zero padding
            # and strides included), at most 512 x 512 here: small enough to form, so the measurement does not
            # rely on the power iteration it checks. ARPACK's Lanczos converges to rounding level.
            matrix = conv_matrix(kernel, layer.geometry)
            row["reshaped_kernel"] = float(reshaped_kernel_norm(kernel))
        else:
            matrix = np.asarray(kernel, dtype="float64")
            row["reshaped_kernel"] = None
        row["exact"] = top_singular_value(matrix)
        row["certified_upper"] = float(layer.lipschitz_upper_bound())
        rows.append(row)
    return rows


def measure_lipschitz(critic, probe, ascent_steps):
    """Nominal, exact (product of exact layer norms), certified and empirical Lipschitz constants of a critic."""
    layers = exact_layer_norms(critic)
    nominal = math.prod(row["nominal"] for row in layers)
    exact_product = math.prod(row["exact"] for row in layers)
    return {
        "nominal": nominal,
        "exact_product": exact_product,
        "exact_over_nominal": exact_product / nominal,
        "certified_upper": lipschitz_upper_bound(critic),
        "empirical_lower": lipschitz_lower_bound(critic, probe, ascent_steps=ascent_steps),
        "layers": layers,
    }


def train_gan(scale, norm, gain, seed, x_train, frechet, reference):
    """One GAN run; returns the trained WGAN, the Fréchet trace and the last epoch's logs."""
    keras.utils.set_random_seed(seed)
    critic = build_critic(scale, norm, gain)
    generator = build_generator(scale)
    gan = WGAN(generator, critic, latent_dim=scale.latent_dim, penalty=None, n_critic=scale.n_critic, loss="hinge",
               generator_batch_size=scale.generator_batch, seed=seed)
    gan.compile(
        critic_optimizer=linear_decay_adam(scale, scale.generator_steps * scale.n_critic),
        generator_optimizer=linear_decay_adam(scale, scale.generator_steps),
    )
    trace = FrechetTrace(frechet, reference, scale.n_test, seed)
    steps_per_epoch = scale.generator_steps // scale.evaluations
    history = gan.fit(real_dataset(x_train, scale, seed), epochs=scale.evaluations, steps_per_epoch=steps_per_epoch,
                      callbacks=[trace], shuffle=False, verbose=0)
    last = {key: float(values[-1]) for key, values in history.history.items()}
    return gan, trace.values, last


def class_histogram(classifier, samples):
    """Classifier label counts of generated samples and the fraction classified with probability > 0.9."""
    probabilities = tf.nn.softmax(classifier(samples, training=False)).numpy()
    counts = np.bincount(probabilities.argmax(axis=1), minlength=10)
    return counts.tolist(), float(np.mean(probabilities.max(axis=1) > 0.9))


def write_png(path, pixels):
    pixels = np.asarray(pixels, dtype="uint8")
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    tf.io.write_file(path, tf.io.encode_png(pixels))


def spectral_plots(gan, title):
    """Spectral plots (sigma_i / sigma_max) of the critic's and generator's linear maps (thesis appendix B)."""
    analyzer = SpectrumAnalyzer()
    plots, summary = {}, {}
    for part in ("critic", "generator"):
        spectra = {layer.name: analyzer.analyze(layer) for layer in linear_layers(getattr(gan, part))}
        plots[part] = spectral_plot_pixels(spectra, f"{part} ({title})")
        summary[part] = {
            name: {"kind": s.kind, "sigma_max": s.sigma_max, "sigma_ratio": s.sigma_ratio,
                   "rank_collapse": s.rank_collapse}
            for name, s in spectra.items()
        }
    return plots, summary


def k_curve_pixels(sweep, floor, reshape):
    """Fréchet digits distance against k (log2 axis): per seed, mean, noise floor, and `reshape = (k, mean)`."""

    def draw(figure):
        axes = figure.add_subplot()
        ks = np.asarray(sweep["k"])
        for seed_values in np.asarray(sweep["fd_per_seed"]).T:
            axes.plot(ks, seed_values, "o", color="tab:blue", alpha=0.5)
        axes.plot(ks, sweep["fd_mean"], "-", color="tab:blue", label="Toeplitz critic (mean over seeds)")
        axes.axhline(floor, color="gray", linestyle="--", label="noise floor (real test vs train)")
        axes.plot([reshape[0]], [reshape[1]], "s", color="tab:red",
                  label=f"reshaped-kernel critic, k = {reshape[0]:g}")
        axes.set_xscale("log", base=2)
        axes.set_xticks(ks, [f"{k:g}" for k in ks])
        axes.set_yscale("log")
        axes.set_xlabel("per-layer gain k")
        axes.set_ylabel("Fréchet digits distance (lower is better)")
        axes.set_title("Toeplitz-normalized critic: gain sweep on 8x8 digits")
        axes.legend(fontsize="small")
        axes.grid(alpha=0.3, which="both")

    return figure_pixels(draw)


def parse_args(argv):
    parser = reproduction_parser(__doc__, DEFAULT_OUT, "tiny budget (seconds), for tests")
    parser.add_argument("--seeds", type=int, nargs="+", default=None,
                        help="training seeds (default: 0 1); every k runs with every seed and the same budget, the "
                        "reshaped-kernel baseline with the first")
    return parser.parse_args(argv)


def finite_or_none(value):
    """JSON-safe copy: non-finite floats become None (strict JSON has no NaN or Infinity)."""
    if isinstance(value, dict):
        return {key: finite_or_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def run_one(scale, norm, gain, seed, data, frechet, reference, classifier):
    """Trains one GAN and measures it: Fréchet distances, generated classes, Lipschitz constants."""
    x_train, x_test = data
    start = time.perf_counter()
    gan, trace, last = train_gan(scale, norm, gain, seed, x_train, frechet, reference)
    samples = generate(gan, scale.n_test, seed + 1000)  # the latents of the trace's last point
    counts, confident = class_histogram(classifier, samples)
    probe = np.concatenate([x_test[: scale.probe // 2], samples[: scale.probe // 2]])
    run = {
        "norm": norm,
        "k": gain,
        "seed": seed,
        "fd_train": trace[-1],
        # Other latents, same generator: the spread of the distance due to sampling alone.
        "fd_train_resampled": frechet(reference, generate(gan, scale.n_test, seed + 2000)),
        "fd_test": frechet(x_test, samples),
        "fd_trace": trace,
        "class_counts": counts,
        "confident_fraction": confident,
        "last_logs": last,
        "lipschitz": measure_lipschitz(gan.critic, probe, scale.ascent_steps),
    }
    run["seconds"] = time.perf_counter() - start
    lip = run["lipschitz"]
    print(f"{norm:8s} k={gain:g} seed={seed}: FD {run['fd_train']:.3f} (trace {' '.join(f'{v:.2f}' for v in trace)}),"
          f" Lipschitz nominal {lip['nominal']:.4g} exact product {lip['exact_product']:.4g} certified "
          f"{lip['certified_upper']:.4g} lower {lip['empirical_lower']:.4g} [{run['seconds']:.0f} s]", flush=True)
    return gan, samples, run


def main(argv=None):
    """Runs the reproduction and writes `results.json` and the PNGs to `--out`.

    Args:
        argv: Command-line arguments (`--smoke`, `--out DIR`, `--seeds S [S ...]`); default `sys.argv[1:]`.

    Returns:
        The results dict written to `results.json` (before non-finite floats become null).

    Raises:
        ValueError: If `--seeds` repeats a seed.
    """
    args = parse_args(argv)
    scale = SCALES["smoke" if args.smoke else "full"]
    if args.seeds is not None:
        if len(set(args.seeds)) != len(args.seeds):
            raise ValueError(f"`--seeds` must be distinct, got {args.seeds}.")
        scale = dataclasses.replace(scale, seeds=tuple(args.seeds))
    if scale.generator_steps % scale.evaluations:
        raise ValueError(f"`generator_steps` {scale.generator_steps} must be a multiple of `evaluations`.")
    os.makedirs(args.out, exist_ok=True)
    start = time.perf_counter()

    # 1. The Fréchet digits distance and its noise floor.
    x_train, x_test, y_train, y_test = split_digits(scale.n_test)
    classifier, feature_model, accuracy = train_classifier(scale, x_train, y_train, x_test, y_test)
    frechet = FrechetDistance(feature_model)
    reference = frechet.statistics(x_train)
    train_again = frechet.statistics(x_train)  # features recomputed: the distance must still vanish
    results = {
        "mode": "smoke" if args.smoke else "full",
        "scale": dataclasses.asdict(scale),
        "thesis_inception_score_by_k": {str(int(k)): v for k, v in THESIS_INCEPTION_SCORE.items()},
        "data": {"n_train": len(x_train), "n_test": len(x_test)},
        "classifier": {"test_accuracy": accuracy, "feature_dim": int(feature_model.output.shape[-1])},
        "frechet": {
            "train_vs_train": frechet_distance(*reference, *train_again),
            "noise_floor_test_vs_train": frechet(reference, x_test),
        },
        "runs": [],
    }
    print(f"classifier test accuracy {accuracy:.4f}; "
          f"Fréchet noise floor {results['frechet']['noise_floor_test_vs_train']:.3f}", flush=True)

    # 2 and 3. The reshaped-kernel critic (the SN-GAN baseline) at the first gain (k = 1 in the full run), and the
    # Toeplitz gain sweep. The baseline runs with the first seed only: it serves the Lipschitz measurement, which
    # needs one trained critic, and the budget goes to repeating the sweep.
    baseline_gain = scale.gains[0]
    configs = [("reshape", baseline_gain)] + [("toeplitz", k) for k in scale.gains]
    spectral_gain = 2.0 if 2.0 in scale.gains else scale.gains[-1]  # the thesis' best k
    grids = {"real": tile_images(x_test[:64], 8, zoom=4)}
    for seed in scale.seeds:
        for norm, gain in configs:
            if norm == "reshape" and seed != scale.seeds[0]:
                continue
            gan, samples, run = run_one(scale, norm, gain, seed, (x_train, x_test), frechet, reference, classifier)
            results["runs"].append(run)
            if seed != scale.seeds[0]:
                continue
            grids[f"samples_reshape_k{gain:g}" if norm == "reshape" else f"samples_k{gain:g}"] = tile_images(
                samples[:64], 8, zoom=4)
            if norm == "toeplitz" and gain == spectral_gain:
                # 4. Appendix B's spectral plots, for the run at the thesis' best gain.
                plots, summary = spectral_plots(gan, f"Toeplitz critic, k = {gain:g}")
                results["spectra"] = {"k": gain, "seed": seed, **summary}
                for part, pixels in plots.items():
                    write_png(os.path.join(args.out, f"spectra_{part}.png"), pixels)
    for name, pixels in grids.items():
        write_png(os.path.join(args.out, f"{name}.png"), pixels)

    results["k_sweep"] = summarize_sweep(results["runs"], scale)
    results["reshape_vs_toeplitz"] = summarize_norms(results["runs"], baseline_gain)
    reshape_fd = results["reshape_vs_toeplitz"]["reshape"]["fd_mean"]
    write_png(os.path.join(args.out, "k_curve.png"), k_curve_pixels(
        results["k_sweep"], results["frechet"]["noise_floor_test_vs_train"], (baseline_gain, reshape_fd)))
    results["wall_seconds"] = time.perf_counter() - start
    write_results(args.out, finite_or_none(results), allow_nan=False)
    print(json.dumps(finite_or_none({"k_sweep": results["k_sweep"],
                                     "reshape_vs_toeplitz": results["reshape_vs_toeplitz"]}), indent=1))
    return results


def conv_ratios(run):
    """Exact operator norm / nominal gain of each convolution of a run's critic."""
    return [row["exact"] / row["nominal"] for row in run["lipschitz"]["layers"] if row["layer"].startswith("conv")]


def summarize_sweep(runs, scale):
    """Per k of the Toeplitz runs: Fréchet digits distance (per seed, mean), Lipschitz measurements; the best k."""
    chosen = [[next(r for r in runs if r["norm"] == "toeplitz" and r["k"] == k and r["seed"] == s)
               for s in scale.seeds] for k in scale.gains]
    means = [float(np.mean([r["fd_train"] for r in row])) for row in chosen]
    return {
        "k": list(scale.gains),
        "seeds": list(scale.seeds),
        "fd_per_seed": [[r["fd_train"] for r in row] for row in chosen],
        "fd_mean": means,
        "fd_resampled_per_seed": [[r["fd_train_resampled"] for r in row] for row in chosen],
        "nominal_lipschitz": [row[0]["lipschitz"]["nominal"] for row in chosen],
        "exact_product_per_seed": [[r["lipschitz"]["exact_product"] for r in row] for row in chosen],
        "empirical_lower_per_seed": [[r["lipschitz"]["empirical_lower"] for r in row] for row in chosen],
        "conv_exact_over_k_max": [max(max(conv_ratios(r)) for r in row) for row in chosen],
        "best_k": scale.gains[int(np.argmin(means))],
        "thesis_best_k": 2.0,
    }


def summarize_norms(runs, gain):
    """Lipschitz measurements of the reshaped-kernel and Toeplitz critics at the same gain, per seed."""
    summary = {"k": gain}
    for norm in ("reshape", "toeplitz"):
        chosen = [r for r in runs if r["norm"] == norm and r["k"] == gain]
        ratios = [ratio for r in chosen for ratio in conv_ratios(r)]
        summary[norm] = {
            "fd_mean": float(np.mean([r["fd_train"] for r in chosen])),
            "nominal": chosen[0]["lipschitz"]["nominal"],
            "exact_product": [r["lipschitz"]["exact_product"] for r in chosen],
            "certified_upper": [r["lipschitz"]["certified_upper"] for r in chosen],
            "empirical_lower": [r["lipschitz"]["empirical_lower"] for r in chosen],
            "conv_exact_over_nominal_min": float(np.min(ratios)),
            "conv_exact_over_nominal_max": float(np.max(ratios)),
        }
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
