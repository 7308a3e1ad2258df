"""A provably robust digit classifier: Lipschitz network, hinge margin loss, certificates checked by PGD.

Anil, Lucas and Grosse (2019), sections 4.3 and 7.3: if every layer of a
network is 1-Lipschitz, a prediction margin M (true logit minus the largest
other logit) certifies that no input perturbation of size
epsilon < M / (c L) can change the prediction, with c = 2 for L-infinity
networks and sqrt(2) for L2 ones (`tflip.metrics.robustness` derives both).
Training with the multi-class hinge loss at margin c * L * radius
(`tflip.losses.MulticlassHingeMargin`) pushes the margins, hence the
certified radii, of the training points towards `--radius`.

Two networks on scikit-learn's 8x8 digits (pixels in [-1, 1], 64 inputs):

- `--norm inf`: `LInfProjectedDense` (weights projected onto the matrix
  infinity-norm ball) with MaxMin, robust to L-infinity perturbations;
- `--norm 2`: `BjorckDense` (orthonormal weights) with GroupSort, robust to
  L2 perturbations.

On the held-out digits the script prints the clean accuracy, then for a few
epsilons the certified accuracy (the certificate uses the network's certified
Lipschitz bound `tflip.lipschitz.lipschitz_upper_bound`, not the design value)
and the accuracy under a PGD attack on the Carlini-Wagner margin loss, and
checks that no certified point was broken: certified <= attacked accuracy <=
clean accuracy, the gap being points that are robust without a certificate
or that the attack did not find.

Run:
    python examples/robust_classifier.py --norm inf --radius 0.1 --epochs 60
    python examples/robust_classifier.py --norm 2 --radius 0.5 --epsilons 0.1,0.25,0.5,1.0
    python examples/robust_classifier.py --smoke      # a few epochs, tiny network (tests)
"""

import argparse
import functools
import math
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import tflip  # noqa: E402
from tflip.lipschitz import lipschitz_upper_bound  # noqa: E402

# Per norm: layer constraint, activation, target radius, epsilons to evaluate.
SETTINGS = {
    "inf": ("linf", "maxmin", 0.1, (0.02, 0.05, 0.1)),
    "2": ("bjorck", "groupsort", 0.5, (0.1, 0.25, 0.5)),
}


def split_digits(test_fraction, seed):
    """Flat digits `(n, 64)` in [-1, 1], shuffled and split into train and test sets."""
    x, y = tflip.datasets.digits(image_shape=(64,))
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    test = int(round(test_fraction * len(x)))
    return (x[test:], y[test:]), (x[:test], y[:test])


def attack_margins(model, x, y, epsilon, norm, steps):
    """Margins of `model` at PGD's adversarial points inside the epsilon-ball and the pixel box [-1, 1]."""
    # Anil et al. (app. G.4) needed many steps and a small random start (a tenth of the ball)
    # against large-margin Lipschitz networks; the step follows Madry et al.'s 2.5 * eps / steps.
    attack = tf.function(functools.partial(
        tflip.attacks.pgd, model, epsilon=epsilon, step_size=2.5 * epsilon / steps, steps=steps, norm=norm,
        clip=(-1.0, 1.0), random_start=0.1, seed=0,
    ))
    x_adv = attack(x, y)
    return tflip.metrics.prediction_margins(model(x_adv, training=False), y).numpy()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--norm", default="inf", choices=sorted(SETTINGS), help="perturbation norm")
    parser.add_argument("--radius", type=float, default=None,
                        help="target certified radius of the margin loss (default 0.1 for inf, 0.5 for 2)")
    parser.add_argument("--epsilons", default=None, help="comma-separated attack sizes (default: by norm)")
    parser.add_argument("--depth", type=int, default=2, help="hidden layers")
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--pgd-steps", type=int, default=200)
    parser.add_argument("--test-fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="tiny network, few epochs and PGD steps (tests)")
    args = parser.parse_args(argv)
    constraint, activation, radius, epsilons = SETTINGS[args.norm]
    radius = args.radius if args.radius is not None else radius
    if args.epsilons is not None:
        try:
            epsilons = tuple(float(e) for e in args.epsilons.split(","))
        except ValueError:
            parser.error(f"--epsilons must be comma-separated numbers, got {args.epsilons!r}")
    if radius <= 0 or any(not e > 0 for e in epsilons):
        parser.error("--radius and --epsilons must be positive")
    if not 0 < args.test_fraction < 1:
        parser.error("--test-fraction must be in (0, 1)")
    for name in ("width", "epochs", "batch_size", "pgd_steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.smoke:
        args.depth, args.width, args.epochs, args.pgd_steps = 1, 32, 3, 10
        args.learning_rate, epsilons = 1e-2, epsilons[:2]
    norm = "inf" if args.norm == "inf" else 2
    # Certificate factor: ||e_t - e_j|| in the dual of the logits' norm (Hölder).
    factor = 2.0 if norm == "inf" else math.sqrt(2.0)

    keras.utils.set_random_seed(args.seed)
    (x_train, y_train), (x_test, y_test) = split_digits(args.test_fraction, args.seed)
    # Every layer is 1-Lipschitz by construction, so the design constant is L = 1.
    try:
        model = tflip.models.lipschitz_mlp(64, 10, args.depth, args.width, constraint, activation, name="classifier")
    except ValueError as error:  # e.g. an odd width for MaxMin
        parser.error(str(error))
    model.compile(
        keras.optimizers.Adam(args.learning_rate),
        loss=tflip.losses.MulticlassHingeMargin(margin=factor * 1.0 * radius),
        metrics=["accuracy", tflip.metrics.CertifiedAccuracy(1.0, radius, norm=norm)],
    )
    callbacks = [tflip.callbacks.BjorckTightening(30, verbose=0)] if constraint == "bjorck" else []
    model.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs, callbacks=callbacks,
              verbose=0 if args.smoke else 2)

    lipschitz = lipschitz_upper_bound(model, norm=norm)
    logits = model.predict(x_test, verbose=0)
    margins = tflip.metrics.prediction_margins(logits, y_test).numpy()
    clean = float(np.mean(margins > 0))
    certified = tflip.metrics.certified_accuracy(logits, y_test, lipschitz, list(epsilons), norm=norm).numpy()
    print(f"{constraint} + {activation} network, L{'-inf' if norm == 'inf' else '2'} threat model, "
          f"hinge margin {factor * radius:.3f} (target radius {radius}), certified Lipschitz bound {lipschitz:.6f}")
    print(f"  clean accuracy on {len(x_test)} held-out digits: {clean:.4f}")
    print(f"  {'epsilon':>8} {'certified':>10} {'under PGD':>10} {'certified but broken':>21}")
    attacked, broken = [], []
    for epsilon, certified_accuracy in zip(epsilons, certified):
        adversarial = attack_margins(model, x_test, y_test, epsilon, norm, args.pgd_steps)
        survived = (margins > 0) & (adversarial > 0)
        is_certified = margins > factor * lipschitz * epsilon
        attacked.append(float(np.mean(survived)))
        # A certificate is a proof: a broken certified point would mean a bug.
        broken.append(int(np.sum(is_certified & ~survived)))
        print(f"  {epsilon:8.3f} {certified_accuracy:10.4f} {attacked[-1]:10.4f} {broken[-1]:21d}")
    if any(broken):
        raise AssertionError(f"PGD broke certified points: {dict(zip(epsilons, broken))}")
    print("  no certified point was broken by PGD")
    return {
        "clean_accuracy": clean,
        "epsilons": list(epsilons),
        "certified_accuracy": [float(c) for c in certified],
        "pgd_accuracy": attacked,
        "broken": broken,
        "lipschitz_bound": lipschitz,
    }


if __name__ == "__main__":
    main()
