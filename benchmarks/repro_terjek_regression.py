"""Reproduction of Terjek (ICLR 2020) appendix A.4: the 1-Lipschitz regression toy (figure 2).

Target (eq. 27) on the square [-4, 4]^2, with r = sqrt(x^2 + y^2):
    f(x, y) = 0 if 1 <= r <= 2, and 1 otherwise.
Its best 1-Lipschitz approximation in mean squared error given by the paper
(eq. 28) is radial:
    f_opt = 1 for r <= 0.5, 1.5 - r for 0.5 < r <= 1.5,
            r - 1.5 for 1.5 < r <= 2.5, 1 for r > 2.5,
so ||grad f_opt|| is 1 on the annulus 0.5 < r < 2.5 and 0 elsewhere. An
MLP 2-20-40-20-1 (ReLU; a variant with batch normalization before each
activation) is fitted to the target by mean squared error and regularized by
spectral normalization (SN, `SpectralNormDense`), the Lipschitz penalty (LP,
lambda 0.1 / 1 / 10) or the adversarial Lipschitz penalty (ALP, lambda 1,
k = 0 / 1 / 5 power iterations). The score is the mean absolute error between
the learned and the optimal gradient norm on a grid over the square;
the heatmaps reproduce figure 2 (black 0, white >= 1).

How a WGAN penalty is applied to a regression: each step draws 64
input-output pairs for the loss and 1024 further uniform inputs for the
regularizer (the paper's "additional input for regularization"). The penalty
is called with the protocol `penalty(network, real, fake)`: LP samples its
points on segments between `real` and `fake`, so passing the same 1024 inputs
as both makes the penalty points exactly those inputs; ALP perturbs every
row of `real` and of `fake`, so the 1024 inputs are split in two halves.
The paper found the best ALP perturbation length epsilon ~ U[1e-6, 1e-5],
used here; its power-iteration step xi for the toy is not given, we use
0.01 (the default 10 would probe across the whole square).

Scale: the paper trains 2^14 iterations; we train 2^12 by default (see
`--iterations`), one seed. Optimizer: Adam 1e-3 (not stated in the paper).

Run: python benchmarks/repro_terjek_regression.py [--smoke] [--out DIR]
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
from tflip.callbacks.level_sets import critic_field  # noqa: E402
from tflip.layers import SpectralNormDense  # noqa: E402

NAME = "terjek_regression"
DEFAULT_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", NAME)
HALF_WIDTH = 4.0  # the square [-4, 4]^2
HIDDEN = (20, 40, 20)


def target(points):
    """Eq. 27: 0 on the annulus 1 <= r <= 2, 1 elsewhere (numpy or tensor, `(n, 2)` -> `(n,)`)."""
    r = tf.norm(tf.convert_to_tensor(points, tf.float32), axis=-1)
    return tf.where((r >= 1.0) & (r <= 2.0), 0.0, 1.0)


def optimum(points):
    """Eq. 28, the optimal 1-Lipschitz approximation, and its gradient norm (numpy, `(n,)` each)."""
    r = np.linalg.norm(np.asarray(points, dtype="float64"), axis=-1)
    value = np.where(r <= 0.5, 1.0, np.where(r <= 1.5, 1.5 - r, np.where(r <= 2.5, r - 1.5, 1.0)))
    slope = ((r > 0.5) & (r < 2.5)).astype("float64")
    return value, slope


def network(batch_norm, spectral, seed):
    """The 2-20-40-20-1 ReLU MLP, with batch normalization before the activations if asked.

    Args:
        batch_norm: insert `BatchNormalization` between each hidden affine map and its ReLU.
        spectral: use `SpectralNormDense` (1-Lipschitz affine maps) for every layer.
        seed: initializer seed.
    """
    dense = SpectralNormDense if spectral else keras.layers.Dense
    init = keras.initializers.GlorotUniform(seed=seed)
    layers = [keras.Input((2,))]
    for units in HIDDEN:
        layers.append(dense(units, kernel_initializer=init))
        if batch_norm:
            # PyTorch's default momentum 0.1 (the paper's implementation) is Keras' 0.9.
            layers.append(keras.layers.BatchNormalization(momentum=0.9))
        layers.append(keras.layers.ReLU())
    layers.append(dense(1, kernel_initializer=init))
    return keras.Sequential(layers)


def make_penalty(kind, weight, power_iterations, xi, seed):
    if kind == "LP":
        return tflip.penalties.LipschitzPenalty(weight=weight, seed=seed)
    if kind == "ALP":
        return tflip.penalties.AdversarialLipschitzPenalty(
            weight=weight, xi=xi, epsilon=(1e-6, 1e-5), power_iterations=power_iterations, seed=seed)
    return None


class PenalizedRegression:
    """A thin training loop: mean squared error on fresh pairs plus a tflip penalty on fresh inputs.

    Args:
        model: the regression network.
        penalty: a `tflip.penalties.Penalty` or `None`.
        batch: input-output pairs per step.
        regularization_batch: inputs for the penalty per step.
        learning_rate: Adam step.
        seed: seed of the input draws.
        compiled: run the steps as one `tf.function` (eager steps are faster
            than tracing for the few steps of a smoke run).
    """

    def __init__(self, model, penalty, batch, regularization_batch, learning_rate, seed, compiled=True):
        self.model, self.penalty = model, penalty
        self.batch, self.regularization_batch = batch, regularization_batch
        self.optimizer = keras.optimizers.Adam(learning_rate)
        self.optimizer.build(model.trainable_variables)
        self.random = tf.random.Generator.from_seed(seed)
        if penalty is not None:
            penalty.build((regularization_batch, 2))
        self.train = tf.function(self.steps) if compiled else self.steps

    def penalty_value(self, inputs):
        if self.penalty is None:
            return tf.constant(0.0)
        if isinstance(self.penalty, tflip.penalties.GradientNormPenalty):
            # Interpolates of identical rows are the rows themselves: the penalty points are `inputs`.
            return self.penalty(self.model, inputs, inputs)
        half = self.regularization_batch // 2
        return self.penalty(self.model, inputs[:half], inputs[half:])

    def steps(self, steps):
        """Runs `steps` updates; returns the last step's squared error and penalty."""
        loss, penalty = tf.constant(0.0), tf.constant(0.0)
        for _ in tf.range(steps):
            x = self.random.uniform((self.batch, 2), -HALF_WIDTH, HALF_WIDTH)
            inputs = self.random.uniform((self.regularization_batch, 2), -HALF_WIDTH, HALF_WIDTH)
            with tf.GradientTape() as tape:
                prediction = tf.reshape(self.model(x, training=True), [-1])
                loss = tf.reduce_mean(tf.square(prediction - target(x)))
                penalty = self.penalty_value(inputs)
                total = loss + penalty
            variables = self.model.trainable_variables
            self.optimizer.apply(tape.gradient(total, variables), variables)
        return loss, penalty


def configurations(args):
    """`(label, kind, weight, power_iterations)` of every regularizer in the comparison."""
    # The smoke run keeps only the two penalty code paths: every trained configuration costs a trace.
    configs = [] if args.smoke else [("none", None, 0.0, 0), ("SN", "SN", 0.0, 0)]
    configs += [(f"LP lambda={w:g}", "LP", w, 0) for w in args.lp_weights]
    configs += [(f"ALP lambda={args.alp_weight:g} k={k}", "ALP", args.alp_weight, k) for k in args.power_iterations]
    return configs


def evaluate(model, resolution):
    """Gradient norms of `model` and of the optimum on a grid, and the mean squared errors of the fit."""
    xs = np.linspace(-HALF_WIDTH, HALF_WIDTH, resolution, dtype="float32")
    grid = np.stack(np.meshgrid(xs, xs), axis=-1).reshape(-1, 2)
    values, norms = critic_field(model, grid)
    best, best_norms = optimum(grid)
    return {
        "gradient_norm_mae": float(np.mean(np.abs(norms - best_norms))),
        "gradient_norm_max": float(norms.max()),
        "gradient_norm_mean": float(norms.mean()),
        "fraction_gradient_norm_above_1": float(np.mean(norms > 1.0)),
        "mse_to_target": float(np.mean(np.square(values - target(grid).numpy()))),
        "mse_to_optimum": float(np.mean(np.square(values - best))),
    }, norms.reshape(resolution, resolution)


def short_label(label):
    """A panel title: "LP lambda=0.1" -> "LP $\\lambda$=0.1"."""
    return label.replace("lambda=", "$\\lambda$=")


def plot_heatmaps(path, maps, labels, resolution):
    """Figure 2's layout: the optimum's gradient norm, then one heatmap per regularizer, one row per BN variant."""
    from tflip.callbacks.summary import figure_pixels

    xs = np.linspace(-HALF_WIDTH, HALF_WIDTH, resolution)
    grid = np.stack(np.meshgrid(xs, xs), axis=-1).reshape(-1, 2)
    best = optimum(grid)[1].reshape(resolution, resolution)
    columns = 1 + len(labels)

    def draw(figure):
        axes = figure.subplots(2, columns, squeeze=False)
        figure.subplots_adjust(left=0.04, right=0.93, top=0.86, bottom=0.02, wspace=0.08, hspace=0.35)
        for row, batch_norm in enumerate((False, True)):
            panels = [("optimum (eq. 28)", best, None)]
            panels += [(short_label(label), *maps[batch_norm, label]) for label in labels]
            for ax, (title, norms, score) in zip(axes[row], panels):
                # Figure 2's colour map: black at 0, white at 1 (larger norms saturate).
                image = ax.imshow(norms, origin="lower", extent=(-4, 4, -4, 4), cmap="gray", vmin=0.0, vmax=1.0)
                ax.set_title(title if score is None else f"{title}\nMAE {score:.3f}", fontsize=9)
                ax.set_xticks([])
                ax.set_yticks([])
            axes[row, 0].set_ylabel("with BN" if batch_norm else "no BN", fontsize=11)
        colorbar = figure.add_axes([0.945, 0.15, 0.012, 0.6])
        figure.colorbar(image, cax=colorbar, label="||grad f||")

    write_png(path, figure_pixels(draw, size=(175 * columns + 90, 440)))


def write_png(path, pixels):
    tf.io.write_file(path, tf.io.encode_png(tf.convert_to_tensor(pixels)))


def main(argv=None):
    """Runs the reproduction and writes `results.json` and `gradient_norms.png`.

    Options: `--help`. Returns the dictionary written to `results.json`.
    """
    parser = reproduction_parser(__doc__, DEFAULT_OUT, "tiny budget (tests)")
    parser.add_argument("--iterations", type=int, default=2**12, help="training iterations (paper: 2^14)")
    parser.add_argument("--batch", type=int, default=64, help="input-output pairs per step (paper: 64)")
    parser.add_argument("--regularization-batch", type=int, default=1024,
                        help="penalty inputs per step (paper: 1024)")
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="Adam learning rate")
    parser.add_argument("--lp-weights", type=float, nargs="+", default=[0.1, 1.0, 10.0], help="LP lambda values")
    parser.add_argument("--alp-weight", type=float, default=1.0, help="ALP lambda (the paper's best: 1)")
    parser.add_argument("--power-iterations", type=int, nargs="+", default=[0, 1, 5], help="ALP k values")
    parser.add_argument("--xi", type=float, default=0.01, help="ALP power-iteration step")
    parser.add_argument("--resolution", type=int, default=200, help="grid points per axis of the evaluation")
    args = parser.parse_args(argv)
    if args.smoke:
        args.iterations, args.regularization_batch, args.resolution = 5, 64, 40
        args.lp_weights, args.power_iterations = [1.0], [1]
    for name in ("iterations", "batch", "resolution"):
        if getattr(args, name) < 1:
            raise ValueError(f"`--{name.replace('_', '-')}` must be >= 1, got {getattr(args, name)}.")
    if args.regularization_batch < 2 or args.regularization_batch % 2:
        raise ValueError(f"`--regularization-batch` must be an even number >= 2, got {args.regularization_batch}.")
    os.makedirs(args.out, exist_ok=True)
    start = time.perf_counter()
    labels = [label for label, *_ in configurations(args)]
    runs, maps = [], {}
    for batch_norm in (False, True):
        for label, kind, weight, power_iterations in configurations(args):
            began = time.perf_counter()
            keras.utils.set_random_seed(0)
            model = network(batch_norm, kind == "SN", seed=0)
            penalty = make_penalty(kind, weight, power_iterations, args.xi, seed=0)
            trainer = PenalizedRegression(model, penalty, args.batch, args.regularization_batch,
                                          args.learning_rate, seed=0, compiled=not args.smoke)
            loss, penalty_value = trainer.train(tf.constant(args.iterations))
            scores, norms = evaluate(model, args.resolution)
            record = {"batch_norm": batch_norm, "regularizer": label, "kind": kind or "none", "weight": weight,
                      "power_iterations": power_iterations, "final_batch_mse": float(loss),
                      "final_penalty": float(penalty_value), **scores, "seconds": time.perf_counter() - began}
            if penalty is not None and hasattr(penalty, "violation_rate"):
                record["alp_violation_rate"] = float(penalty.violation_rate.result())
            runs.append(record)
            maps[batch_norm, label] = (norms, scores["gradient_norm_mae"])
            print(f"{'BN' if batch_norm else '  '} {label:22s} grad-norm MAE {scores['gradient_norm_mae']:.4f}  "
                  f"max {scores['gradient_norm_max']:.2f}  MSE(target) {scores['mse_to_target']:.4f}  "
                  f"MSE(opt) {scores['mse_to_optimum']:.4f}  ({record['seconds']:.0f} s)", flush=True)
    xs = np.linspace(-HALF_WIDTH, HALF_WIDTH, args.resolution)
    grid = np.stack(np.meshgrid(xs, xs), axis=-1).reshape(-1, 2)
    best_value = optimum(grid)[0]
    output = {
        "paper": "Terjek, Adversarial Lipschitz Regularization, ICLR 2020, app. A.4 (eq. 27-28, fig. 2)",
        "config": {key: value for key, value in vars(args).items() if key != "out"},
        "optimum": {"mse_to_target": float(np.mean(np.square(best_value - target(grid).numpy()))),
                    "gradient_norm_mean": float(np.mean(optimum(grid)[1]))},
        "runs": runs,
        "table": {f"{'BN' if r['batch_norm'] else 'no BN'}/{r['regularizer']}": r["gradient_norm_mae"] for r in runs},
        "wall_seconds": time.perf_counter() - start,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "tensorflow": tf.__version__},
    }
    write_results(args.out, output)
    plot_heatmaps(os.path.join(args.out, "gradient_norms.png"), maps, labels, args.resolution)
    print(f"optimum: MSE to target {output['optimum']['mse_to_target']:.4f}")
    return output


if __name__ == "__main__":
    main()
