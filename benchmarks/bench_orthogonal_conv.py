"""OrthogonalConv2D (BCOP) against Conv2D, timed side by side in one run.

At 64->64 channels, 16x16 images, batch 64, kernel 3:
- a training step (forward, backward, Adam update; the BCOP kernel is
  recomputed and differentiated every step) of OrthogonalConv2D with
  circular and with same padding vs `keras.layers.Conv2D(padding="same")`;
- inference (tf.function, training=False) from the cached kernel vs Conv2D;
- the orthonormality of the training-mode map: max |sigma - 1| of the
  circular spectrum of the training-mode kernel (inference-mode kernel: Björck
  to convergence).

Targets: training step <= 4x Conv2D, inference <= 1.2x Conv2D.

Run: python benchmarks/bench_orthogonal_conv.py [--quick] [--json PATH]
"""

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from tflip.layers import OrthogonalConv2D  # noqa: E402
from tflip.ops.conv import circular_conv_singular_values  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import inference_fn, print_ratios, time_interleaved, train_step_fn  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small shapes, few repetitions (smoke run)")
    parser.add_argument("--json", help="write the ratios to this file")
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(0)
    batch, size, channels = (8, 8, 16) if args.quick else (64, 16, 64)
    repeats, calls = (3, 2) if args.quick else (9, 5)
    x = tf.random.normal((batch, size, size, channels))

    training = time_interleaved({
        "Conv2D": train_step_fn(keras.layers.Conv2D(channels, 3, padding="same"), x),
        "OrthogonalConv2D circular": train_step_fn(OrthogonalConv2D(channels, 3), x),
        "OrthogonalConv2D same": train_step_fn(OrthogonalConv2D(channels, 3, padding="same"), x),
    }, repeats, calls=calls)
    print_ratios(f"Training step {channels}->{channels}, {size}x{size}, batch {batch}", training, "Conv2D")

    inference = time_interleaved({
        "Conv2D": inference_fn(keras.layers.Conv2D(channels, 3, padding="same"), x.shape),
        "OrthogonalConv2D circular": inference_fn(OrthogonalConv2D(channels, 3), x.shape),
        "OrthogonalConv2D same": inference_fn(OrthogonalConv2D(channels, 3, padding="same"), x.shape),
    }, repeats, calls=calls * 4)
    print_ratios(f"Inference {channels}->{channels}, {size}x{size}, batch {batch}", inference, "Conv2D")

    layer = OrthogonalConv2D(channels, 3)
    layer.build(x.shape)
    errors = {
        mode: float(tf.reduce_max(tf.abs(
            circular_conv_singular_values(layer.effective_kernel(training=mode == "training"), (size, size)) - 1.0
        )))
        for mode in ("training", "inference")
    }
    print(f"\nmax |sigma - 1| of the circular map at init: training mode {errors['training']:.1e}, "
          f"inference mode {errors['inference']:.1e}")

    ratios = {
        "training_step": {k: v / training["Conv2D"] for k, v in training.items()},
        "inference": {k: v / inference["Conv2D"] for k, v in inference.items()},
        "orthonormality_error": errors,
        "device": tf.config.list_logical_devices()[-1].device_type,
        "shape": [batch, size, size, channels],
    }
    worst_train = max(ratios["training_step"].values())
    worst_inference = max(ratios["inference"].values())
    print(f"worst training ratio {worst_train:.2f}x (target <= 4x): {'OK' if worst_train <= 4 else 'MISSED'}")
    print(f"worst inference ratio {worst_inference:.2f}x (target <= 1.2x): "
          f"{'OK' if worst_inference <= 1.2 else 'MISSED'}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(ratios, f, indent=2)
    return ratios


if __name__ == "__main__":
    main()
