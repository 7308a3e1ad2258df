"""Reproduction of Petzka et al. (ICLR 2018) section 6: WGAN-GP vs WGAN-LP on the toy sets.

The claim checked: the one-sided Lipschitz penalty (LP, eq. 8) is far less
sensitive to the penalty weight lambda than the two-sided gradient penalty
(GP, eq. 6). For each toy set (8gaussians, 25gaussians, swiss roll), each
penalty and each lambda in {1, 5, 10, 100}, a WGAN is trained and the exact
Wasserstein-1 distance between 500 generated and 500 held-out real samples
(Kuhn-Munkres, as in Petzka's figure 5) is evaluated every 10 generator
iterations. Outputs: the W1 curves (one panel per set), the critic level
sets of the final critics for GP and LP at lambda 10 and 100 (figure 3 /
appendix D.1 style), and a JSON table of the final W1 (mean of the last five
evaluations) with the spread across lambda of each penalty.

Scale (CPU, 2 shared cores): the paper's networks are 3x512 Leaky-ReLU
MLPs trained with 10 critic updates per generator update (100 for the first
25) and RMSprop 5e-5 for 500 iterations, 10 seeds. 24 such runs would take
hours here (a 3x512 critic step is ~20 times slower than a 3x128 one, which
is ~3 times slower than a 3x64 one), so we use 3x64 Leaky-ReLU networks, 5
critic updates per generator update (25 for the first 10), 200 generator
iterations with RMSprop 2e-4 (4x the paper's rate, for the shorter run) and
one seed per configuration (see `--help` for every knob;
docs/reproductions/penalties.md for the discussion).

Run: python benchmarks/repro_petzka_gp_vs_lp.py [--smoke] [--out DIR]
"""

import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from reproduction import reproduction_parser, write_results  # noqa: E402

import tflip  # noqa: E402
from tflip.callbacks import ExactWasserstein  # noqa: E402
from tflip.callbacks.level_sets import critic_field, level_set_pixels  # noqa: E402

NAME = "petzka_gp_vs_lp"
DEFAULT_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", NAME)
PENALTIES = {"GP": tflip.penalties.GradientPenalty, "LP": tflip.penalties.LipschitzPenalty}
# The critic batch of Gulrajani's and Petzka's toy experiments.
CRITIC_BATCH = 256
# Seeds (plus the run's seed) of the held-out real samples and of the fixed generator latents of the W1 evaluations.
HELD_OUT_SEED, GENERATED_SEED = 10_000, 20_000


def mlp(inputs, outputs, width, depth=3):
    """Petzka's toy network: `depth` Leaky-ReLU layers of `width` units and a linear output."""
    layers = [keras.Input((inputs,))]
    layers += [keras.layers.Dense(width, activation=keras.activations.leaky_relu) for _ in range(depth)]
    return keras.Sequential(layers + [keras.layers.Dense(outputs)])


def train_one(toy, penalty_name, weight, seed, config):
    """Trains one WGAN and returns its W1 curve and its final critic.

    Returns:
        `(iterations, w1_values, gan, held_out)`: the generator iteration of
        each evaluation, the exact W1 there, the trained model and the
        held-out real samples the W1 was measured against.
    """
    keras.utils.set_random_seed(seed)
    penalty = PENALTIES[penalty_name](weight=weight, seed=seed)
    gan = tflip.models.WGAN(
        mlp(2, 2, config["width"]), mlp(2, 1, config["width"]), latent_dim=2,
        penalty=penalty, n_critic=config["warmup_n_critic"], seed=seed,
    )
    gan.compile(
        keras.optimizers.RMSprop(config["learning_rate"]), keras.optimizers.RMSprop(config["learning_rate"]),
        jit_compile=config["jit_compile"], run_eagerly=config["smoke"],
    )
    held_out = tflip.datasets.toy(toy, config["samples"], seed=HELD_OUT_SEED + seed)
    # Fixed latents across evaluations, so the curve measures the generator and not the draw.
    monitor = ExactWasserstein(held_out, seed=GENERATED_SEED + seed)
    rng = np.random.default_rng(seed)
    every = config["eval_every"]
    # Petzka trains the critic harder during the first generator iterations
    # (100 critic updates for each of the first 25) to start from a useful critic.
    phases = [(0, config["warmup_iterations"] // every, config["warmup_n_critic"]),
              (config["warmup_iterations"] // every, config["iterations"] // every, config["n_critic"])]
    for first, last, n_critic in phases:
        if last <= first:
            continue
        if gan.n_critic != n_critic:
            gan.n_critic = n_critic
            gan.train_function = None  # n_critic is read when the step is traced
        data = tflip.datasets.toy(toy, n_critic * CRITIC_BATCH * every * (last - first), seed=rng)
        # One epoch = `every` generator iterations (the iterator persists across
        # epochs with steps_per_epoch); the monitor evaluates after each epoch.
        gan.fit(
            data, batch_size=n_critic * CRITIC_BATCH, steps_per_epoch=every, epochs=last, initial_epoch=first,
            shuffle=False, verbose=0, callbacks=[monitor],
        )
    iterations = [(epoch + 1) * every for epoch, _ in monitor.values]
    values = [value for _, value in monitor.values]
    return iterations, values, gan, held_out


def level_set_panel(gan, held_out, title, resolution):
    """The critic's level sets and gradient-norm heatmap as RGB pixels, titled."""
    low, high = held_out.min(axis=0), held_out.max(axis=0)
    margin = 0.5 * (high - low)
    xs = np.linspace(low[0] - margin[0], high[0] + margin[0], resolution, dtype="float32")
    ys = np.linspace(low[1] - margin[1], high[1] + margin[1], resolution, dtype="float32")
    grid = np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2)
    values, norms = critic_field(gan.critic, grid)
    shape = (resolution, resolution)
    fake = gan.generate(len(held_out), seed=1)
    pixels = level_set_pixels(xs, ys, values.reshape(shape), norms.reshape(shape), held_out, fake)
    return _with_title(pixels, title), float(np.mean(norms > 1.0)), float(norms.max())


def _with_title(pixels, title):
    from tflip.callbacks.summary import figure_pixels

    height = 40

    def draw(figure):
        figure.text(0.5, 0.5, title, ha="center", va="center", fontsize=16)

    banner = figure_pixels(draw, size=(pixels.shape[1], height))
    return np.concatenate([banner, pixels], axis=0)


def tile(rows):
    """Stacks a list of rows (lists of equal-size RGB images) into one image."""
    return np.concatenate([np.concatenate(row, axis=1) for row in rows], axis=0)


def write_png(path, pixels, scale=1.0):
    image = tf.convert_to_tensor(pixels)
    if scale != 1.0:
        size = (int(pixels.shape[0] * scale), int(pixels.shape[1] * scale))
        image = tf.cast(tf.clip_by_value(tf.image.resize(image, size, antialias=True), 0, 255), tf.uint8)
    tf.io.write_file(path, tf.io.encode_png(image))


def plot_curves(path, results, toys, weights):
    from tflip.callbacks.summary import figure_pixels

    colours = dict(zip(weights, ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]))
    styles = {"GP": "-", "LP": "--"}

    def draw(figure):
        axes = figure.subplots(1, len(toys), squeeze=False)[0]
        for ax, toy in zip(axes, toys):
            for run in results:
                if run["toy"] != toy:
                    continue
                ax.plot(run["iterations"], run["w1"], styles[run["penalty"]], color=colours[run["weight"]],
                        label=f"{run['penalty']} $\\lambda$={run['weight']:g}" if run["seed"] == 0 else None,
                        linewidth=1.2)
            ax.set_title(toy)
            ax.set_xlabel("generator iteration")
            ax.set_ylabel("exact W1 (500 vs 500, Kuhn-Munkres)")
            ax.set_yscale("log")
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize="small", ncol=2)
        figure.tight_layout()

    write_png(path, figure_pixels(draw, size=(6 * 300, 500)))


def summarize(results, toys, weights, last):
    """Final W1 per (toy, penalty, lambda) and the spread across lambda per (toy, penalty)."""
    table, sensitivity = {}, {}
    for toy in toys:
        for penalty in PENALTIES:
            finals = {}
            for weight in weights:
                runs = [r for r in results if (r["toy"], r["penalty"], r["weight"]) == (toy, penalty, weight)]
                per_seed = [float(np.mean(r["w1"][-last:])) for r in runs]
                finals[weight] = float(np.mean(per_seed))
                table[f"{toy}/{penalty}/{weight:g}"] = {"final_w1": finals[weight], "per_seed": per_seed}
            values = np.array(list(finals.values()))
            sensitivity[f"{toy}/{penalty}"] = {
                "spread": float(values.max() - values.min()),
                "max_over_min": float(values.max() / values.min()),
                "best_lambda": float(weights[int(values.argmin())]),
                "worst_lambda": float(weights[int(values.argmax())]),
            }
    for penalty in PENALTIES:
        sensitivity[f"mean/{penalty}"] = {
            key: float(np.mean([sensitivity[f"{toy}/{penalty}"][key] for toy in toys]))
            for key in ("spread", "max_over_min")
        }
    return table, sensitivity


def main(argv=None):
    """Runs the reproduction and writes `results.json`, `w1_curves.png` and `level_sets.png`.

    Options: `--help`. Returns the dictionary written to `results.json`.
    """
    parser = reproduction_parser(__doc__, DEFAULT_OUT, "tiny networks and budget (seconds; tests)")
    parser.add_argument("--iterations", type=int, default=200, help="generator iterations (paper: 500)")
    parser.add_argument("--width", type=int, default=64, help="units per hidden layer (paper: 512)")
    parser.add_argument("--n-critic", type=int, default=5, help="critic updates per generator update (paper: 10)")
    parser.add_argument("--warmup-iterations", type=int, default=10,
                        help="first generator iterations with more critic updates (paper: 25)")
    parser.add_argument("--warmup-n-critic", type=int, default=25, help="critic updates then (paper: 100)")
    parser.add_argument("--learning-rate", type=float, default=2e-4, help="RMSprop learning rate (paper: 5e-5)")
    parser.add_argument("--eval-every", type=int, default=10, help="generator iterations between W1 evaluations")
    parser.add_argument("--samples", type=int, default=500, help="samples per W1 evaluation (paper: 500)")
    parser.add_argument("--seeds", type=int, default=1, help="seeds per configuration (paper: 10)")
    parser.add_argument("--weights", type=float, nargs="+", default=[1.0, 5.0, 10.0, 100.0], help="lambda values")
    parser.add_argument("--toys", nargs="+", default=list(tflip.datasets.TOY_SETS),
                        choices=list(tflip.datasets.TOY_SETS))
    parser.add_argument("--last", type=int, default=5, help="final W1 = mean of the last N evaluations")
    parser.add_argument("--no-jit", action="store_true", help="do not XLA-compile the gradient computations")
    args = parser.parse_args(argv)
    if args.smoke:
        args.iterations, args.width, args.warmup_iterations, args.warmup_n_critic = 4, 8, 2, 2
        args.n_critic, args.eval_every, args.samples, args.seeds, args.last = 1, 2, 64, 1, 1
        args.weights, args.toys, args.no_jit = [1.0, 100.0], ["eight_gaussians"], True
    for name in ("iterations", "width", "n_critic", "warmup_n_critic", "eval_every", "samples", "seeds", "last"):
        if getattr(args, name) < 1:
            raise ValueError(f"`--{name.replace('_', '-')}` must be >= 1, got {getattr(args, name)}.")
    for name in ("iterations", "warmup_iterations"):
        if getattr(args, name) % args.eval_every:
            raise ValueError(f"`--{name.replace('_', '-')}` must be a multiple of `--eval-every`, "
                             f"got {getattr(args, name)}.")
    config = {
        "iterations": args.iterations, "width": args.width, "n_critic": args.n_critic,
        "warmup_iterations": args.warmup_iterations, "warmup_n_critic": args.warmup_n_critic,
        "learning_rate": args.learning_rate, "eval_every": args.eval_every, "samples": args.samples,
        "critic_batch": CRITIC_BATCH, "seeds": args.seeds, "weights": args.weights, "toys": args.toys,
        "last": args.last, "jit_compile": not args.no_jit, "smoke": args.smoke,
    }
    os.makedirs(args.out, exist_ok=True)
    # Pictures of the critic at the paper's lambda = 10 and at 100, where GP and LP should differ most.
    pictured = [w for w in args.weights if w in (10.0, 100.0)] or args.weights[-1:]
    start = time.perf_counter()
    results, rows, level_stats = [], [], {}
    for toy in args.toys:
        row = []
        for penalty in PENALTIES:
            for weight in args.weights:
                for seed in range(args.seeds):
                    began = time.perf_counter()
                    iterations, w1, gan, held_out = train_one(toy, penalty, weight, seed, config)
                    seconds = time.perf_counter() - began
                    results.append({"toy": toy, "penalty": penalty, "weight": weight, "seed": seed,
                                    "iterations": iterations, "w1": w1, "seconds": seconds})
                    if (penalty, weight, seed) == (list(PENALTIES)[-1], args.weights[-1], 0):
                        # The samples of the last evaluation of one run per set, so that
                        # the recorded W1 can be checked against a fresh exact solve.
                        results[-1]["final_samples"] = {
                            "generated": gan.generate(len(held_out), seed=GENERATED_SEED + seed).tolist(),
                            "held_out": held_out.tolist()}
                    print(f"{toy:22s} {penalty} lambda {weight:6g} seed {seed}: final W1 {w1[-1]:.4f} "
                          f"({seconds:.0f} s)", flush=True)
                    if seed == 0 and weight in pictured:
                        title = f"{toy}: WGAN-{penalty}, lambda = {weight:g}, {args.iterations} iterations"
                        pixels, above, largest = level_set_panel(gan, held_out, title, 64 if args.smoke else 128)
                        row.append(pixels)
                        level_stats[f"{toy}/{penalty}/{weight:g}"] = {
                            "grid_fraction_gradient_norm_above_1": above, "grid_gradient_norm_max": largest}
        rows.append(row)
    table, sensitivity = summarize(results, args.toys, args.weights, args.last)
    output = {
        "paper": "Petzka, Fischer, Lukovnikov, On the regularization of Wasserstein GANs, ICLR 2018, sec. 6",
        "config": config, "runs": results, "final_w1": table, "sensitivity": sensitivity,
        "level_sets": level_stats, "wall_seconds": time.perf_counter() - start,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "tensorflow": tf.__version__},
    }
    write_results(args.out, output)
    plot_curves(os.path.join(args.out, "w1_curves.png"), results, args.toys, args.weights)
    write_png(os.path.join(args.out, "level_sets.png"), tile(rows), scale=0.5)
    print("\nFinal exact W1 (mean of the last evaluations) per lambda:")
    for toy in args.toys:
        for penalty in PENALTIES:
            cells = "  ".join(f"{w:g}: {table[f'{toy}/{penalty}/{w:g}']['final_w1']:.4f}" for w in args.weights)
            spread = sensitivity[f"{toy}/{penalty}"]["spread"]
            print(f"  {toy:22s} {penalty}  {cells}   spread {spread:.4f}")
    for penalty in PENALTIES:
        print(f"  mean spread across lambda, {penalty}: {sensitivity[f'mean/{penalty}']['spread']:.4f}")
    return output


if __name__ == "__main__":
    main()
