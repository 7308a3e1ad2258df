"""Train a digits GAN with a chosen regularizer; score its raw and EMA generator by the Fréchet digits distance.

The Fréchet digits distance is the Fréchet (FID) distance on the penultimate
features of a small classifier trained on the 8x8 digits (Inception features
make no sense for 8x8 grey images). The WGAN keeps an exponential moving
average of the generator's weights (`ema_half_life`, in generated images, as
StyleGAN2 counts it); training continues on the raw weights, and both are
scored on the same latent vectors. `benchmarks/bench_gan_quality.py` runs the
whole table (docs/gan-quality.md).

Run:
    python examples/gan_quality.py --penalty r1 --loss nonsaturating --steps 300
    python examples/gan_quality.py --critic spectral --penalty none --loss hinge
    python examples/gan_quality.py --smoke      # tiny networks, a few steps (tests)
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tflip  # noqa: E402


def feature_classifier(images, labels, epochs):
    """A small conv classifier of the digits; returns the model of its 64 penultimate features."""
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(inputs)
    h = keras.layers.Conv2D(64, 3, strides=2, padding="same", activation="relu")(h)
    features = keras.layers.Dense(64, activation="relu")(keras.layers.Flatten()(h))
    classifier = keras.Model(inputs, keras.layers.Dense(10)(features))
    classifier.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    classifier.fit(images, labels, batch_size=64, epochs=epochs, verbose=0)
    return keras.Model(inputs, features)


def critic(kind, width):
    """A 3-conv critic: plain `Conv2D` (to be regularized by a penalty) or exactly spectrally normalized."""
    def conv(filters, strides):
        if kind == "spectral":
            return tflip.layers.SpectralNormConv2D(filters, 3, strides=strides, padding="same", norm="toeplitz")
        return keras.layers.Conv2D(filters, 3, strides=strides, padding="same")

    head = tflip.layers.SpectralNormDense(1) if kind == "spectral" else keras.layers.Dense(1)
    return keras.Sequential([
        keras.Input((8, 8, 1)),
        conv(width, 1), keras.layers.LeakyReLU(0.1),
        conv(2 * width, 2), keras.layers.LeakyReLU(0.1),
        conv(4 * width, 2), keras.layers.LeakyReLU(0.1),
        keras.layers.Flatten(), head,
    ])


def generator(latent_dim, width):
    """latent -> 4x4 -> transposed conv to 8x8 -> tanh image, with batch norm."""
    return keras.Sequential([
        keras.Input((latent_dim,)),
        keras.layers.Dense(4 * 4 * width, use_bias=False), keras.layers.Reshape((4, 4, width)),
        keras.layers.BatchNormalization(), keras.layers.ReLU(),
        keras.layers.Conv2DTranspose(width // 2, 4, strides=2, padding="same", use_bias=False),
        keras.layers.BatchNormalization(), keras.layers.ReLU(),
        keras.layers.Conv2D(1, 3, padding="same", activation="tanh"),
    ])


def main(argv=None):
    """Trains the GAN and returns `{"raw": [...], "ema": [...], "noise_floor": float}` (Fréchet distances)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--penalty", default="r1", help="gp, lp, alp, r1, r1r2, ... (tflip.penalties) or none")
    parser.add_argument("--penalty-weight", type=float, default=None, help="weight (gamma for r1 / r1r2)")
    parser.add_argument("--loss", default="nonsaturating", help="wasserstein, hinge or nonsaturating")
    parser.add_argument("--critic", default="plain", choices=("plain", "spectral"))
    parser.add_argument("--steps", type=int, default=300, help="generator steps (5 critic steps each)")
    parser.add_argument("--evaluations", type=int, default=3, help="Fréchet distances during training")
    parser.add_argument("--ema-half-life", type=float, default=2560.0, help="in generated images")
    parser.add_argument("--smoke", action="store_true", help="tiny networks, a few steps (tests)")
    args = parser.parse_args(argv)
    steps, evaluations, width, epochs = (4, 2, 8, 1) if args.smoke else (args.steps, args.evaluations, 32, 20)
    if steps % evaluations:
        parser.error("--steps must be a multiple of --evaluations")

    keras.utils.set_random_seed(0)
    images, labels = tflip.datasets.digits((8, 8, 1))  # in [-1, 1]
    order = np.random.default_rng(0).permutation(len(images))
    train, held_out = images[order[:1500]], images[order[1500:]]
    frechet = tflip.metrics.FrechetDistance(feature_classifier(train, labels[order[:1500]], epochs))
    reference = frechet.statistics(train)
    noise_floor = frechet(reference, held_out)

    penalty = None if args.penalty == "none" else args.penalty
    if penalty is not None and args.penalty_weight is not None:
        penalty = tflip.penalties.get(penalty, weight=args.penalty_weight)
    latent_dim, n_critic, batch = 32, 5, 64
    gan = tflip.models.WGAN(generator(latent_dim, 2 * width), critic(args.critic, width), latent_dim=latent_dim,
                            penalty=penalty, n_critic=n_critic, loss=args.loss, ema_half_life=args.ema_half_life)
    gan.compile(*(keras.optimizers.Adam(5e-4, beta_1=0.0, beta_2=0.9) for _ in range(2)))
    latent = np.random.default_rng(1).standard_normal((len(held_out), latent_dim)).astype("float32")
    scores = {"raw": [], "ema": [], "noise_floor": noise_floor}

    def score(epoch, logs):
        for kind, model in (("raw", gan.generator), ("ema", gan.ema_generator)):
            scores[kind].append(frechet(reference, np.asarray(model(latent, training=False))))
        print(f"  after {(epoch + 1) * steps // evaluations:5d} generator steps: Fréchet digits distance "
              f"raw {scores['raw'][-1]:.3f}, EMA {scores['ema'][-1]:.3f}")

    data = tf_dataset(train, n_critic * batch)
    print(f"{type(gan.penalty).__name__ if gan.penalty else 'no penalty'}, {args.loss} loss, {args.critic} critic; "
          f"noise floor (held-out real digits) {noise_floor:.3f}")
    gan.fit(data, epochs=evaluations, steps_per_epoch=steps // evaluations, verbose=0, shuffle=False,
            callbacks=[keras.callbacks.LambdaCallback(on_epoch_end=score)])
    return scores


def tf_dataset(images, batch_size):
    import tensorflow as tf

    return (tf.data.Dataset.from_tensor_slices(images).shuffle(len(images), seed=0).repeat()
            .batch(batch_size, drop_remainder=True))


if __name__ == "__main__":
    main()
