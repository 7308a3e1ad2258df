"""Reproduction of Zhou et al. (2019) section 5.1 and figure 4: MaxGP, GP and MaxAL on fixed distributions.

1. Gradient directions (section 5.1, figure 1). P_r and P_g are fixed sets of
   a few 2-D points; a critic is trained on them (`WassersteinCritic`) with
   the max gradient penalty (MaxGP, eq. 12) or the gradient penalty (GP).
   Proposition 1: the gradient of the optimal critic at a fake point points
   to its optimal-transport partner. We report the cosine between the
   critic's input gradient at every fake point (and at points along its
   transport segment) and the unit vector towards its partner in the exact
   assignment (`tflip.metrics.optimal_transport_plan`). The claim: MaxGP
   aligns (cosine -> 1), GP, whose superfluous constraints on all
   interpolates bias the critic, does not (or oscillates).
2. MaxAL (eq. 13-14, figure 4): with the augmented Lagrangian on the max
   gradient norm, the max gradient norm is held at 1 and the multiplier
   converges to the exact W1 between P_r and P_g (known here by the exact
   assignment). A second run does the same inside a WGAN on 8gaussians,
   where W1 changes during training (figure 4b is a GAN), against the exact
   W1 (Kuhn-Munkres on 500 samples).

Scale: the paper's toy critic is an unspecified MLP trained with Adam
(beta_1 = 0, beta_2 = 0.9) "till optimal"; we use 3x128 ReLU critics, Adam
(1e-3, 0, 0.9), 2000 critic steps (6000 on the 5-point set), and for MaxAL a quadratic
coefficient rho = 1 and multiplier step 1e-2 (the authors' code uses 1e-3,
which needs ~2 rho / 1e-3 = 2e4 steps to converge at rho = 10: too slow
for this CPU budget; see docs/reproductions/penalties.md).

Run: python benchmarks/repro_zhou_maxgp.py [--smoke] [--out DIR]
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
from tflip.gradients import input_gradients  # noqa: E402
from tflip.metrics import optimal_transport_plan, wasserstein1_exact  # noqa: E402

NAME = "zhou_maxgp"
DEFAULT_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", NAME)
# Positions along each transport segment (0 = the fake point) where the gradient direction is checked.
SEGMENT_POSITIONS = (0.0, 0.25, 0.5, 0.75)


def mlp(inputs, outputs, width, depth=3, activation="relu"):
    layers = [keras.Input((inputs,))] + [keras.layers.Dense(width, activation) for _ in range(depth)]
    return keras.Sequential(layers + [keras.layers.Dense(outputs)])


def setups(count, few_points, seed):
    """The fixed point sets: one trivially separable pair, `count` random 2-vs-2 and one few-vs-few.

    Returns:
        A list of `(name, real, fake)` with float32 `(n, 2)` arrays.
    """
    rng = np.random.default_rng(seed)
    cases = [("separable", np.array([[1.0, -0.5], [1.0, 0.5]]), np.array([[-1.0, -0.5], [-1.0, 0.5]]))]
    for index in range(count):
        # The paper samples the two points of each distribution at random in the plane.
        cases.append((f"random2_{index}", rng.uniform(-2, 2, (2, 2)), rng.uniform(-2, 2, (2, 2))))
    if few_points:
        cases.append((f"random{few_points}", rng.uniform(-2, 2, (few_points, 2)),
                      rng.uniform(-2, 2, (few_points, 2))))
    return [(name, real.astype("float32"), fake.astype("float32")) for name, real, fake in cases]


def transport_cosines(critic, real, fake):
    """Cosines between the critic's gradient and the unit direction to the OT partner.

    Returns:
        float64 array `(len(SEGMENT_POSITIONS), n_fake)`: row t holds the
        cosines at `fake + t * (partner - fake)`.
    """
    partner = real[optimal_transport_plan(fake, real)]
    direction = partner - fake
    unit = direction / np.linalg.norm(direction, axis=1, keepdims=True)
    rows = []
    for t in SEGMENT_POSITIONS:
        points = tf.constant(fake + t * direction)
        gradient = input_gradients(critic, points).numpy().astype("float64")
        norm = np.maximum(np.linalg.norm(gradient, axis=1), 1e-12)
        rows.append(np.sum(gradient * unit, axis=1) / norm)
    return np.array(rows)


class CosineTracker(keras.callbacks.Callback):
    """Records the mean cosine at the fake points after every epoch."""

    def __init__(self, real, fake):
        super().__init__()
        self.real, self.fake = real, fake
        self.values = []

    def on_epoch_end(self, epoch, logs=None):
        self.values.append(float(transport_cosines(self.model.critic, self.real, self.fake)[0].mean()))


def pair_samples(real, fake, count, rng):
    """`count` uniform draws from each fixed point set (the batches of the critic)."""
    return real[rng.integers(0, len(real), count)], fake[rng.integers(0, len(fake), count)]


def make_penalty(name, args, seed):
    if name == "MaxGP":
        return tflip.penalties.MaxGradientPenalty(weight=args.weight, seed=seed)
    if name == "GP":
        return tflip.penalties.GradientPenalty(weight=args.weight, seed=seed)
    return tflip.penalties.MaxGradientAugmentedLagrangian(rho=args.rho, multiplier_lr=args.multiplier_lr, seed=seed)


def train_critic(real, fake, penalty, args, seed, callbacks=(), steps=None):
    """Trains a `WassersteinCritic` on the fixed sets for `steps` (default `args.steps`); returns it and its history."""
    steps = steps or args.steps
    keras.utils.set_random_seed(seed)
    estimator = tflip.models.WassersteinCritic(mlp(2, 1, args.width), penalty=penalty)
    estimator.compile(keras.optimizers.Adam(args.learning_rate, beta_1=0.0, beta_2=0.9),
                      run_eagerly=False)
    p, q = pair_samples(real, fake, steps * args.batch, np.random.default_rng(seed))
    history = estimator.fit(p, q, batch_size=args.batch, steps_per_epoch=args.epoch_steps,
                            epochs=steps // args.epoch_steps, shuffle=False, verbose=0,
                            callbacks=list(callbacks))
    return estimator, history.history


def direction_experiment(args, cases):
    """Trains GP and MaxGP critics on every setup; returns per-run records and pictures' data."""
    records, pictured = [], {}
    for name, real, fake in cases:
        exact = wasserstein1_exact(real, fake)
        for method in args.methods:
            began = time.perf_counter()
            tracker = CosineTracker(real, fake)
            # More points need more steps: the few-vs-few critic is still far from optimal after `steps`.
            steps = args.few_point_steps if len(real) > 2 else args.steps
            estimator, history = train_critic(real, fake, make_penalty(method, args, 0), args, 0, [tracker], steps)
            cosines = transport_cosines(estimator.critic, real, fake)
            record = {
                "setup": name, "method": method, "real": real.tolist(), "fake": fake.tolist(),
                "exact_w1": exact, "critic_w1_estimate": float(history["wasserstein"][-1]),
                "gradient_norm_max": float(history["gradient_norm_max"][-1]),
                "cosine_at_fake": cosines[0].tolist(), "mean_cosine_at_fake": float(cosines[0].mean()),
                "min_cosine_at_fake": float(cosines[0].min()),
                "mean_cosine_on_segments": float(cosines.mean()),
                # Fake points are often kinks of the optimal critic (cone apexes): the
                # segment interiors are where Proposition 1 is unambiguous.
                "mean_cosine_by_position": {f"{t:g}": float(row.mean()) for t, row in zip(SEGMENT_POSITIONS, cosines)},
                "steps": steps,
                # Zhou eq. 11: a penalty weight w (= rho / 2) settles at slope k* = 1 + W1 / (2 w), so the
                # critic's estimate overshoots W1 by that factor (exactly so for MaxGP at the optimum).
                "estimate_over_exact_w1": float(history["wasserstein"][-1]) / exact,
                "predicted_slope": 1.0 + exact / (2.0 * args.weight),
                "cosine_curve": tracker.values, "seconds": time.perf_counter() - began,
            }
            records.append(record)
            print(f"{name:12s} {method:6s} W1 {exact:.3f} (critic {record['critic_w1_estimate']:.3f}) "
                  f"cos at fake: mean {record['mean_cosine_at_fake']:+.3f} min {record['min_cosine_at_fake']:+.3f}; "
                  f"on segments {record['mean_cosine_on_segments']:+.3f} ({record['seconds']:.0f} s)", flush=True)
            if name == args.pictured:
                pictured[method] = estimator.critic
    return records, pictured


def maxal_fixed(args, real, fake):
    """MaxAL on fixed sets: multiplier and max gradient norm per epoch against the exact W1."""
    penalty = make_penalty("MaxAL", args, 0)
    estimator, history = train_critic(real, fake, penalty, args, 0, steps=args.maxal_steps)
    exact = wasserstein1_exact(real, fake)
    steps = [(epoch + 1) * args.epoch_steps for epoch in range(len(history["multiplier"]))]
    return {
        "real": real.tolist(), "fake": fake.tolist(), "exact_w1": exact, "steps": steps,
        "multiplier": history["multiplier"], "gradient_norm_max": history["gradient_norm_max"],
        "critic_w1_estimate": history["wasserstein"],
        "final": _final(history, exact, args.last),
    }


def _final(history, exact, last):
    mean = {key: float(np.mean(history[key][-last:])) for key in ("multiplier", "gradient_norm_max", "wasserstein")}
    return {"multiplier": mean["multiplier"], "gradient_norm_max": mean["gradient_norm_max"],
            "critic_w1_estimate": mean["wasserstein"], "exact_w1": float(exact),
            "multiplier_relative_error": abs(mean["multiplier"] - exact) / exact}


def maxal_wgan(args):
    """MaxAL inside a WGAN on 8gaussians: multiplier vs the exact W1 over training (figure 4b)."""
    keras.utils.set_random_seed(0)
    n_critic, batch, every = 5, 256, args.wgan_eval_every
    penalty = make_penalty("MaxAL", args, 0)
    gan = tflip.models.WGAN(mlp(2, 2, args.width), mlp(2, 1, args.width), latent_dim=2, penalty=penalty,
                            n_critic=n_critic)
    gan.compile(keras.optimizers.Adam(1e-4, 0.0, 0.9), keras.optimizers.Adam(1e-4, 0.0, 0.9),
                run_eagerly=args.smoke)
    monitor = ExactWasserstein(tflip.datasets.eight_gaussians(args.wgan_samples, seed=1), seed=2)
    data = tflip.datasets.eight_gaussians(n_critic * batch * args.wgan_iterations, seed=0)
    history = gan.fit(data, batch_size=n_critic * batch, steps_per_epoch=every,
                      epochs=args.wgan_iterations // every, shuffle=False, verbose=0, callbacks=[monitor])
    history = history.history
    exact = [value for _, value in monitor.values]
    return {
        "iterations": [(epoch + 1) * every for epoch, _ in monitor.values], "exact_w1": exact,
        "multiplier": history["multiplier"], "gradient_norm_max": history["gradient_norm_max"],
        "critic_w1_estimate": history["wasserstein"],
        "final": _final(history, float(np.mean(exact[-args.last:])), args.last),
    }


def write_png(path, pixels):
    tf.io.write_file(path, tf.io.encode_png(tf.convert_to_tensor(pixels)))


def plot_directions(path, records, pictured, cases, args):
    """Cosine curves per method and the pictured setup's critics with their gradient arrows."""
    from tflip.callbacks.summary import figure_pixels

    name, real, fake = next(case for case in cases if case[0] == args.pictured)
    partner = real[optimal_transport_plan(fake, real)]
    methods = list(pictured)

    def draw(figure):
        axes = figure.subplots(1, 1 + len(methods))
        ax = axes[0]
        colours = {"MaxGP": "tab:blue", "GP": "tab:red", "MaxAL": "tab:green"}
        for record in records:
            steps = [(i + 1) * args.epoch_steps for i in range(len(record["cosine_curve"]))]
            ax.plot(steps, record["cosine_curve"], color=colours.get(record["method"], "k"), alpha=0.6,
                    linewidth=1.0, label=record["method"] if record["setup"] == name else None)
        ax.set_ylim(-1.05, 1.05)
        ax.set_xlabel("critic step")
        ax.set_ylabel("mean cos(grad f(fake), OT direction)")
        ax.set_title("all setups (one line per setup)")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
        points = np.concatenate([real, fake])
        low, high = points.min(axis=0) - 0.5, points.max(axis=0) + 0.5
        xs, ys = np.linspace(low[0], high[0], 100), np.linspace(low[1], high[1], 100)
        grid = np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2).astype("float32")
        for ax, method in zip(axes[1:], methods):
            critic = pictured[method]
            values = critic(grid, training=False).numpy().reshape(100, 100)
            ax.contourf(xs, ys, values, levels=20, cmap="viridis")
            for a, b in zip(fake, partner):
                ax.plot([a[0], b[0]], [a[1], b[1]], "w--", linewidth=1.0)
            gradient = input_gradients(critic, tf.constant(fake)).numpy()
            unit = gradient / np.maximum(np.linalg.norm(gradient, axis=1, keepdims=True), 1e-12)
            ax.quiver(fake[:, 0], fake[:, 1], unit[:, 0], unit[:, 1], color="white", scale=6, width=0.012)
            ax.scatter(real[:, 0], real[:, 1], c="red", edgecolors="k", s=60, label="P_r", zorder=3)
            ax.scatter(fake[:, 0], fake[:, 1], c="white", edgecolors="k", s=60, label="P_g", zorder=3)
            cos = transport_cosines(critic, real, fake)[0]
            ax.set_title(f"{method}, setup {name}: cos at fake points " + ", ".join(f"{c:+.2f}" for c in cos))
            ax.set_aspect("equal")
            ax.legend(loc="upper right", fontsize="small")
        figure.tight_layout()

    write_png(path, figure_pixels(draw, size=(600 * (1 + len(methods)), 520)))


def plot_maxal(path, fixed, wgan):
    from tflip.callbacks.summary import figure_pixels

    def draw(figure):
        panels = figure.subplots(1, 2 if wgan else 1, squeeze=False)[0]
        ax = panels[0]
        ax.plot(fixed["steps"], fixed["multiplier"], color="tab:green", label="MaxAL multiplier $\\lambda$")
        ax.plot(fixed["steps"], fixed["gradient_norm_max"], color="tab:orange", label="max ||grad f|| (batch)")
        ax.plot(fixed["steps"], fixed["critic_w1_estimate"], color="tab:blue", alpha=0.6, label="critic estimate")
        ax.axhline(fixed["exact_w1"], color="k", linestyle="--", label=f"exact W1 = {fixed['exact_w1']:.3f}")
        ax.axhline(1.0, color="tab:orange", linestyle=":", linewidth=0.8)
        ax.set_xlabel("critic step")
        ax.set_title("fixed point sets (WassersteinCritic)")
        ax.legend(fontsize="small")
        ax.grid(alpha=0.3)
        if wgan:
            ax = panels[1]
            ax.plot(wgan["iterations"], wgan["multiplier"], color="tab:green", label="MaxAL multiplier $\\lambda$")
            ax.plot(wgan["iterations"], wgan["gradient_norm_max"], color="tab:orange", label="max ||grad f|| (batch)")
            ax.plot(wgan["iterations"], wgan["exact_w1"], "k--", label="exact W1 (500 vs 500)")
            ax.plot(wgan["iterations"], wgan["critic_w1_estimate"], color="tab:blue", alpha=0.6,
                    label="critic estimate")
            ax.axhline(1.0, color="tab:orange", linestyle=":", linewidth=0.8)
            ax.set_xlabel("generator iteration")
            ax.set_title("WGAN on 8gaussians")
            ax.legend(fontsize="small")
            ax.grid(alpha=0.3)
        figure.tight_layout()

    write_png(path, figure_pixels(draw, size=(1300 if wgan else 700, 480)))


def main(argv=None):
    """Runs the reproduction and writes `results.json`, `directions.png` and `maxal.png`.

    Options: `--help`. Returns the dictionary written to `results.json`.
    """
    parser = reproduction_parser(__doc__, DEFAULT_OUT, "separable setup only, tiny budget (tests)")
    parser.add_argument("--steps", type=int, default=2000, help="critic steps per run")
    parser.add_argument("--epoch-steps", type=int, default=100, help="critic steps between records")
    parser.add_argument("--batch", type=int, default=64, help="critic batch")
    parser.add_argument("--width", type=int, default=128, help="units per hidden layer")
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="Adam learning rate (beta_1 0, beta_2 0.9)")
    parser.add_argument("--weight", type=float, default=10.0, help="GP and MaxGP weight (the paper's rho / 2)")
    parser.add_argument("--rho", type=float, default=1.0, help="MaxAL quadratic coefficient")
    parser.add_argument("--multiplier-lr", type=float, default=1e-2, help="MaxAL multiplier step")
    parser.add_argument("--random-setups", type=int, default=3, help="random 2-vs-2 point sets")
    parser.add_argument("--few-points", type=int, default=5, help="points per set of the few-vs-few setup (0: none)")
    parser.add_argument("--few-point-steps", type=int, default=6000, help="critic steps on the few-vs-few setup")
    parser.add_argument("--maxal-steps", type=int, default=3000, help="critic steps of the fixed-set MaxAL run")
    parser.add_argument("--wgan-iterations", type=int, default=300,
                        help="generator iterations of the MaxAL WGAN (0: skip)")
    parser.add_argument("--wgan-eval-every", type=int, default=10, help="generator iterations between W1 evaluations")
    parser.add_argument("--wgan-samples", type=int, default=500, help="samples of the WGAN's exact W1")
    parser.add_argument("--last", type=int, default=5, help="final values = mean of the last N records")
    args = parser.parse_args(argv)
    args.methods = ["MaxGP", "GP"]
    if args.smoke:
        args.steps, args.epoch_steps, args.width, args.random_setups, args.few_points = 200, 50, 32, 0, 0
        # No WGAN in the smoke run: its step would be one more (slow) trace for the tests.
        args.maxal_steps, args.wgan_iterations = 200, 0
        args.last = 2
    for name in ("steps", "epoch_steps", "batch", "width", "few_point_steps", "maxal_steps", "wgan_eval_every",
                 "wgan_samples", "last"):
        if getattr(args, name) < 1:
            raise ValueError(f"`--{name.replace('_', '-')}` must be >= 1, got {getattr(args, name)}.")
    for name in ("steps", "few_point_steps", "maxal_steps", "wgan_iterations"):
        divisor = args.wgan_eval_every if name == "wgan_iterations" else args.epoch_steps
        if getattr(args, name) % divisor:
            raise ValueError(
                f"`--{name.replace('_', '-')}` must be a multiple of {divisor}, got {getattr(args, name)}.")
    os.makedirs(args.out, exist_ok=True)
    start = time.perf_counter()
    cases = setups(args.random_setups, args.few_points, seed=0)
    args.pictured = cases[1][0] if len(cases) > 1 else cases[0][0]
    records, pictured = direction_experiment(args, cases)
    summary = {}
    groups = {"two_point": lambda r: len(r["real"]) == 2, "few_point": lambda r: len(r["real"]) > 2}
    for method, (group, member) in [(m, g) for m in args.methods for g in groups.items()]:
        mine = [r for r in records if r["method"] == method and member(r)]
        if not mine:
            continue
        summary[f"{method}/{group}"] = {
            "setups": len(mine),
            "mean_cosine_segment_interior": float(np.mean(
                [np.mean([v for t, v in r["mean_cosine_by_position"].items() if float(t) > 0]) for r in mine])),
            "mean_cosine_at_fake": float(np.mean([r["mean_cosine_at_fake"] for r in mine])),
            "min_cosine_at_fake": float(np.min([r["min_cosine_at_fake"] for r in mine])),
            "mean_cosine_on_segments": float(np.mean([r["mean_cosine_on_segments"] for r in mine])),
            # Oscillation: spread of the cosine over the last quarter of training.
            "late_cosine_range": float(np.mean([np.ptp(r["cosine_curve"][-max(len(r["cosine_curve"]) // 4, 1):])
                                                for r in mine])),
        }
    # MaxAL on the few-point setup (the largest); steps of its own.
    name, real, fake = cases[-1]
    fixed = maxal_fixed(args, real, fake)
    fixed["setup"] = name
    print(f"MaxAL on {name}: multiplier {fixed['final']['multiplier']:.4f} vs exact W1 {fixed['exact_w1']:.4f}, "
          f"max grad norm {fixed['final']['gradient_norm_max']:.4f}", flush=True)
    wgan = maxal_wgan(args) if args.wgan_iterations else None
    if wgan:
        print(f"MaxAL WGAN: multiplier {wgan['final']['multiplier']:.4f} vs exact W1 "
              f"{wgan['final']['exact_w1']:.4f}, max grad norm {wgan['final']['gradient_norm_max']:.4f}", flush=True)
    output = {
        "paper": "Zhou et al., Towards Efficient and Unbiased Implementation of Lipschitz Continuity in GANs, "
                 "sec. 5.1 and fig. 4",
        "config": {key: value for key, value in vars(args).items() if key not in ("out",)},
        "directions": records, "direction_summary": summary, "maxal_fixed": fixed, "maxal_wgan": wgan,
        "wall_seconds": time.perf_counter() - start,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "tensorflow": tf.__version__},
    }
    write_results(args.out, output)
    plot_directions(os.path.join(args.out, "directions.png"), records, pictured, cases, args)
    plot_maxal(os.path.join(args.out, "maxal.png"), fixed, wgan)
    for method, values in summary.items():
        print(f"{method:16s} mean cos at fake {values['mean_cosine_at_fake']:+.3f}  "
              f"min {values['min_cosine_at_fake']:+.3f}  "
              f"segment interiors {values['mean_cosine_segment_interior']:+.3f}"
              f"  late range {values['late_cosine_range']:.3f}")
    return output


if __name__ == "__main__":
    main()
