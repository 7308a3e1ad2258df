"""tflip's WGAN-GP step against a hand-written keras.io-style WGAN-GP `train_step`.

Same networks (Gulrajani's toy setting: 3x512 ReLU generator and critic on
2-D data), same work per step: a batch of `n_critic * critic_batch` real
samples split into `n_critic` critic batches, one critic update with the
gradient penalty (weight 10, interpolates) per critic batch, then one
generator update on a latent batch of the critic batch size; Adam(1e-4,
0.5, 0.9) for both. The hand-written model follows the keras.io "WGAN-GP
overriding Model.train_step" example (GradientTape per update,
`apply_gradients`, `tf.random` draws), with the critic batches split as
tflip splits them so that both do the same arithmetic.

Both are timed through `fit` on the same in-memory data, interleaved in a
shuffled order so that they share the machine's noise; the verdict uses the
fastest repetition of each (other processes only ever add time, so the
minimum is the most stable estimate on a shared machine; medians are printed
too). The printed ratio is tflip / keras.io (target <= 1.0).
`tflip (check_finite=False)` times the step without the non-finite check of
the real batch; as that difference is within the noise of whole steps, the
check is also timed alone on the same batch.

Run: python benchmarks/bench_wgan_vs_keras_io.py [--quick] [--steps N] [--repeats N]
"""

import argparse
import os
import random
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from tflip import datasets, penalties  # noqa: E402
from tflip.models import WGAN  # noqa: E402
from tflip.models.critic_step import check_finite_samples  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import print_ratios, time_interleaved  # noqa: E402


def time_fits(fits, repeats):
    """Seconds of each fit in every repetition, the fits run in a shuffled order each time."""
    for fit in fits.values():
        fit()  # trace and warm up
    samples = {name: [] for name in fits}
    order = list(fits)
    for _ in range(repeats):
        random.Random(len(samples[order[0]])).shuffle(order)
        for name in order:
            start = time.perf_counter()
            fits[name]()
            samples[name].append(time.perf_counter() - start)
    return samples


def mlp(inputs, outputs, width, depth=3, seed=0):
    layers = [keras.Input((inputs,))]
    layers += [
        keras.layers.Dense(width, "relu", kernel_initializer=keras.initializers.GlorotUniform(seed + i))
        for i in range(depth)
    ]
    layers.append(keras.layers.Dense(outputs, kernel_initializer=keras.initializers.GlorotUniform(seed + depth)))
    return keras.Sequential(layers)


def adam():
    return keras.optimizers.Adam(1e-4, beta_1=0.5, beta_2=0.9)


class KerasIoWGANGP(keras.Model):
    """A WGAN-GP written the way the keras.io example writes it."""

    def __init__(self, generator, critic, latent_dim, n_critic=5, gp_weight=10.0):
        super().__init__()
        self.generator = generator
        self.critic = critic
        self.latent_dim = latent_dim
        self.n_critic = n_critic
        self.gp_weight = gp_weight

    def compile(self, d_optimizer, g_optimizer):
        super().compile()
        self.d_optimizer = d_optimizer
        self.g_optimizer = g_optimizer

    def gradient_penalty(self, real, fake):
        alpha = tf.random.uniform([tf.shape(real)[0], 1])
        interpolated = real + alpha * (fake - real)
        with tf.GradientTape() as tape:
            tape.watch(interpolated)
            values = self.critic(interpolated, training=True)
        norms = tf.sqrt(tf.reduce_sum(tf.square(tape.gradient(values, interpolated)), axis=1))
        return tf.reduce_mean((norms - 1.0) ** 2)

    def train_step(self, real):
        # The same interleaved split as tflip (row i goes to critic batch i % n).
        size = tf.shape(real)[0] // self.n_critic
        for i in range(self.n_critic):
            real_batch = real[i :: self.n_critic][:size]
            latent = tf.random.normal([size, self.latent_dim])
            with tf.GradientTape() as tape:
                fake = self.generator(latent, training=True)
                real_values = self.critic(real_batch, training=True)
                fake_values = self.critic(fake, training=True)
                d_cost = tf.reduce_mean(fake_values) - tf.reduce_mean(real_values)
                d_loss = d_cost + self.gp_weight * self.gradient_penalty(real_batch, fake)
            gradients = tape.gradient(d_loss, self.critic.trainable_variables)
            self.d_optimizer.apply_gradients(zip(gradients, self.critic.trainable_variables))
        latent = tf.random.normal([size, self.latent_dim])
        with tf.GradientTape() as tape:
            g_loss = -tf.reduce_mean(self.critic(self.generator(latent, training=True), training=True))
        gradients = tape.gradient(g_loss, self.generator.trainable_variables)
        self.g_optimizer.apply_gradients(zip(gradients, self.generator.trainable_variables))
        return {"d_loss": d_loss, "g_loss": g_loss}


def models(width, n_critic):
    def tflip_gan(check_finite):
        gan = WGAN(mlp(2, 2, width), mlp(2, 1, width, seed=10), latent_dim=2,
                   penalty=penalties.GradientPenalty(10.0), n_critic=n_critic, check_finite=check_finite)
        gan.compile(adam(), adam())
        return gan

    keras_io = KerasIoWGANGP(mlp(2, 2, width), mlp(2, 1, width, seed=10), latent_dim=2, n_critic=n_critic)
    keras_io.compile(adam(), adam())
    return {"keras.io WGAN-GP": keras_io, "tflip WGAN(GP)": tflip_gan(True),
            "tflip WGAN(GP), check_finite=False": tflip_gan(False)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="width 64, few steps (smoke run)")
    parser.add_argument("--steps", type=int, default=None, help="train steps per timed fit")
    parser.add_argument("--repeats", type=int, default=None, help="timed fits per model")
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(0)
    n_critic, critic_batch = 5, 256
    width = 64 if args.quick else 512
    steps = args.steps or (3 if args.quick else 20)
    repeats = args.repeats or (2 if args.quick else 7)
    batch = n_critic * critic_batch
    data = datasets.eight_gaussians(batch * steps, seed=0)
    fits = {
        name: (lambda model=model: model.fit(data, batch_size=batch, epochs=1, verbose=0, shuffle=False))
        for name, model in models(width, n_critic).items()
    }
    samples = time_fits(fits, repeats)
    title = f"WGAN-GP train step ({width}x3 MLPs, n_critic {n_critic}, batch {batch}), via fit"
    median = {name: statistics.median(values) / steps for name, values in samples.items()}
    per_step = {name: min(values) / steps for name, values in samples.items()}
    print_ratios(title + ", median", median, "keras.io WGAN-GP")
    print_ratios(title + ", fastest repetition", per_step, "keras.io WGAN-GP")
    ratio = per_step["tflip WGAN(GP)"] / per_step["keras.io WGAN-GP"]
    print(f"  tflip / keras.io: {ratio:.2f}x (target <= 1.0x): {'OK' if ratio <= 1.0 else 'MISSED'}")

    real = tf.constant(data[:batch])
    check = tf.function(lambda: check_finite_samples(real, tf.constant(0, tf.int64), "real samples"))
    alone = time_interleaved({"check": check}, repeats=repeats, calls=100)["check"]
    print(f"  non-finite check alone (batch {batch}, in a tf.function): {alone * 1e6:.1f} us, "
          f"{100 * alone / per_step['tflip WGAN(GP)']:.3f}% of the step")
    return per_step


if __name__ == "__main__":
    main()
