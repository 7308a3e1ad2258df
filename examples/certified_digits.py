"""A certified-robust convolutional digit classifier: 1-Lipschitz convolutions, HKR or offset CE, L2 certificates.

Builds a small 1-Lipschitz CNN on scikit-learn's 8x8 digits (pixels in
[0, 1]) from one family of tflip convolutions:

- `aol`: `AOLConv2D` / `AOLDense` (almost-orthogonal, no iteration: cheap);
- `orthogonal`: `OrthogonalConv2D` (exactly orthogonal, circular padding) /
  `BjorckDense`;
- `spectral`: `SpectralNormConv2D` / `SpectralNormDense`;
- `sll`: `SLLConv2D` residual blocks (channels changed by `AOLConv2D`),

with MaxMin activations and `L2NormPooling2D`, trained with the multiclass
HKR loss (`tflip.losses.MulticlassHKR`) or the offset cross-entropy
(`tflip.losses.OffsetCrossEntropy`). It then certifies each test image:

- generic: radius = margin / (sqrt(2) L), L the certified bound of the whole
  network (`tflip.lipschitz.lipschitz_upper_bound`);
- pairwise: radius = min_j (f_y - f_j) / (L_backbone ||w_y - w_j||), from the
  last layer's kernel (`tflip.metrics.pairwise_certified_radius`), never
  smaller,

and prints the certified accuracy at a few L2 radii. See
docs/certified-classification.md for the comparison of the families.

Run:
    python examples/certified_digits.py --family aol --loss hkr --epochs 60
    python examples/certified_digits.py --family orthogonal --loss offset_ce
    python examples/certified_digits.py --smoke      # tiny network, one epoch (tests)
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tflip  # noqa: E402
from tflip import layers as L  # noqa: E402
from tflip.lipschitz import lipschitz_upper_bound  # noqa: E402
from tflip.metrics import certified_radius, pairwise_certified_radius, prediction_margins  # noqa: E402

EPSILONS = (0.1, 0.25, 0.5)


def family_layers(family):
    """(conv factory, dense class) of a family; SLL's channel-changing convolutions are AOL."""
    if family == "aol":
        return (lambda f: L.AOLConv2D(f, 3, padding="same")), L.AOLDense
    if family == "orthogonal":
        return (lambda f: L.OrthogonalConv2D(f, 3)), L.BjorckDense
    if family == "spectral":
        return (lambda f: L.SpectralNormConv2D(f, 3, padding="same")), L.SpectralNormDense
    if family == "sll":
        return (lambda f: L.AOLConv2D(f, 3, padding="same")), L.AOLDense
    raise ValueError(f"`family` must be one of aol, orthogonal, spectral, sll, got {family!r}.")


def build_classifier(family, stages=(16, 32), dense_units=64):
    """Two conv stages (conv, MaxMin, second conv or SLL block, L2-norm pooling), a dense layer, 10 logits."""
    conv, dense = family_layers(family)
    layers = [keras.Input((8, 8, 1))]
    for filters in stages:
        layers += [conv(filters), L.MaxMin()]
        layers += [L.SLLConv2D(filters, 3)] if family == "sll" else [conv(filters), L.MaxMin()]
        layers.append(L.L2NormPooling2D(2))
    layers.append(keras.layers.Flatten())
    layers += [L.SLLDense(dense_units)] if family == "sll" else [dense(dense_units), L.MaxMin()]
    layers.append(dense(10))  # the last layer stays linear: its kernel feeds the pairwise certificate
    return keras.Sequential(layers)


def load_digits(seed=0):
    """Images (n, 8, 8, 1) in [0, 1], shuffled and split 1347 / 450."""
    x, y = tflip.datasets.digits()
    x = (x + 1.0) / 2.0
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    return (x[450:], y[450:]), (x[:450], y[:450])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="aol", choices=("aol", "orthogonal", "spectral", "sll"))
    parser.add_argument("--loss", default="hkr", choices=("hkr", "offset_ce"))
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="tiny network, one epoch on 128 images (tests)")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error("--epochs must be >= 1")
    keras.utils.set_random_seed(args.seed)
    (x_train, y_train), (x_test, y_test) = load_digits(args.seed)
    if args.smoke:
        x_train, y_train, x_test, y_test, args.epochs = x_train[:128], y_train[:128], x_test[:64], y_test[:64], 1
        model = build_classifier(args.family, stages=(4, 8), dense_units=8)
    else:
        model = build_classifier(args.family)
    if args.loss == "hkr":
        # A zero hinge means margins >= 1, i.e. certified radii >= 1 / sqrt(2) for a 1-Lipschitz network.
        loss = tflip.losses.MulticlassHKR(alpha=50.0, margin=1.0)
    else:
        loss = tflip.losses.OffsetCrossEntropy(offset=1.0, temperature=8.0)
    steps = args.epochs * -(-len(y_train) // 64)
    schedule = keras.optimizers.schedules.CosineDecay(args.learning_rate, steps, alpha=0.05)
    model.compile(keras.optimizers.Adam(schedule), loss=loss)
    model.fit(x_train, y_train, batch_size=64, epochs=args.epochs, verbose=0 if args.smoke else 2,
              callbacks=[tflip.callbacks.PowerIterationRefresh()])

    logits = model.predict(x_test, verbose=0)
    lipschitz = lipschitz_upper_bound(model)
    backbone_lipschitz = lipschitz_upper_bound(keras.Model(model.inputs, model.layers[-2].output))
    generic = certified_radius(prediction_margins(logits, y_test), lipschitz).numpy()
    pairwise = pairwise_certified_radius(logits, y_test, model.layers[-1], backbone_lipschitz).numpy()
    clean = float(np.mean(np.argmax(logits, axis=1) == y_test))
    print(f"{args.family} / {args.loss}: clean accuracy {100 * clean:.1f}% on {len(y_test)} test digits")
    print(f"certified Lipschitz bound: network {lipschitz:.4f}, without the last layer {backbone_lipschitz:.4f}")
    accuracy = {}
    for eps in EPSILONS:
        accuracy[eps] = {"generic": float(np.mean(generic > eps)), "pairwise": float(np.mean(pairwise > eps))}
        print(f"certified accuracy at L2 radius {eps}: {100 * accuracy[eps]['pairwise']:.1f}% (pairwise), "
              f"{100 * accuracy[eps]['generic']:.1f}% (generic margin / (sqrt(2) L))")
    return {"clean_accuracy": clean, "lipschitz_bound": lipschitz, "backbone_lipschitz_bound": backbone_lipschitz,
            "certified_accuracy": accuracy, "generic_radii": generic, "pairwise_radii": pairwise}


if __name__ == "__main__":
    main()
