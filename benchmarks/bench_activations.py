"""Speed of the sorting activations against ReLU, forward + backward, in one run.

Times `y = f(x)` and `dL/dx` for a given upstream gradient on a
(64, 32, 32, 128) float32 tensor, as a `tf.function` graph and compiled with
XLA (`jit_compile=True`). The activations are measured in turn within every
repetition and the median is kept, so that a noisy shared machine slows them
all alike; results are printed as milliseconds and ratios to ReLU.

Targets: MaxMin <= 2x and GroupSort(4) <= 4x ReLU as a graph, MaxMin <= 2x
ReLU under XLA.

Run: python benchmarks/bench_activations.py [--quick] [--repeats N]
"""

import argparse
import ctypes
import os
import sys

import keras
import tensorflow as tf

from tflip.layers import FullSort, GroupSort, MaxMin

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import time_interleaved  # noqa: E402

FULL_SHAPE = (64, 32, 32, 128)
QUICK_SHAPE = (4, 8, 8, 16)
MODES = ("graph", "xla")
# (activation, mode): target of its time / ReLU time.
TARGETS = {("MaxMin", "graph"): 2.0, ("GroupSort(4)", "graph"): 4.0, ("MaxMin", "xla"): 2.0}


def activations():
    return {
        "ReLU": keras.layers.ReLU(),
        "MaxMin": MaxMin(),
        "GroupSort(2)": GroupSort(2),
        "GroupSort(4)": GroupSort(4),
        "FullSort": FullSort(),
    }


def forward_backward_fn(layer, jit_compile):
    """A compiled `(layer(x), gradient of sum(upstream * layer(x)) w.r.t. x)`."""

    @tf.function(jit_compile=jit_compile)
    def step(x, upstream):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
        return y, tape.gradient(y, x, output_gradients=upstream)

    return step


def keep_freed_memory_in_process():
    """Stops glibc from returning large freed blocks to the OS.

    TensorFlow allocates each 32 MB activation with malloc, which by default
    maps fresh pages and unmaps them on free: every step then page-faults and
    zeroes hundreds of MB, a cost unrelated to the kernels that also dominates
    the noise. Returns whether the setting was applied (glibc only).
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(libc.mallopt(m_mmap_threshold, 1 << 30)) and bool(
        libc.mallopt(m_trim_threshold, 1 << 30)
    )


def measure(shape, repeats):
    """Returns `{activation: {mode: median seconds}}`."""
    x = tf.random.normal(shape, seed=1)
    upstream = tf.random.normal(shape, seed=2)
    layers = activations()
    steps = {
        (name, mode): forward_backward_fn(layer, jit_compile=mode == "xla")
        for name, layer in layers.items()
        for mode in MODES
    }
    seconds = time_interleaved(steps, repeats, args=(x, upstream))
    return {name: {mode: seconds[name, mode] for mode in MODES} for name in layers}


def print_table(results):
    relu = results["ReLU"]
    header = "".join(f"{mode + ' ms':>12s}{'/ ReLU':>9s}" for mode in MODES)
    print(f"{'activation':14s}{header}")
    for name, times in results.items():
        row = "".join(f"{times[m] * 1e3:12.1f}{times[m] / relu[m]:8.2f}x" for m in MODES)
        print(f"{name:14s}{row}")


def targets_met(results):
    """`{(activation, mode): (its time / ReLU time, target, met)}`."""
    report = {}
    for (name, mode), target in TARGETS.items():
        ratio = results[name][mode] / results["ReLU"][mode]
        report[name, mode] = (ratio, target, ratio <= target)
    return report


def main(argv=None):
    parser = argparse.ArgumentParser(description="Sorting activations vs ReLU, forward + backward")
    parser.add_argument(
        "--quick", action="store_true", help="small tensor, few repetitions (smoke run)"
    )
    parser.add_argument("--repeats", type=int, default=None, help="repetitions (median is kept)")
    parser.add_argument(
        "--default-malloc",
        action="store_true",
        help="keep glibc's default of unmapping freed blocks (timings then include page faults)",
    )
    args = parser.parse_args(argv)
    shape = QUICK_SHAPE if args.quick else FULL_SHAPE
    repeats = args.repeats or (3 if args.quick else 11)
    kept = False if args.default_malloc else keep_freed_memory_in_process()

    results = measure(shape, repeats)
    print(
        f"\nActivations, forward + backward on {shape} float32, median of {repeats} "
        f"interleaved repetitions{'' if kept else ' (page faults included)'}:"
    )
    print_table(results)
    for (name, mode), (ratio, target, met) in targets_met(results).items():
        verdict = "OK" if met else "MISSED"
        print(f"  {name} / ReLU ({mode}): {ratio:.2f}x (target <= {target:g}x): {verdict}")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
