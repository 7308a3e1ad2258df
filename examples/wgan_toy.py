"""Train a WGAN with a chosen Lipschitz penalty on a 2-D toy set and report the exact W1.

Gulrajani et al.'s toy setting: 3x512 ReLU generator and critic, 5 critic
updates per generator update, batch 256 per critic update. The exact
Wasserstein-1 distance between generated and held-out real samples is
computed by optimal transport every epoch (`tflip.callbacks.ExactWasserstein`).

Run:
    python examples/wgan_toy.py --penalty lp --toy eight_gaussians --iterations 2000
    python examples/wgan_toy.py --smoke      # a few iterations, small networks
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

import tflip  # noqa: E402


def mlp(inputs, outputs, width):
    return keras.Sequential(
        [keras.Input((inputs,))] + [keras.layers.Dense(width, "relu") for _ in range(3)] + [keras.layers.Dense(outputs)]
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--penalty", default="lp", help="gp, lp, alp, maxgp, maxal or clip")
    parser.add_argument("--toy", default="eight_gaussians", choices=sorted(tflip.datasets.TOY_SETS))
    parser.add_argument("--iterations", type=int, default=2000, help="generator iterations")
    parser.add_argument("--epochs", type=int, default=10, help="W1 is evaluated after each epoch")
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--smoke", action="store_true", help="tiny networks and budget (tests)")
    args = parser.parse_args(argv)
    width, iterations, epochs, samples = (32, 8, 2, 200) if args.smoke else (512, args.iterations, args.epochs, 1000)
    if iterations < epochs:
        parser.error("--iterations must be at least --epochs")

    keras.utils.set_random_seed(0)
    gan = tflip.models.WGAN(mlp(2, 2, width), mlp(2, 1, width), latent_dim=2, penalty=args.penalty, n_critic=5)
    gan.compile(*(keras.optimizers.Adam(args.learning_rate, 0.5, 0.9) for _ in range(2)))
    data = tflip.datasets.toy(args.toy, 5 * 256 * iterations, seed=0)
    monitor = tflip.callbacks.ExactWasserstein(tflip.datasets.toy(args.toy, samples, seed=1), seed=2)
    print(f"WGAN with {type(gan.penalty).__name__ if gan.penalty else 'no penalty'} on {args.toy}: "
          f"{iterations} generator iterations")
    history = gan.fit(data, batch_size=5 * 256, epochs=epochs, verbose=0 if args.smoke else 2, callbacks=[monitor])
    for (epoch, w1), critic_w in zip(monitor.values, history.history["wasserstein"]):
        print(f"  epoch {epoch + 1:3d}: exact W1 to data {w1:.4f}   critic estimate {critic_w:.4f}")
    return monitor.values


if __name__ == "__main__":
    main()
