"""Speed of the Lipschitz convolution families against Conv2D, measured side by side in one run.

For SpectralNormConv2D, AOLConv2D, SLLConv2D and OrthogonalConv2D at 64->64
channels, 16x16 inputs, batch 64 (3x3 kernels, "same" padding for all but
OrthogonalConv2D, which uses its default "circular" padding where it is
exactly orthogonal), prints the ratio to a plain Keras Conv2D of

- a training step (forward, backward, Adam update; `tf.function`): the
  effective kernel is recomputed from the raw weights at every step;
- inference (`tf.function`, `training=False`): served from the cached
  effective kernel, so a single-convolution layer should cost a Conv2D.

SLLConv2D applies two convolutions (V^T, then its transpose V), so a single
Conv2D is not its equivalent: its inference is also timed against its own
plain-Keras export (`tflip.export.to_plain_keras`: a built-in Conv2D, a
Conv2DTranspose and an Add holding the same kernel V), in the same
interleaved run, which isolates the cost of serving V from the cache.

Targets (issue 13): training AOL <= 1.5x, SLL <= 2.5x (two convolutions),
orthogonal <= 4x Conv2D; inference <= 1.2x Conv2D for the single-convolution
layers, and SLL <= 1.2x its plain export. Steps are interleaved
(`benchmarks/timing.py`) so that their ratios share the machine's noise.
Layers not yet in `tflip.layers` are reported as "not available yet".

Run: python benchmarks/bench_conv_layers.py [--quick]
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

import tflip.layers as tflip_layers  # noqa: E402
from tflip.export import to_plain_keras  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import inference_fn, print_ratios, time_interleaved, train_step_fn  # noqa: E402

# name -> (factory(channels), training target, inference target against Conv2D)
FAMILIES = {
    "SpectralNormConv2D": (lambda c: tflip_layers.SpectralNormConv2D(c, 3, padding="same"), None, 1.2),
    "AOLConv2D": (lambda c: tflip_layers.AOLConv2D(c, 3, padding="same"), 1.5, 1.2),
    # Two convolutions: its inference target is against its plain export (SLL_EXPORT_TARGET), not Conv2D.
    "SLLConv2D": (lambda c: tflip_layers.SLLConv2D(c, 3), 2.5, None),
    "OrthogonalConv2D": (lambda c: tflip_layers.OrthogonalConv2D(c, 3), 4.0, 1.2),
}
SLL_EXPORT = "SLLConv2D plain export"
SLL_EXPORT_TARGET = 1.2


def with_plain_export(layer, shape):
    """`layer` (built on `shape`) and its plain-Keras export: built-in layers computing the same map."""
    model = keras.Sequential([keras.Input(shape[1:]), layer])
    model(tf.random.normal(shape), training=True)  # builds the layer and computes V from its raw kernel
    return layer, to_plain_keras(model).layers[0]


def available_families():
    """The families present in `tflip.layers` at this commit, and the missing names."""
    present = {name: spec for name, spec in FAMILIES.items() if hasattr(tflip_layers, name)}
    return present, [name for name in FAMILIES if name not in present]


def verdict(ratio, target):
    if target is None:
        return "(no target)"
    return f"{'OK' if ratio <= target else 'ABOVE TARGET'} (target <= {target}x)"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small shapes and few repeats (a smoke run)")
    args = parser.parse_args(argv)
    tf.get_logger().setLevel("ERROR")  # one tf.function per layer and mode: retracing warnings are expected
    channels, size, batch = (16, 8, 8) if args.quick else (64, 16, 64)
    repeats, calls = (3, 2) if args.quick else (15, 10)
    keras.utils.set_random_seed(0)
    x = tf.random.normal((batch, size, size, channels))
    present, missing = available_families()
    for name in missing:
        print(f"{name}: not available yet")
    shape = f"{channels}->{channels} channels, {size}x{size}, batch {batch}"

    training = {"Conv2D": train_step_fn(keras.layers.Conv2D(channels, 3, padding="same"), x)}
    inference = {"Conv2D": inference_fn(keras.layers.Conv2D(channels, 3, padding="same"), x.shape)}
    for name, (factory, _, _) in present.items():
        training[name] = train_step_fn(factory(channels), x)
        if name == "SLLConv2D":
            # The layer and its export hold the same V: the ratio is the cost of serving V from the cache.
            layer, plain = with_plain_export(factory(channels), x.shape)
            inference[name] = inference_fn(layer, x.shape)
            inference[SLL_EXPORT] = inference_fn(plain, x.shape)
        else:
            inference[name] = inference_fn(factory(channels), x.shape)
    train_times = time_interleaved(training, repeats, calls)
    infer_times = time_interleaved(inference, repeats, calls)
    print_ratios(f"Training step (forward, backward, Adam), {shape}", train_times, "Conv2D")
    print_ratios(f"Inference (tf.function, training=False, cached kernel), {shape}", infer_times, "Conv2D")

    print("\nVerdicts")
    results = {}
    for name, (_, train_target, infer_target) in present.items():
        train_ratio = train_times[name] / train_times["Conv2D"]
        infer_ratio = infer_times[name] / infer_times["Conv2D"]
        results[name] = {"training_ratio": train_ratio, "inference_ratio": infer_ratio}
        print(f"  {name:20s} training {train_ratio:5.2f}x {verdict(train_ratio, train_target)}; "
              f"inference {infer_ratio:5.2f}x {verdict(infer_ratio, infer_target)}")
    if SLL_EXPORT in infer_times:
        sll, plain = infer_times["SLLConv2D"], infer_times[SLL_EXPORT]
        results["SLLConv2D"]["inference_vs_export"] = sll / plain
        print(f"  SLLConv2D inference {sll * 1e3:.2f} ms vs its plain-Keras export (Conv2D + Conv2DTranspose + Add, "
              f"same V) {plain * 1e3:.2f} ms: {sll / plain:5.2f}x {verdict(sll / plain, SLL_EXPORT_TARGET)}")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
