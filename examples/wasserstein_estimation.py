"""Estimating a known Wasserstein-1 distance with a Lipschitz critic (Anil et al. 2019, section 7.1).

Two distribution pairs with W1(P, Q) = 1 exactly:

- `three_cones`: P uniform on the points (-2, 0), (0, 0), (2, 0); Q a uniform
  point on the unit circle around one of them. The optimal critic is made of
  three cones of slope 1.
- `cone`: P a point mass at the origin of R^d, Q uniform on the unit sphere;
  the optimal critic is -||x||.

A `tflip.models.WassersteinCritic` maximizes mean f(P) - mean f(Q) over a
critic that is Lipschitz by construction (`--constraint bjorck`, `spectral`
or `linf` dense layers) or penalized (`--constraint none --penalty lp`), with
the chosen `--activation`. Anil et al.'s point: norm-constrained networks
with ReLU cannot represent the cones (their gradient norm must be 1 almost
everywhere), GroupSort / MaxMin / FullSort can.

The script prints the held-out estimate against the exact 1 and against the
exact W1 of the finite held-out samples (optimal transport between them): for
a 1-Lipschitz critic the estimate on those samples can never exceed the
latter, so it is the fair ceiling. Björck critics are tightened at the end
(`BjorckTightening`) so that their weights are orthonormal to about 1e-6. It
also prints the certified Lipschitz bound of the critic and the certified
lower bound of W1 it gives (estimate / bound). Nothing is plotted unless
`--plot FILE` (2-D problems: the critic's level sets with the samples).

Run:
    python examples/wasserstein_estimation.py --problem three_cones --activation groupsort
    python examples/wasserstein_estimation.py --problem three_cones --activation relu     # falls short of 1
    python examples/wasserstein_estimation.py --problem cone --dimension 64 --constraint linf --activation maxmin
    python examples/wasserstein_estimation.py --constraint none --activation relu --penalty lp
    python examples/wasserstein_estimation.py --plot critic.png
    python examples/wasserstein_estimation.py --smoke      # a few steps, tiny critic (tests)
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import tflip  # noqa: E402
from tflip.lipschitz import lipschitz_upper_bound  # noqa: E402
from tflip.models.mlp import ACTIVATIONS, CONSTRAINTS  # noqa: E402

PROBLEMS = ("three_cones", "cone")


def sample_pairs(problem, n, dimension, rng):
    """`n` samples of P and of Q, float32 `(n, d)` each."""
    if problem == "three_cones":
        return tflip.datasets.three_cones(n, seed=rng)
    return tflip.datasets.circular_cone(n, dimension, seed=rng)


def pair_dataset(problem, batch_size, dimension, seed):
    """An endless dataset of fresh `(p, q)` batches: the critic never sees a sample twice."""
    rng = np.random.default_rng(seed)
    dim = 2 if problem == "three_cones" else dimension

    def batches():
        while True:
            yield sample_pairs(problem, batch_size, dimension, rng)

    spec = tf.TensorSpec((batch_size, dim), tf.float32)
    return tf.data.Dataset.from_generator(batches, output_signature=(spec, spec)).prefetch(2)


def plot_critic(critic, p, q, path):
    """Saves the critic's level sets over the three-cones plane, with the P and Q samples, as a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    xs, ys = np.meshgrid(np.linspace(-3.5, 3.5, 141), np.linspace(-2.0, 2.0, 81))
    grid = np.stack([xs.ravel(), ys.ravel()], axis=1).astype("float32")
    values = critic.predict(grid, batch_size=4096, verbose=0).reshape(xs.shape)
    figure = Figure(figsize=(8, 4.5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    contours = axes.contourf(xs, ys, values, levels=30, cmap="viridis")
    figure.colorbar(contours, ax=axes, label="critic value")
    axes.scatter(q[:500, 0], q[:500, 1], s=2, c="white", label="Q")
    axes.scatter(p[:, 0], p[:, 1], s=30, c="red", marker="x", label="P")
    axes.set_aspect("equal")
    axes.legend(loc="upper right")
    axes.set_title("critic level sets (optimal: three cones of slope 1)")
    figure.savefig(path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", default="three_cones", choices=PROBLEMS)
    parser.add_argument("--dimension", type=int, default=32, help="dimension of --problem cone")
    parser.add_argument("--constraint", default="bjorck", choices=CONSTRAINTS)
    parser.add_argument("--activation", default="groupsort", choices=ACTIVATIONS)
    parser.add_argument("--group-size", type=int, default=2, help="GroupSort group size")
    parser.add_argument("--penalty", default="none", choices=("none",) + tflip.penalties.NAMES,
                        help="needed with --constraint none (e.g. lp)")
    parser.add_argument("--depth", type=int, default=3, help="hidden layers")
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--steps", type=int, default=2000, help="critic updates")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--eval-samples", type=int, default=1000, help="held-out samples of P and of Q")
    parser.add_argument("--plot", default=None, metavar="FILE", help="save the critic's level sets (three_cones)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="tiny critic, a few steps (tests)")
    args = parser.parse_args(argv)
    for name in ("dimension", "width", "steps", "batch_size", "eval_samples"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.depth < 0:
        parser.error("--depth must be >= 0")
    if args.constraint == "none" and args.penalty == "none":
        parser.error("an unconstrained critic needs a --penalty (e.g. lp): otherwise it is not Lipschitz")
    if args.plot and args.problem != "three_cones":
        parser.error("--plot draws the 2-D plane of --problem three_cones")
    if args.smoke:
        args.depth, args.width, args.steps, args.batch_size, args.eval_samples = 2, 16, 60, 64, 256
        args.learning_rate = 1e-2

    keras.utils.set_random_seed(args.seed)
    p_eval, q_eval = sample_pairs(args.problem, args.eval_samples, args.dimension,
                                  np.random.default_rng(args.seed + 1))
    try:
        critic = tflip.models.lipschitz_mlp(p_eval.shape[1], 1, args.depth, args.width, args.constraint,
                                            args.activation, args.group_size)
    except ValueError as error:  # e.g. a width that the GroupSort groups do not divide
        parser.error(str(error))
    estimator = tflip.models.WassersteinCritic(critic, penalty=None if args.penalty == "none" else args.penalty)
    estimator.compile(keras.optimizers.Adam(args.learning_rate))
    # Training runs few Björck steps per call (cheap, gradients flow through them);
    # the deployed critic should be orthonormal to float32 accuracy.
    callbacks = [tflip.callbacks.BjorckTightening(30, verbose=0)] if args.constraint == "bjorck" else []
    estimator.fit(pair_dataset(args.problem, args.batch_size, args.dimension, args.seed + 2),
                  steps_per_epoch=args.steps, epochs=1, callbacks=callbacks, shuffle=False,
                  verbose=0 if args.smoke else 2)

    # P plays "real": the critic is trained to be high on P, low on Q.
    estimate = float(np.mean(critic.predict(p_eval, verbose=0)) - np.mean(critic.predict(q_eval, verbose=0)))
    held_out_w1 = tflip.metrics.wasserstein1_exact(p_eval, q_eval)
    # An L-infinity-constrained critic is 1-Lipschitz in L-infinity, hence in L2 (||x||_inf <= ||x||_2);
    # its certificate is in that norm. The others are bounded in L2 directly.
    norm = "inf" if args.constraint == "linf" else 2
    bound = lipschitz_upper_bound(critic, norm=norm)
    name = args.problem + (f" (dimension {args.dimension})" if args.problem == "cone" else "")
    print(f"W1 estimation on {name}: {args.constraint} constraint, {args.activation}, penalty {args.penalty}, "
          f"depth {args.depth}, width {args.width}, {args.steps} steps")
    print(f"  held-out estimate mean f(P) - mean f(Q): {estimate:.4f}")
    print(f"  exact W1 of the distributions:           1.0000  (estimate / exact = {estimate:.4f})")
    print(f"  exact W1 of the {args.eval_samples} held-out samples:  {held_out_w1:.4f}  "
          f"(estimate / exact = {estimate / held_out_w1:.4f})")
    print(f"  certified Lipschitz bound of the critic ({'L-inf' if norm == 'inf' else 'L2'}): {bound:.6f}; "
          f"certified lower bound of the held-out W1: {estimate / bound:.4f}")
    if args.plot:
        plot_critic(critic, p_eval, q_eval, args.plot)
        print(f"  critic level sets saved to {args.plot}")
    return {
        "estimate": estimate,
        "exact_w1": 1.0,
        "held_out_w1": held_out_w1,
        "lipschitz_bound": bound,
        "certified_lower_bound": estimate / bound,
    }


if __name__ == "__main__":
    main()
