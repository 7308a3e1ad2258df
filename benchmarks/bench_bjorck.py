"""BjorckDense training cost vs orthonormality: old Björck path, Polar Express schedules, deel-lip.

Prints, in one run:
- the training-step time (forward, backward, Adam) of BjorckDense(512) at
  batch 256 relative to Dense(512), after warm-up, timed side by side
  (`timing.time_interleaved`) for the old training path (5 Björck steps +
  Gram bound) and several `training_method="polar_express"` settings;
- for each setting, the training-mode orthonormality error max_i |sigma_i - 1|
  of its kernel map on snapshots of a realistic run (Adam lr 1e-3 on a
  regression task, from the orthogonal and from the glorot initializer),
  worst over the snapshots;
- deel-lip 1.5's SpectralDense ratio to Dense, timed in a second process by
  the peer interpreter (`$PEER_PY`, set by `source
  /work/shared/tools/peer_env.sh`; default /tmp/tflip_peer_venv/bin/python),
  and the verdict against the bar (<= deel-lip's ratio) and the aim
  (<= 0.6x deel-lip's ratio).

Run: python benchmarks/bench_bjorck.py [--quick] [--no-peer]
"""

import argparse
import json
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tflip.layers import BjorckDense  # noqa: E402
from tflip.ops.bjorck import bjorck_orthonormalize, polar_express_orthonormalize  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import time_interleaved, train_step_fn  # noqa: E402

PEER_SCRIPT = "/work/shared/tools/peer_bench_dense.py"
DEFAULT_PEER_PY = "/tmp/tflip_peer_venv/bin/python"

# name -> (BjorckDense kwargs, kernel map used in training calls)
SETTINGS = {
    "old: bjorck 5 steps + Gram bound": (
        {"training_method": "bjorck", "iterations": 5},
        lambda w: bjorck_orthonormalize(w, 5),
    ),
}
for _steps, _lower in [(2, 0.5), (3, 0.35), (4, 0.3), (5, 0.1), (7, 0.01)]:
    SETTINGS[f"polar_express {_steps} steps, lower {_lower:g}"] = (
        {"training_steps": _steps, "training_lower": _lower},
        lambda w, s=_steps, low=_lower: polar_express_orthonormalize(w, s, low),
    )
DEFAULT_SETTING = "polar_express 3 steps, lower 0.35"
# The runs that produce the snapshots: the default layer from the orthogonal init; from the glorot
# init (sigma_max / sigma_min ~ 2000 for a square 512 kernel, ~15 after 100 steps) a wide schedule.
RUNS = {"orthogonal": {}, "glorot_uniform": {"training_steps": 7, "training_lower": 0.01}}


def step_ratios(units, batch, warmup, repeats, calls):
    """Median training-step time of every setting divided by Dense's, interleaved."""
    x = tf.random.normal((batch, units))
    y = tf.random.normal((batch, units))
    steps = {"Dense": train_step_fn(keras.layers.Dense(units), x, y)}
    for name, (kwargs, _) in SETTINGS.items():
        steps[name] = train_step_fn(BjorckDense(units, **kwargs), x, y)
    for step in steps.values():
        for _ in range(warmup):
            step()
    times = time_interleaved(steps, repeats, calls=calls)
    return {name: seconds / times["Dense"] for name, seconds in times.items() if name != "Dense"}


def snapshots(units, batch, steps, every, initializer):
    """Raw kernels along an Adam (lr 1e-3) run (layer settings `RUNS[initializer]`) on y = tanh(x T)."""
    rng = np.random.default_rng(0)
    teacher = tf.constant((rng.normal(size=(units, units)) / np.sqrt(units)).astype("float32"))
    layer = BjorckDense(units, kernel_initializer=initializer, **RUNS[initializer])
    model = keras.Sequential([keras.Input((units,)), layer])
    optimizer = keras.optimizers.Adam(1e-3)

    @tf.function
    def step():
        x = tf.random.normal((batch, units))
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(x, training=True) - tf.tanh(x @ teacher)))
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))

    kernels = []
    for i in range(steps + 1):
        if i % every == 0:
            kernels.append(tf.identity(layer.kernel))
        if i < steps:
            step()
    return kernels


def orthonormality_errors(kernels):
    """Training-mode max |sigma - 1| of every setting on each snapshot."""
    errors = {}
    for name, (_, kernel_map) in SETTINGS.items():
        compiled = tf.function(kernel_map)
        errors[name] = [
            float(np.max(np.abs(np.linalg.svd(compiled(k).numpy().astype(np.float64), compute_uv=False) - 1.0)))
            for k in kernels
        ]
    return errors


def peer_result():
    """deel-lip's SpectralDense ratio (and orthonormality) from the peer interpreter, or None."""
    python = os.environ.get("PEER_PY") or DEFAULT_PEER_PY
    if not (os.path.exists(python) and os.path.exists(PEER_SCRIPT)):
        print(f"\ndeel-lip peer NOT timed: no peer interpreter at {python} (source /work/shared/tools/peer_env.sh)")
        return None
    run = subprocess.run([python, PEER_SCRIPT], capture_output=True, text=True, timeout=1800,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    lines = [line for line in run.stdout.splitlines() if line.startswith("{")]
    if run.returncode != 0 or not lines:
        print(f"\ndeel-lip peer NOT timed: {python} {PEER_SCRIPT} failed:\n{run.stderr[-2000:]}")
        return None
    return json.loads(lines[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description="BjorckDense training cost vs orthonormality")
    parser.add_argument("--quick", action="store_true", help="small shapes, few steps (smoke run); no peer")
    parser.add_argument("--no-peer", action="store_true", help="do not time deel-lip")
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(0)
    if args.quick:
        units, batch, warmup, repeats, calls, run_steps, every = 64, 32, 3, 3, 2, 40, 20
    else:
        units, batch, warmup, repeats, calls, run_steps, every = 512, 256, 50, 7, 5, 300, 50

    peer = None if args.quick or args.no_peer else peer_result()
    ratios = step_ratios(units, batch, warmup, repeats, calls)
    errors = {init: orthonormality_errors(snapshots(units, batch, run_steps, every, init)) for init in RUNS}

    print(f"\nBjorckDense({units}) training step vs Dense({units}), batch {batch}, Adam, after {warmup} warm-up steps;")
    print(f"training-mode max|sigma - 1| on snapshots every {every} of {run_steps} Adam steps (lr 1e-3):")
    print("worst over a run from the orthogonal init (default layer); over a run from the glorot init (7 steps,")
    print(f"lower 0.01) at step 0 and worst from step {every} on")
    print(f"  {'setting':38s} {'x Dense':>8s} {'orthogonal':>11s} {'glorot@0':>9s} {'glorot>=' + str(every):>11s}")
    for name, ratio in ratios.items():
        glorot = errors["glorot_uniform"][name]
        print(f"  {name:38s} {ratio:7.2f}x {max(errors['orthogonal'][name]):11.1e} {glorot[0]:9.1e} "
              f"{max(glorot[1:]):11.1e}")
    if peer is None:
        if args.quick:
            print("deel-lip peer not timed in --quick mode.")
        return {"ratios": ratios, "errors": errors, "peer": None}
    bar = peer["peer_spectraldense_train_ratio"]
    print(f"  {'deel-lip 1.5 SpectralDense (peer process)':38s} {bar:7.2f}x "
          f"{peer['peer_orthonormality_error']:11.1e}   (its inference kernel at init)")
    ours = ratios[DEFAULT_SETTING]
    print(f"\nDefault ({DEFAULT_SETTING}): {ours:.2f}x Dense = {ours / bar:.2f}x deel-lip's {bar:.2f}x; "
          f"old path {ratios['old: bjorck 5 steps + Gram bound']:.2f}x")
    print(f"  bar (<= deel-lip's ratio): {'OK' if ours <= bar else 'MISSED'}; "
          f"aim (<= 0.6x deel-lip's = {0.6 * bar:.2f}x): {'OK' if ours <= 0.6 * bar else 'MISSED'}")
    return {"ratios": ratios, "errors": errors, "peer": peer}


if __name__ == "__main__":
    main(sys.argv[1:])
