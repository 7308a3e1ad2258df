"""Layer speed and accuracy, measured side by side in one run.

Prints ratios (never absolute targets: the machine is shared and noisy):
- inference (tf.function, training=False) of BjorckDense(512),
  LInfProjectedDense(512) vs Dense(512) at batch 1 and 256, and of
  SpectralNormConv2D vs Conv2D (64->64 channels, 16x16) at batch 1 and 64:
  served from the cached effective kernel;
- a training step (forward, backward, Adam update) of SpectralNormConv2D
  (toeplitz) vs keras.layers.SpectralNormalization(Conv2D) vs plain Conv2D;
- BjorckDense vs Dense, with the orthonormality of the training-mode kernel
  and deel-lip's SpectralDense timed in a second process
  (benchmarks/bench_bjorck.py);
- MaxMin / GroupSort(4) vs ReLU (benchmarks/bench_activations.py);
- the relative error of each layer's enforced operator norm against the exact
  value (SVD of the explicit matrix), after the same number of training steps.

Targets: inference <= 2x the plain layer at batch 1 and <= 1.2x at batch
256 (conv: 64); toeplitz step <= 1.3x the Keras wrapper; toeplitz norm error <= 1e-3
where the Keras wrapper is off by tens of percent; BjorckDense training step
<= deel-lip SpectralDense's ratio (aim 0.6x of it); MaxMin <= 2x and
GroupSort(4) <= 4x ReLU.

Run: python benchmarks/bench_layers.py [--quick]
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tflip.layers import BjorckDense, LInfProjectedDense, SpectralNormConv2D  # noqa: E402
from tflip.ops.conv import ConvGeometry, conv_matrix  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import inference_fn, print_ratios, time_interleaved, train_step_fn  # noqa: E402


def inference_speed(quick):
    """Inference ratios of the cached-kernel layers to their plain Keras layers, with verdicts."""
    units, channels, size = (128, 16, 8) if quick else (512, 64, 16)
    repeats, calls = (3, 5) if quick else (9, 50)
    cases = []
    for batch in (1, 256):
        shape = (batch, units)
        cases.append((f"Dense({units}) inference, batch {batch}", batch == 1, "Dense", {
            "Dense": inference_fn(keras.layers.Dense(units), shape),
            "BjorckDense": inference_fn(BjorckDense(units), shape),
            "LInfProjectedDense": inference_fn(LInfProjectedDense(units), shape),
        }))
    for batch in (1, 64):
        shape = (batch, size, size, channels)
        cases.append((f"Conv2D {channels}->{channels} {size}x{size} inference, batch {batch}", batch == 1, "Conv2D", {
            "Conv2D": inference_fn(keras.layers.Conv2D(channels, 3, padding="same"), shape),
            "SpectralNormConv2D": inference_fn(SpectralNormConv2D(channels, 3), shape),
        }))
    for title, single, reference, steps in cases:
        times = time_interleaved(steps, repeats, calls=calls)
        print_ratios(title, times, reference)
        target = 2.0 if single else 1.2
        worst = max(t / times[reference] for t in times.values())
        print(f"  worst {worst:.2f}x (target <= {target}x): {'OK' if worst <= target else 'MISSED'}")


def conv_speed(quick):
    batch, size, channels = (8, 16, 16) if quick else (32, 32, 32)
    x = tf.random.normal((batch, size, size, channels))
    steps = {
        "Conv2D": train_step_fn(keras.layers.Conv2D(channels, 3, padding="same"), x),
        "keras SpectralNormalization(Conv2D)": train_step_fn(
            keras.layers.SpectralNormalization(keras.layers.Conv2D(channels, 3, padding="same")), x
        ),
        "SpectralNormConv2D(toeplitz)": train_step_fn(SpectralNormConv2D(channels, 3), x),
    }
    return time_interleaved(steps, 3 if quick else 7, calls=2 if quick else 5)


def norm_errors(warmup_steps=100):
    """Relative error |sigma_true - k| / k of each normalized conv after training-mode calls."""
    rows = []
    for c_in, c_out, stride in [(3, 8, 1), (8, 8, 1), (4, 64, 2)]:
        size = 8
        x = tf.random.normal((4, size, size, c_in))
        geometry = ConvGeometry((size, size), (stride, stride), "same")
        layers = {
            "keras SN": keras.layers.SpectralNormalization(keras.layers.Conv2D(c_out, 3, stride, padding="same")),
            "reshape": SpectralNormConv2D(c_out, 3, stride, norm="reshape"),
            "toeplitz": SpectralNormConv2D(c_out, 3, stride, norm="toeplitz"),
        }
        for layer in layers.values():
            call = tf.function(lambda layer=layer: layer(x, training=True))
            for _ in range(warmup_steps):
                call()
        kernels = {
            "keras SN": layers["keras SN"].layer.kernel,  # Keras writes the normalized kernel into it
            "reshape": layers["reshape"].effective_kernel(),
            "toeplitz": layers["toeplitz"].effective_kernel(),
        }
        errors = {n: abs(np.linalg.norm(conv_matrix(k, geometry), 2) - 1.0) for n, k in kernels.items()}
        rows.append((f"{c_in}->{c_out} s{stride}", errors))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description="tflip layer benchmarks")
    parser.add_argument("--quick", action="store_true", help="small shapes, few repetitions (smoke run)")
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(0)

    inference_speed(args.quick)

    conv = conv_speed(args.quick)
    print_ratios("Conv training step", conv, "Conv2D")
    wrapper_ratio = conv["SpectralNormConv2D(toeplitz)"] / conv["keras SpectralNormalization(Conv2D)"]
    verdict = "OK" if wrapper_ratio <= 1.3 else "MISSED"
    print(f"  toeplitz / keras wrapper: {wrapper_ratio:.2f}x (target <= 1.3x): {verdict}")

    import bench_bjorck

    # BjorckDense training cost vs Dense, orthonormality trade-off, deel-lip's SpectralDense (second process).
    bench_bjorck.main(["--quick"] if args.quick else [])

    print("\nRelative error of the true operator norm (SVD of the conv matrix) against the promised 1.0:")
    print(f"  {'conv':14s} {'keras SN':>10s} {'reshape':>10s} {'toeplitz':>10s}")
    worst = 0.0
    for label, errors in norm_errors(20 if args.quick else 100):
        worst = max(worst, errors["toeplitz"])
        print(f"  {label:14s} " + " ".join(f"{errors[n]:10.2e}" for n in ("keras SN", "reshape", "toeplitz")))
    print(f"  worst toeplitz error {worst:.1e} (target <= 1e-3): {'OK' if worst <= 1e-3 else 'MISSED'}")

    import bench_activations

    bench_activations.main(["--quick"] if args.quick else [])


if __name__ == "__main__":
    main()
