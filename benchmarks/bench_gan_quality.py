"""GAN quality on 8x8 digits: WGAN-GP, WGAN-LP, ALP, R1, R1 + R2 + relativistic, spectral norm; raw and EMA generator.

The issue-15 quality table: one budget, one generator, one critic
architecture and one optimizer for every regularizer, two seeds, scored by the
Fréchet digits distance (the Fréchet distance on the 64 penultimate features
of a small digits classifier, `repro_sargent_digits.py`; lower is better; the
real test set against the train set is the noise floor). Each run is scored
from its raw generator and from the exponential moving average of its weights
(`WGAN(ema_half_life=...)`, evaluation only: training continues on the raw
weights), on the same latent vectors.

Methods (each with the loss it was published with):

- WGAN-GP (Gulrajani et al. 2017): Wasserstein loss, `GradientPenalty(10)`.
- WGAN-LP (Petzka et al. 2018): Wasserstein loss, `LipschitzPenalty(10)`.
- WGAN-ALP (Terjek 2020): Wasserstein loss, `AdversarialLipschitzPenalty()`
  (weight 100, the paper's defaults).
- R1 (Mescheder et al. 2018): non-saturating loss, `R1Penalty(gamma)`.
- R1 + R2 + relativistic (R3GAN, Huang et al. 2024): relativistic pairing loss
  (Jolicoeur-Martineau 2019), `ZeroCenteredGradientPenalty(gamma)`. If
  `WGAN` cannot train the relativistic generator loss (its generator step
  needs the critic's values on real samples), the run falls back to the
  Wasserstein loss and the results say so (`loss_used`). `WGAN` pairs each
  generated sample of the relativistic generator step with a real sample of
  the last critic batch, so this row's generator batch is the critic batch
  (64, not 128), and its EMA half-life in images is halved to stay 20
  generator steps (`generator_batch`, `ema_half_life_images` per run).
- Exact spectral norm (Miyato et al. 2018 with the exact operator norm of
  each convolution, Sargent 2021): the Toeplitz-normalized critic of
  `repro_sargent_digits.py` at gain 1, no penalty, hinge loss.

Shared setup (from `repro_sargent_digits.py`): the DCGAN-like generator with
batch norm, uniform instance noise on the real digits, 5 critic steps per
generator step, critic batch 64, generator batch 128. The penalized critics
are the same 5-conv critic with plain `Conv2D` / `Dense` layers. Adam
(beta_1 = 0, beta_2 = 0.9) at a constant learning rate for both networks: a
schedule decaying to 0 would make the average nearly equal to the last
weights and hide what EMA does.

Run:
    nice -n 10 python benchmarks/bench_gan_quality.py [--smoke] [--out DIR] [--seeds 0 1]
"""

import dataclasses
import inspect
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import repro_sargent_digits as digits  # noqa: E402
from reproduction import reproduction_parser, run_costs, write_results  # noqa: E402

from tflip import penalties  # noqa: E402
from tflip.callbacks.sample_grid import tile_images  # noqa: E402
from tflip.metrics import FrechetDistance  # noqa: E402
from tflip.models import WGAN  # noqa: E402

DEFAULT_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "gan_quality")

# gamma of R1 and of R1 + R2: tflip's default (Mescheder et al.'s 10), not tuned for the digits.
GAMMA = 10.0


@dataclasses.dataclass(frozen=True)
class Method:
    """One row of the table: its critic, penalty and GAN loss."""

    name: str
    label: str
    critic: str  # "plain" (Conv2D critic, regularized by the penalty) or "spectral" (exact spectral norm, k = 1)
    penalty: object  # a zero-argument factory of the penalty, or None
    loss: str


METHODS = (
    Method("wgan_gp", "WGAN-GP", "plain", lambda: penalties.GradientPenalty(10.0), "wasserstein"),
    Method("wgan_lp", "WGAN-LP", "plain", lambda: penalties.LipschitzPenalty(10.0), "wasserstein"),
    Method("wgan_alp", "WGAN-ALP", "plain", lambda: penalties.AdversarialLipschitzPenalty(), "wasserstein"),
    Method("r1", "R1 (non-saturating)", "plain", lambda: penalties.R1Penalty(GAMMA), "nonsaturating"),
    Method("r1_r2_relativistic", "R1 + R2 + relativistic", "plain",
           lambda: penalties.ZeroCenteredGradientPenalty(GAMMA), "relativistic_pairing"),
    Method("spectral", "exact spectral norm (hinge)", "spectral", None, "hinge"),
)


@dataclasses.dataclass(frozen=True)
class Budget:
    """What every run gets, on top of `repro_sargent_digits.Scale` (widths, batches, n_critic)."""

    scale: str  # the `repro_sargent_digits.SCALES` entry
    generator_steps: int
    evaluations: int  # Fréchet distances per run (raw and EMA), evenly spaced; the last is reported
    learning_rate: float
    ema_half_life: float  # in generated images (StyleGAN2's convention)
    seeds: tuple


# Full: 300 generator steps (1,500 critic steps) per run, 12 runs: 30-45 CPU seconds a run on 2 shared cores.
# EMA half-life 2,560 images = 20 generator steps of 128 (beta = 0.966 per step); the relativistic row generates
# 64 images a step (the critic batch), and its half-life is scaled to 1,280 images, again 20 steps.
BUDGETS = {
    "full": Budget("full", generator_steps=300, evaluations=3, learning_rate=5e-4, ema_half_life=2560.0,
                   seeds=(0, 1)),
    "smoke": Budget("smoke", generator_steps=8, evaluations=2, learning_rate=5e-4, ema_half_life=64.0, seeds=(0,)),
}


def ema_available():
    """Whether this tflip's WGAN keeps a generator EMA (`ema_half_life`)."""
    return "ema_half_life" in inspect.signature(WGAN.__init__).parameters


def build_plain_critic(scale):
    """The Sargent 5-conv critic with unconstrained layers: Conv2D, LeakyReLU(0.1), a Dense head."""
    layers = [keras.Input((8, 8, 1))]
    for i, (filters, size, stride) in enumerate(scale.critic_convs):
        layers.append(keras.layers.Conv2D(filters, size, strides=stride, padding="same", name=f"conv{i + 1}"))
        layers.append(keras.layers.LeakyReLU(0.1, name=f"lrelu{i + 1}"))
    layers += [keras.layers.Flatten(), keras.layers.Dense(1, name="head")]
    return keras.Sequential(layers, name="critic_plain")


def sample(generator, latent_dim, n, seed):
    """`n` samples of `generator` (inference mode) at the seeded latents `repro_sargent_digits.generate` draws."""
    latent = np.random.default_rng(seed).standard_normal((n, latent_dim)).astype("float32")
    return np.asarray(generator(latent, training=False), dtype="float32")


class RawAndEmaFrechet(keras.callbacks.Callback):
    """Fréchet digits distance of the raw and the EMA generator at the end of every epoch, same latents."""

    def __init__(self, frechet, reference, n, seed):
        super().__init__()
        self.frechet, self.reference, self.n, self.seed = frechet, reference, n, seed
        self.values = {"raw": [], "ema": []}

    def score(self, generator):
        samples = sample(generator, self.model.latent_dim, self.n, self.seed)
        return self.frechet(self.reference, samples) if np.all(np.isfinite(samples)) else float("nan")

    def on_epoch_end(self, epoch, logs=None):
        self.values["raw"].append(self.score(self.model.generator))
        if getattr(self.model, "ema_generator", None) is not None:
            self.values["ema"].append(self.score(self.model.ema_generator))


def pairs_with_critic_batch(loss):
    """Whether `loss`'s generator step pairs its samples with the last critic batch (relativistic pairing).

    `WGAN` then refuses `generator_batch_size`: its generator batch is the critic batch.
    """
    try:
        from tflip.losses.adversarial import generator_loss_needs_real_values
    except ImportError:  # a tflip whose WGAN cannot train it: the run falls back to the Wasserstein loss
        return False
    return generator_loss_needs_real_values(loss)


def generator_batch(loss, scale):
    """Generated images per generator step: `scale.generator_batch`, or the critic batch for the relativistic loss."""
    return scale.critic_batch if pairs_with_critic_batch(loss) else scale.generator_batch


def ema_half_life(loss, scale, budget):
    """`budget.ema_half_life` images at `scale.generator_batch`, scaled to keep the same number of generator steps."""
    return budget.ema_half_life * generator_batch(loss, scale) / scale.generator_batch


def make_gan(method, loss, scale, budget, seed):
    keras.utils.set_random_seed(seed)
    critic = build_plain_critic(scale) if method.critic == "plain" else digits.build_critic(scale, "toeplitz", 1.0)
    batch = generator_batch(loss, scale)
    # The half-life is given in images; scaled with the generator batch it stays 20 generator steps for every row.
    options = {"ema_half_life": ema_half_life(loss, scale, budget)} if ema_available() else {}
    gan = WGAN(digits.build_generator(scale), critic, latent_dim=scale.latent_dim,
               penalty=None if method.penalty is None else method.penalty(), n_critic=scale.n_critic, loss=loss,
               generator_batch_size=None if pairs_with_critic_batch(loss) else batch, seed=seed, **options)
    # Constant learning rate, the same for every method and both networks.
    gan.compile(critic_optimizer=keras.optimizers.Adam(budget.learning_rate, beta_1=0.0, beta_2=0.9),
                generator_optimizer=keras.optimizers.Adam(budget.learning_rate, beta_1=0.0, beta_2=0.9))
    return gan


def fit(gan, scale, budget, seed, x_train, trace):
    return gan.fit(digits.real_dataset(x_train, scale, seed), epochs=budget.evaluations,
                   steps_per_epoch=budget.generator_steps // budget.evaluations, callbacks=[trace], shuffle=False,
                   verbose=0)


def train(method, scale, budget, seed, x_train, frechet, reference):
    """One run of `method`; returns the trained WGAN and its record (Fréchet traces raw / EMA, losses)."""
    start, cpu_start = time.perf_counter(), time.process_time()
    loss, fallback = method.loss, None
    gan = make_gan(method, loss, scale, budget, seed)
    trace = RawAndEmaFrechet(frechet, reference, scale.n_test, seed + 1000)
    try:
        history = fit(gan, scale, budget, seed, x_train, trace)
    except ValueError as error:
        # WGAN's generator step cannot give a loss the critic's values on real samples yet: train the same
        # penalty with the Wasserstein loss, and record it.
        if "real_values" not in str(error):
            raise
        loss, fallback = "wasserstein", str(error).splitlines()[0]
        gan = make_gan(method, loss, scale, budget, seed)
        trace = RawAndEmaFrechet(frechet, reference, scale.n_test, seed + 1000)
        history = fit(gan, scale, budget, seed, x_train, trace)
    run = {
        "method": method.name,
        "label": method.label,
        "seed": seed,
        "loss_requested": method.loss,
        "loss_used": loss,
        "loss_fallback_reason": fallback,
        "penalty": None if gan.penalty is None else type(gan.penalty).__name__,
        "generator_batch": generator_batch(loss, scale),
        "ema_half_life_images": ema_half_life(loss, scale, budget) if ema_available() else None,
        "fd_raw": trace.values["raw"][-1],
        "fd_ema": trace.values["ema"][-1] if trace.values["ema"] else None,
        "fd_raw_trace": trace.values["raw"],
        "fd_ema_trace": trace.values["ema"],
        "last_logs": {key: float(values[-1]) for key, values in history.history.items()},
        "wall_seconds": time.perf_counter() - start,
        "cpu_seconds": time.process_time() - cpu_start,
    }
    ema = "" if run["fd_ema"] is None else f", EMA {run['fd_ema']:.3f}"
    print(f"seed {seed} {method.label:30s} ({loss}): FD raw {run['fd_raw']:.3f}{ema} "
          f"(raw trace {' '.join(f'{v:.2f}' for v in trace.values['raw'])}) "
          f"[{run['wall_seconds']:.0f} s, {run['cpu_seconds']:.0f} CPU s]", flush=True)
    return gan, run


def summarize(runs, seeds):
    """Per method: Fréchet distance per seed and mean, raw and EMA, and the loss actually trained."""
    table = []
    for method in METHODS:
        chosen = sorted((r for r in runs if r["method"] == method.name), key=lambda r: r["seed"])
        if not chosen:
            continue
        row = {"method": method.name, "label": method.label, "seeds": [r["seed"] for r in chosen],
               "loss_used": sorted({r["loss_used"] for r in chosen})}
        for kind in ("raw", "ema"):
            values = [r[f"fd_{kind}"] for r in chosen]
            row[f"fd_{kind}_per_seed"] = values
            row[f"fd_{kind}_mean"] = None if None in values else float(np.mean(values))
        table.append(row)
    return table


def plot_table(table, floor, path, title):
    """Bars: mean Fréchet digits distance per method, raw and EMA side by side; dots: the seeds."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4.5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    positions = np.arange(len(table))
    kinds = [("raw", "C0", "raw generator"), ("ema", "C1", "EMA generator")]
    width = 0.38
    for offset, (kind, color, label) in zip((-width / 2, width / 2), kinds):
        means = [row[f"fd_{kind}_mean"] for row in table]
        if any(mean is None for mean in means):
            continue
        axes.bar(positions + offset, means, width, color=color, alpha=0.6, label=f"{label} (mean)")
        for x, row in zip(positions, table):
            values = [v for v in row[f"fd_{kind}_per_seed"] if v is not None]
            axes.plot([x + offset] * len(values), values, "o", color=color, markeredgecolor="k", markersize=5)
    axes.axhline(floor, color="k", lw=0.8, ls="--", label="noise floor (real test vs train)")
    labels = [row["label"] + ("\n(Wasserstein loss)" if row["loss_used"] == ["wasserstein"]
                              and row["method"] == "r1_r2_relativistic" else "") for row in table]
    axes.set_xticks(positions, labels, rotation=20, fontsize=8, ha="right")
    axes.set_yscale("log")
    axes.set_ylabel("Fréchet digits distance (lower is better)")
    axes.set_title(title, fontsize=10)
    axes.legend(fontsize=8)
    axes.grid(alpha=0.3, axis="y", which="both")
    figure.tight_layout()
    figure.savefig(path)


def main(argv=None):
    """Trains every method with every seed and writes `results.json`, `quality.png` and sample grids to `--out`.

    Args:
        argv: Command-line arguments (`--smoke`, `--out DIR`, `--seeds S [S ...]`); default `sys.argv[1:]`.

    Returns:
        The results dict written to `results.json`.
    """
    parser = reproduction_parser(__doc__, DEFAULT_OUT, "tiny budget and widths, one seed (tests)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="training seeds (full: 0 1)")
    args = parser.parse_args(argv)
    budget = BUDGETS["smoke" if args.smoke else "full"]
    if args.seeds:
        if len(set(args.seeds)) != len(args.seeds):
            parser.error(f"--seeds must be distinct, got {args.seeds}")
        budget = dataclasses.replace(budget, seeds=tuple(args.seeds))
    if budget.generator_steps % budget.evaluations:
        raise ValueError(f"`generator_steps` {budget.generator_steps} must be a multiple of `evaluations`.")
    scale = digits.SCALES[budget.scale]
    os.makedirs(args.out, exist_ok=True)
    start, cpu_start = time.perf_counter(), time.process_time()

    x_train, x_test, y_train, y_test = digits.split_digits(scale.n_test)
    _, feature_model, accuracy = digits.train_classifier(scale, x_train, y_train, x_test, y_test)
    frechet = FrechetDistance(feature_model)
    reference = frechet.statistics(x_train)
    floor = frechet(reference, x_test)
    print(f"classifier test accuracy {accuracy:.4f}; Fréchet noise floor {floor:.3f}; "
          f"generator EMA {'on' if ema_available() else 'not available in this tflip'}", flush=True)

    runs, grids = [], {"real": tile_images(x_test[:64], 8, zoom=4)}
    for seed in budget.seeds:
        for method in METHODS:
            gan, run = train(method, scale, budget, seed, x_train, frechet, reference)
            runs.append(run)
            if seed == budget.seeds[0]:
                grids[f"samples_{method.name}"] = tile_images(
                    sample(gan.generator, scale.latent_dim, 64, seed + 1000), 8, zoom=4)
                if gan_has_ema(gan):
                    grids[f"samples_{method.name}_ema"] = tile_images(
                        sample(gan.ema_generator, scale.latent_dim, 64, seed + 1000), 8, zoom=4)
    table = summarize(runs, budget.seeds)
    results = {
        "mode": "smoke" if args.smoke else "full",
        "budget": dataclasses.asdict(budget),
        "scale": dataclasses.asdict(scale),
        "gamma_r1_r2": GAMMA,
        "ema": ema_available(),
        "classifier_test_accuracy": accuracy,
        "frechet_noise_floor": floor,
        "table": table,
        "runs": digits.finite_or_none(runs),
    }
    title = (f"8x8 digits, {budget.generator_steps} generator steps x {scale.n_critic} critic steps, "
             f"seeds {', '.join(map(str, budget.seeds))}")
    plot_table(table, floor, os.path.join(args.out, "quality.png"), title)
    for name, pixels in grids.items():
        digits.write_png(os.path.join(args.out, f"{name}.png"), pixels)
    results.update(run_costs(start, cpu_start))
    write_results(args.out, digits.finite_or_none(results), allow_nan=False)
    for row in table:
        print(f"{row['label']:30s} raw {row['fd_raw_mean']}  EMA {row['fd_ema_mean']}  loss {row['loss_used']}")
    return results


def gan_has_ema(gan):
    return getattr(gan, "ema_generator", None) is not None


if __name__ == "__main__":
    main(sys.argv[1:])
