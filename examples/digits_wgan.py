"""A WGAN on scikit-learn's 8x8 digits with a critic normalized by the exact convolution norms.

The critic is a stack of `SpectralNormConv2D(norm="toeplitz")` layers: each
kernel is divided by the largest singular value of the convolution as a
linear map on its actual input grid (strides and zero padding included), not
by the norm of the reshaped kernel, so with MaxMin activations the critic is
1-Lipschitz by construction and needs no penalty, up to the accuracy of the
persistent power iteration that estimates each norm. That estimate approaches
the norm from below and lags behind the training updates, more so as the
normalized spectra flatten, so between refreshes the exact norms (logged) can
exceed 1 by a few percent. `tflip.callbacks.PowerIterationRefresh` converges
the estimates at the start, every `--refresh-every` batches and at the end
of training, so the final critic is exactly normalized; `--power-iterations`
trades speed for accuracy in between. The generator is a small
ReLU network: Dense -> 4x4 feature maps -> transposed convolution to 8x8 ->
tanh, matching the digits' [-1, 1] pixel range.

TensorBoard (`--logdir`) receives the layers' singular-value spectra, exact
operator norms and the critic's certified Lipschitz bound against its probe
gradient norms (`tflip.callbacks.SpectrumLogger`), and a grid of samples from
fixed latent vectors (`tflip.callbacks.SampleGrid`). At the end the script
prints the certified Lipschitz upper bound of the critic, per layer and in
total, next to the exact layer norms logged by the monitor (these layers are
small enough for the certificate to be the exact norm of the explicit
matrix, up to a 1e-9 rounding margin; unlike the power iteration it can
never be below it). `--clamp R` wraps the generator's optimizer in
`tflip.optimizers.SpectralGradientClamp`, which keeps sigma_0 / sigma_1 of
every generator update at most R (Sargent, section 4.2.3).

Run:
    python examples/digits_wgan.py --epochs 200 --logdir logs/digits_wgan
    tensorboard --logdir logs/digits_wgan
    python examples/digits_wgan.py --clamp 2 --epochs 200
    python examples/digits_wgan.py --smoke      # a few steps, tiny networks (tests)
"""

import argparse
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tflip  # noqa: E402
from tflip.layers import SpectralNormConv2D, SpectralNormDense  # noqa: E402
from tflip.lipschitz import layer_lipschitz_bound, lipschitz_upper_bound  # noqa: E402
from tflip.lipschitz.spectra import linear_layers  # noqa: E402
from tflip.models.mlp import activation_layer  # noqa: E402
from tflip.optimizers import SpectralGradientClamp  # noqa: E402

PENALTIES = ("none",) + tflip.penalties.NAMES


def conv_critic(width, activation, power_iterations):
    """8x8x1 -> 1: three Toeplitz-normalized convolutions (8x8, 4x4, 2x2 maps) and a normalized Dense."""

    def conv(filters, strides, name):
        return SpectralNormConv2D(filters, 3, strides, padding="same", norm="toeplitz",
                                  power_iterations=power_iterations, name=name)

    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            conv(width, 1, "conv_8x8"), activation_layer(activation, name=f"{activation}_0"),
            conv(2 * width, 2, "conv_4x4"), activation_layer(activation, name=f"{activation}_1"),
            conv(2 * width, 2, "conv_2x2"), activation_layer(activation, name=f"{activation}_2"),
            keras.layers.Flatten(),
            SpectralNormDense(1, power_iterations=power_iterations, name="output"),
        ],
        name="critic",
    )


def conv_generator(latent_dim, width):
    """latent -> 8x8x1 in [-1, 1]: Dense to 4x4 maps, a stride-2 transposed convolution, tanh."""
    return keras.Sequential(
        [
            keras.Input((latent_dim,)),
            keras.layers.Dense(4 * 4 * 2 * width, "relu"),
            keras.layers.Reshape((4, 4, 2 * width)),
            keras.layers.Conv2DTranspose(width, 4, strides=2, padding="same", activation="relu"),
            keras.layers.Conv2D(1, 3, padding="same", activation="tanh"),
        ],
        name="generator",
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--critic-batch-size", type=int, default=64, help="samples per critic update")
    parser.add_argument("--n-critic", type=int, default=5, help="critic updates per generator update")
    parser.add_argument("--width", type=int, default=32, help="channels of the first convolutions")
    parser.add_argument("--latent-dim", type=int, default=32)
    parser.add_argument("--activation", default="maxmin", choices=("maxmin", "groupsort", "fullsort", "relu"),
                        help="critic activation (the sorting ones preserve gradient norms)")
    parser.add_argument("--power-iterations", type=int, default=1, help="per training call and layer")
    parser.add_argument("--refresh-every", type=int, default=20,
                        help="converge the power iterations every this many batches (0: only at start and end)")
    parser.add_argument("--penalty", default="none", choices=PENALTIES,
                        help="optional penalty on top of the normalization (default none)")
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--clamp", type=float, default=None, metavar="R",
                        help="clamp sigma_0 / sigma_1 of the generator's updates to R > 1")
    parser.add_argument("--logdir", default=None, help="TensorBoard directory (default logs/digits_wgan; "
                        "a temporary directory with --smoke)")
    parser.add_argument("--log-every", type=int, default=1, help="TensorBoard period in epochs")
    parser.add_argument("--smoke", action="store_true", help="tiny networks, two steps (tests)")
    args = parser.parse_args(argv)
    for name in ("epochs", "critic_batch_size", "n_critic", "width", "latent_dim", "power_iterations", "log_every"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.refresh_every < 0:
        parser.error("--refresh-every must be >= 0")
    if args.clamp is not None and args.clamp <= 1:
        parser.error("--clamp must be > 1")
    if args.smoke:
        # One critic update per step: tracing the unrolled critic steps dominates a tiny run.
        args.epochs, args.width, args.latent_dim, args.critic_batch_size, args.n_critic = 1, 4, 8, 32, 1
    logdir = args.logdir or (tempfile.mkdtemp(prefix="digits_wgan_") if args.smoke else "logs/digits_wgan")

    keras.utils.set_random_seed(0)
    images, _ = tflip.datasets.digits(image_shape=(8, 8, 1))
    images = images[np.random.default_rng(0).permutation(len(images))]
    # Each fit batch holds n_critic critic batches (the WGAN splits it).
    batch_size = args.n_critic * args.critic_batch_size
    train = images[: 2 * batch_size] if args.smoke else images

    critic = conv_critic(args.width, args.activation, args.power_iterations)
    generator = conv_generator(args.latent_dim, args.width)
    gan = tflip.models.WGAN(generator, critic, latent_dim=args.latent_dim, n_critic=args.n_critic,
                            penalty=None if args.penalty == "none" else args.penalty)
    generator_optimizer = keras.optimizers.Adam(args.learning_rate, beta_1=0.5, beta_2=0.9)
    if args.clamp is not None:
        generator_optimizer = SpectralGradientClamp(generator_optimizer, ratio=args.clamp)
    gan.compile(keras.optimizers.Adam(args.learning_rate, beta_1=0.5, beta_2=0.9), generator_optimizer)

    refresh = tflip.callbacks.PowerIterationRefresh(every_n_batches=args.refresh_every or None)
    spectra = tflip.callbacks.SpectrumLogger(os.path.join(logdir, "spectra"), every_n_epochs=args.log_every,
                                             probe=images[:256])
    samples = tflip.callbacks.SampleGrid(os.path.join(logdir, "samples"), every_n_epochs=args.log_every,
                                         n=16, seed=1)
    print(f"WGAN on {len(train)} 8x8 digits: Toeplitz-normalized conv critic ({args.activation}), "
          f"penalty {args.penalty}, generator optimizer "
          f"{'SpectralGradientClamp(Adam, ratio=%g)' % args.clamp if args.clamp else 'Adam'}; "
          f"TensorBoard logs in {logdir}")
    history = gan.fit(train, batch_size=batch_size, epochs=args.epochs, shuffle=True,
                      verbose=0 if args.smoke else 2, callbacks=[refresh, spectra, samples])

    # Certified (`SpectralNormConv2D.lipschitz_upper_bound`) next to the exact operator norms that
    # SpectrumLogger measures, both after the final PowerIterationRefresh.
    layer_bounds = {layer.name: layer_lipschitz_bound(layer) for layer in critic.layers}
    bound = lipschitz_upper_bound(critic)
    measured = {layer.name: spectra.analyzer.analyze(layer).sigma_max for layer in linear_layers(critic)}
    exact = {layer.name: measured.get(layer.name) for layer in critic.layers}
    print("critic layer          certified bound   exact operator norm (SpectrumLogger)")
    for name, value in layer_bounds.items():
        if exact[name] is not None:
            print(f"  {name:20s} {value:15.4f} {exact[name]:21.6f}")
    print(f"certified Lipschitz upper bound of the critic: {bound:.4f} (product of the layer bounds; target 1); "
          f"largest gradient norm on real digits: {spectra.latest.get('critic/probe_gradient_norm_max', np.nan):.4f}")
    if args.clamp is not None:
        print(f"generator updates clamped so far: {generator_optimizer.diagnostics()['clamp_count']}")
    return {
        "history": history.history,
        "lipschitz_bound": bound,
        "layer_bounds": layer_bounds,
        "exact_layer_norms": {name: value for name, value in exact.items() if value is not None},
        "spectrum": dict(spectra.latest),
        "logdir": logdir,
    }


if __name__ == "__main__":
    main()
