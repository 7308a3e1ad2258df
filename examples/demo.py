"""tflip demo: exact conv norms, and a 1-Lipschitz critic that recovers a known W1.

1. Normalizes the same random convolutions with Keras' SpectralNormalization
   (reshaped kernel), tflip's SpectralNormConv2D(norm="reshape") and
   tflip's SpectralNormConv2D(norm="toeplitz"), then prints the true operator
   norm of each, from the SVD of the explicit convolution matrix (target 1).
2. Trains a BjorckDense + GroupSort critic to estimate the Wasserstein-1
   distance between a point mass at 0 and the uniform distribution on
   {-1, +1} (Anil et al. 2019, sec. 7.1; exact W1 = 1).

Run: python examples/demo.py [--steps N]
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tflip.layers import BjorckDense, GroupSort, SpectralNormConv2D  # noqa: E402
from tflip.lipschitz import lipschitz_upper_bound  # noqa: E402
from tflip.ops.conv import ConvGeometry, conv_matrix  # noqa: E402


def conv_norm_table(size=8, warmup_steps=50):
    print(f"True operator norm of normalized 3x3 convolutions on {size}x{size} inputs (target 1.0):")
    print(f"{'c_in -> c_out, stride':>24} {'keras SN':>10} {'reshape':>10} {'toeplitz':>10}")
    for c_in, c_out, stride in [(3, 8, 1), (8, 8, 1), (4, 64, 2)]:
        x = tf.random.normal((4, size, size, c_in))
        geometry = ConvGeometry((size, size), (stride, stride), "same")
        keras_sn = keras.layers.SpectralNormalization(keras.layers.Conv2D(c_out, 3, stride, padding="same"))
        ours = {n: SpectralNormConv2D(c_out, 3, stride, norm=n, power_iterations=10) for n in ("reshape", "toeplitz")}
        for _ in range(warmup_steps):
            keras_sn(x, training=True)
            for layer in ours.values():
                layer(x, training=True)
        keras_kernel = keras_sn.layer.kernel  # Keras assigns the normalized kernel here in training.
        norms = [np.linalg.norm(conv_matrix(keras_kernel, geometry), 2)]
        norms += [np.linalg.norm(conv_matrix(layer.effective_kernel(), geometry), 2) for layer in ours.values()]
        print(f"{f'{c_in} -> {c_out}, {stride}':>24} " + " ".join(f"{n:10.4f}" for n in norms))


def wasserstein_demo(steps):
    print("\nW1 between a point mass at 0 and uniform{-1, +1} (exact 1.0), BjorckDense + GroupSort critic:")
    critic = keras.Sequential(
        [keras.Input((1,)), BjorckDense(32), GroupSort(2), BjorckDense(32), GroupSort(2), BjorckDense(1)]
    )
    optimizer = keras.optimizers.Adam(0.01)

    @tf.function
    def step(p, q):
        with tf.GradientTape() as tape:
            estimate = tf.reduce_mean(critic(q, training=True)) - tf.reduce_mean(critic(p, training=True))
            loss = -estimate
        optimizer.apply_gradients(zip(tape.gradient(loss, critic.trainable_variables), critic.trainable_variables))
        return estimate

    rng = np.random.default_rng(0)
    for i in range(steps):
        p = np.zeros((256, 1), "float32")
        q = rng.choice([-1.0, 1.0], size=(256, 1)).astype("float32")
        estimate = float(step(p, q))
        if (i + 1) % max(steps // 5, 1) == 0:
            print(f"  step {i + 1:4d}: W1 estimate {estimate:.4f}")
    q = np.array([[-1.0], [1.0]], "float32")
    final = float(np.mean(critic(q)) - critic(np.zeros((1, 1), "float32"))[0, 0])
    print(f"  final estimate at inference: {final:.4f} (exact 1.0); "
          f"certified Lipschitz bound of the critic: {lipschitz_upper_bound(critic):.5f}")
    return final


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="critic training steps")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error("--steps must be >= 1")
    keras.utils.set_random_seed(0)
    conv_norm_table()
    wasserstein_demo(args.steps)


if __name__ == "__main__":
    main()
