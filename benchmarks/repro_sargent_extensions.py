"""Sargent's thesis, sections 5.5.2-5.5.3, at small scale: the r(W) penalty and spectral gradient clamping.

Two extensions of the spectrally normalized GAN meant to fight rank collapse,
both of which the thesis found did not help (CIFAR-10 Inception scores;
SN-GAN baseline 7.97):

1. Section 5.5.2: the generator loss gets `-lambda * sum_i r(W_i)` over the
   generator's weight matrices (`tflip.models.WGAN(rank_penalty=lambda)`).
   Thesis: lambda = 0.1 recovers the baseline (7.95), lambda = 1 and 10
   collapse training (1.18, 0.99), and the penalty flattened nothing: the
   generator's spectra collapsed further.
2. Section 5.5.3: spectral gradient clamping, `sigma_0 <= r sigma_1` for the
   gradient of every weight matrix (`tflip.optimizers.SpectralGradientClamp`).
   In the generator: r = 1.05 hurts (3.78), r = 1.5 and 2 recover the
   baseline (7.82, 7.94). In the discriminator: r = 4 collapses (3.84),
   r = 15 and 30 recover it (7.92, 7.95), because the discriminator's
   gradients are extremely low-rank, with sigma_0 / sigma_1 around 30 early
   in training and about 3 later.

Setup: everything of `repro_sargent_digits.py` (8x8 digits, plain 5-conv
critic, DCGAN-like generator, hinge loss, Adam with linear decay, 500
generator steps, scored by the Fréchet digits distance on the features of a
small digits classifier; lower is better). The baseline is the thesis' SN-GAN:
the reshaped-kernel spectral normalization at k = 1, two seeds per setting.

tflip's r(W) is the thesis' description of the metric (the normalized area
under the spectral plot, sum_i sigma_i / (k sigma_max), 1 for a flat
spectrum), not the printed formula ||W||_F / (m sigma), which is 1/sqrt(m) for
an orthogonal matrix (see docs/monitoring.md). The thesis' explanation of the
penalty's failure (an inverse weight decay) is a property of the printed
formula, so the spectra here test the metric, not that argument.

Run:
    nice -n 10 python benchmarks/repro_sargent_extensions.py [--smoke] [--out DIR] [--seeds 0 1]
"""

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import repro_sargent_digits as digits  # noqa: E402
from reproduction import reproduction_parser, run_costs, write_results  # noqa: E402

from tflip.lipschitz.spectra import SpectrumAnalyzer, linear_layers  # noqa: E402
from tflip.metrics import FrechetDistance  # noqa: E402
from tflip.models import WGAN  # noqa: E402
from tflip.optimizers import SpectralGradientClamp  # noqa: E402

DEFAULT_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "sargent_extensions")

# Thesis figures 5.6-5.9: Inception score (higher is better) per setting; "baseline" is SN-GAN.
THESIS_INCEPTION_SCORE = {
    "baseline": 7.97,
    "rank_penalty": {0.1: 7.95, 1.0: 1.18, 10.0: 0.99},
    "clamp_generator": {1.05: 3.782, 1.5: 7.82, 2.0: 7.94},
    "clamp_critic": {4.0: 3.84, 15.0: 7.92, 30.0: 7.95},
}

FULL = {"scale": "full", "settings": THESIS_INCEPTION_SCORE, "ratio_log_every": 25, "seeds": (0, 1)}
SMOKE = {
    "scale": "smoke",
    "settings": {"rank_penalty": {1.0: None}, "clamp_generator": {1.5: None}, "clamp_critic": {4.0: None}},
    "ratio_log_every": 5,
    "seeds": (0,),
}


class ClampRatioTrace(keras.callbacks.Callback):
    """Records a `SpectralGradientClamp`'s mean sigma_0 / sigma_1 of the gradients every `every` training batches."""

    def __init__(self, optimizer, every):
        super().__init__()
        self.optimizer, self.every = optimizer, every
        self.steps, self.ratio_mean, self.clamp_fraction = [], [], []
        self._batches = 0

    def on_train_batch_end(self, batch, logs=None):
        self._batches += 1
        if self._batches % self.every == 0:
            diagnostics = self.optimizer.diagnostics()
            self.steps.append(self._batches)
            self.ratio_mean.append(diagnostics["sigma_ratio_mean"])
            self.clamp_fraction.append(diagnostics["clamp_fraction"])


def generator_rank_collapse(generator):
    """r(W) of each of the generator's weight matrices (exact spectra: SVD, circular FFT for convolutions)."""
    analyzer = SpectrumAnalyzer()
    return {layer.name: float(analyzer.analyze(layer).rank_collapse) for layer in linear_layers(generator)}


def train(scale, setting, value, seed, x_train, frechet, reference, ratio_log_every):
    """One GAN run of `setting` ("baseline", "rank_penalty", "clamp_generator", "clamp_critic") at `value`."""
    keras.utils.set_random_seed(seed)
    gan = WGAN(
        digits.build_generator(scale), digits.build_critic(scale, "reshape", 1.0), latent_dim=scale.latent_dim,
        penalty=None, n_critic=scale.n_critic, loss="hinge", generator_batch_size=scale.generator_batch, seed=seed,
        rank_penalty=value if setting == "rank_penalty" else 0.0,
    )
    critic_optimizer = digits.linear_decay_adam(scale, scale.generator_steps * scale.n_critic)
    generator_optimizer = digits.linear_decay_adam(scale, scale.generator_steps)
    if setting == "clamp_critic":
        critic_optimizer = SpectralGradientClamp(critic_optimizer, ratio=value)
    if setting == "clamp_generator":
        generator_optimizer = SpectralGradientClamp(generator_optimizer, ratio=value)
    gan.compile(critic_optimizer=critic_optimizer, generator_optimizer=generator_optimizer)
    trace = digits.FrechetTrace(frechet, reference, scale.n_test, seed)
    callbacks = [trace]
    clamped = {"clamp_critic": critic_optimizer, "clamp_generator": generator_optimizer}.get(setting)
    if clamped is not None:
        ratios = ClampRatioTrace(clamped, ratio_log_every)
        callbacks.append(ratios)
    start = time.perf_counter()
    gan.fit(digits.real_dataset(x_train, scale, seed), epochs=scale.evaluations,
            steps_per_epoch=scale.generator_steps // scale.evaluations, callbacks=callbacks, shuffle=False, verbose=0)
    run = {
        "setting": setting,
        "value": value,
        "seed": seed,
        "fd_train": trace.values[-1],
        "fd_trace": trace.values,
        "generator_rank_collapse": generator_rank_collapse(gan.generator),
        "seconds": time.perf_counter() - start,
    }
    run["generator_rank_collapse_mean"] = float(np.mean(list(run["generator_rank_collapse"].values())))
    if clamped is not None:
        # Steps are generator steps: each fit batch is one generator update after n_critic critic updates.
        run["gradient_sigma_ratio"] = {"steps": ratios.steps, "mean": ratios.ratio_mean,
                                       "clamp_fraction": ratios.clamp_fraction}
        run["clamp_count"] = clamped.diagnostics()["clamp_count"]
    print(f"seed {seed} {setting:16s} {'' if value is None else value:>5}: FD {run['fd_train']:.3f} "
          f"(trace {' '.join(f'{v:.2f}' for v in trace.values)}), generator mean r(W) "
          f"{run['generator_rank_collapse_mean']:.3f} [{run['seconds']:.0f} s]", flush=True)
    return run


def plot_results(summary, path):
    """Fréchet distance per setting (every seed, baseline band) and the gradients' sigma_0 / sigma_1 over training."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(13, 4.2), dpi=100)
    FigureCanvasAgg(figure)
    runs = summary["runs"]
    labels = []
    for run in runs:
        label = "baseline" if run["setting"] == "baseline" else f"{run['setting']}\n{run['value']:g}"
        if label not in labels:
            labels.append(label)
    axes = figure.add_subplot(1, 2, 1)
    baseline = [run["fd_train"] for run in runs if run["setting"] == "baseline"]
    axes.axhspan(min(baseline), max(baseline), color="0.85", label="baseline (seeds)")
    for run in runs:
        label = "baseline" if run["setting"] == "baseline" else f"{run['setting']}\n{run['value']:g}"
        axes.scatter(labels.index(label), run["fd_train"], color=f"C{run['seed']}", s=18,
                     label=f"seed {run['seed']}" if run["setting"] == "baseline" else None)
    axes.axhline(summary["frechet_noise_floor"], color="k", lw=0.8, ls="--", label="real test vs train")
    axes.set_xticks(range(len(labels)))
    axes.set_xticklabels(labels, rotation=60, fontsize=7)
    axes.set_ylabel("Fréchet digits distance (lower is better)")
    axes.set_ylim(0, None)
    axes.legend(fontsize=7)
    axes.set_title("SN-GAN baseline, r(W) penalty, spectral gradient clamping", fontsize=9)
    axes = figure.add_subplot(1, 2, 2)
    # One curve per network and seed: the run with the largest ratio r, the least clamped.
    largest = {}
    for run in runs:
        if "gradient_sigma_ratio" in run:
            largest[run["setting"]] = max(largest.get(run["setting"], 0.0), run["value"])
    for run in runs:
        trace = run.get("gradient_sigma_ratio")
        if trace is None or run["value"] != largest[run["setting"]]:
            continue
        network = "critic" if run["setting"] == "clamp_critic" else "generator"
        axes.plot(trace["steps"], trace["mean"], color="C3" if network == "critic" else "C0",
                  ls="-" if run["seed"] == summary["seeds"][0] else "--", label=f"{network}, seed {run['seed']}")
    axes.set_xlabel("generator steps")
    axes.set_ylabel("mean sigma_0 / sigma_1 of the gradients")
    axes.set_title("How low-rank the updates are (before clamping)", fontsize=9)
    axes.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path)


def main(argv=None):
    """Runs the baseline and every extension setting; returns the dictionary written to `results.json`."""
    parser = reproduction_parser(__doc__, DEFAULT_OUT, "tiny budget, one value per extension (tests)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="training seeds (full: 0 1)")
    args = parser.parse_args(argv)
    config = SMOKE if args.smoke else FULL
    seeds = tuple(args.seeds) if args.seeds else config["seeds"]
    if len(set(seeds)) != len(seeds):
        parser.error(f"--seeds must be distinct, got {list(seeds)}")
    scale = digits.SCALES[config["scale"]]
    os.makedirs(args.out, exist_ok=True)
    start, cpu_start = time.perf_counter(), time.process_time()

    x_train, x_test, y_train, y_test = digits.split_digits(scale.n_test)
    _, feature_model, accuracy = digits.train_classifier(scale, x_train, y_train, x_test, y_test)
    frechet = FrechetDistance(feature_model)
    reference = frechet.statistics(x_train)
    floor = frechet(reference, x_test)
    print(f"classifier test accuracy {accuracy:.4f}; Fréchet noise floor {floor:.3f}", flush=True)

    runs = []
    for seed in seeds:
        runs.append(train(scale, "baseline", None, seed, x_train, frechet, reference, config["ratio_log_every"]))
        for setting, values in config["settings"].items():
            if setting == "baseline":
                continue
            for value in values:
                runs.append(train(scale, setting, value, seed, x_train, frechet, reference,
                                  config["ratio_log_every"]))
    summary = {
        "paper": "Sargent, Lipschitz constraints in Wasserstein GANs (thesis), sec. 5.5.2-5.5.3, figures 5.6-5.9",
        "mode": "smoke" if args.smoke else "full",
        "scale": config["scale"],
        "seeds": list(seeds),
        "thesis_inception_score": {
            key: value if not isinstance(value, dict) else {str(k): v for k, v in value.items()}
            for key, value in THESIS_INCEPTION_SCORE.items()
        },
        "classifier_test_accuracy": accuracy,
        "frechet_noise_floor": floor,
        "runs": digits.finite_or_none(runs),
        **run_costs(start, cpu_start),
    }
    plot_results(summary, os.path.join(args.out, "extensions.png"))
    write_results(args.out, summary, allow_nan=False)
    return summary


if __name__ == "__main__":
    main()
