"""Penalty cost and quality, measured side by side in one run.

1. Critic-step time of each penalty against the unpenalized step, same critic
   (3x512 ReLU MLP on 2-D inputs, batch 256, Adam), steps interleaved so that
   they share the machine's noise. Targets: GP and LP <= 2.0x (a hand-written
   Keras WGAN-GP step measured 1.85x here), MaxGP <= GP + 5%, ALP with one
   power iteration <= 3.0x.
2. Quality: a WGAN (Gulrajani's toy networks: 3x512 ReLU generator and critic,
   n_critic = 5, batch 256 per critic step) trained for a fixed budget on each
   toy set with each penalty; the exact W1 between 1000 generated and 1000
   held-out real samples (Kuhn-Munkres). The budget is far below the papers'
   (100k iterations): the table compares penalties, it does not reproduce
   final numbers (that is benchmarks/reproduce_*).

Run: python benchmarks/bench_penalties.py [--quick] [--iterations N] [--skip-quality]
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from tflip import datasets, penalties  # noqa: E402
from tflip.losses import wasserstein_critic_loss  # noqa: E402
from tflip.metrics import wasserstein1_exact  # noqa: E402
from tflip.models import WGAN  # noqa: E402
from tflip.models.critic_step import CriticMetrics, critic_update  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import print_ratios, time_interleaved  # noqa: E402

PENALTIES = {
    "none": lambda: None,
    "GP": lambda: penalties.GradientPenalty(10.0),
    "LP": lambda: penalties.LipschitzPenalty(10.0),
    "MaxGP": lambda: penalties.MaxGradientPenalty(10.0),
    "MaxAL": lambda: penalties.MaxGradientAugmentedLagrangian(rho=10.0),
    "ALP (1 power iteration)": lambda: penalties.AdversarialLipschitzPenalty(100.0),
    "LP lazy (interval 4)": lambda: penalties.LipschitzPenalty(10.0, interval=4),
}
TARGETS = {"GP": 2.0, "LP": 2.0, "ALP (1 power iteration)": 3.0}


def mlp(inputs, outputs, width, depth=3):
    layers = [keras.Input((inputs,))]
    layers += [keras.layers.Dense(width, "relu") for _ in range(depth)]
    return keras.Sequential(layers + [keras.layers.Dense(outputs)])


def critic_step_fn(penalty, width, batch, calls_per_step):
    """A compiled function running `calls_per_step` critic updates with `penalty`."""
    critic = mlp(2, 1, width)
    optimizer = keras.optimizers.Adam(1e-4, beta_1=0.5, beta_2=0.9)
    optimizer.build(critic.trainable_variables)
    real = tf.constant(datasets.eight_gaussians(batch, seed=0))
    fake = tf.random.normal((batch, 2), seed=1)
    metrics = CriticMetrics()

    @tf.function
    def step():
        for _ in range(calls_per_step):
            critic_update(critic, optimizer, penalty, wasserstein_critic_loss, real, fake, metrics)
        return metrics.critic_loss.result()

    return step


def speed(quick):
    width, batch = (64, 64) if quick else (512, 256)
    # Lazy regularization is only cheaper on average: time 4 updates per call for all.
    updates = 1 if quick else 4
    steps = {name: critic_step_fn(make(), width, batch, updates) for name, make in PENALTIES.items()}
    return time_interleaved(steps, repeats=2 if quick else 9, calls=1 if quick else 10)


def quality(toy_sets, names, iterations, width, samples):
    """Exact W1 to held-out data after `iterations` generator steps, per set and penalty."""
    table = {}
    for toy in toy_sets:
        held_out = datasets.toy(toy, samples, seed=123)
        data = datasets.toy(toy, 5 * 256 * iterations, seed=0)
        for name in names:
            keras.utils.set_random_seed(0)
            gan = WGAN(mlp(2, 2, width), mlp(2, 1, width), latent_dim=2, penalty=PENALTIES[name](), n_critic=5)
            gan.compile(keras.optimizers.Adam(1e-3, 0.5, 0.9), keras.optimizers.Adam(1e-3, 0.5, 0.9))
            start = time.perf_counter()
            gan.fit(data, batch_size=5 * 256, epochs=1, verbose=0)
            seconds = time.perf_counter() - start
            table[toy, name] = (wasserstein1_exact(gan.generate(samples, seed=1), held_out), seconds)
            print(f"  {toy:22s} {name:26s} W1 {table[toy, name][0]:.4f}  ({seconds:.0f} s)", flush=True)
    return table


def main(argv=None):
    parser = argparse.ArgumentParser(description="tflip penalty benchmarks")
    parser.add_argument("--quick", action="store_true", help="small critic, tiny budget (smoke run)")
    parser.add_argument("--iterations", type=int, default=None, help="generator iterations per quality run")
    parser.add_argument("--skip-quality", action="store_true", help="only the timing table")
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(0)

    times = speed(args.quick)
    print_ratios("Critic step (4 updates per call; 1 with --quick) vs the unpenalized step", times, "none")
    for name, target in TARGETS.items():
        ratio = times[name] / times["none"]
        print(f"  {name}: {ratio:.2f}x (target <= {target}x): {'OK' if ratio <= target else 'MISSED'}")
    margin = times["MaxGP"] / times["GP"]
    print(f"  MaxGP / GP: {margin:.3f} (target <= 1.05): {'OK' if margin <= 1.05 else 'MISSED'}")

    if args.skip_quality:
        return times, None
    if args.quick:
        toy_sets, names, iterations, width, samples = ["eight_gaussians"], ["LP"], args.iterations or 2, 16, 100
    else:
        toy_sets, names = list(datasets.TOY_SETS), [n for n in PENALTIES if n != "LP lazy (interval 4)"]
        iterations, width, samples = args.iterations or 300, 512, 1000
    print(f"\nExact W1 ({samples} vs {samples} samples) after {iterations} generator iterations "
          f"(n_critic 5, batch 256, Adam 1e-3 (0.5, 0.9), width {width}):")
    table = quality(toy_sets, names, iterations, width, samples)
    return times, table


if __name__ == "__main__":
    main()
