"""GPU readiness check: one script, one JSON summary of everything a GPU run must confirm.

Checks (each timed and wrapped: a failure is recorded with its error message
and the others still run):

- exact norms: the explicit matrix of each constrained layer's linear map,
  built by applying the layer (inference mode) to basis vectors minus its
  bias, against numpy's SVD after a few training steps: BjorckDense's
  singular values all equal `lipschitz` (1e-4 relative), SpectralNormDense's
  and SpectralNormConv2D's largest singular value equals `lipschitz` (1e-3
  relative) after `converge_power_vector()`, LInfProjectedDense's matrix
  infinity-norm is <= `lipschitz` + 1e-6; GroupSort / MaxMin / FullSort have
  Jacobians with all singular values 1 (gradient-norm preservation). These
  run with TensorFloat-32 off (its 10-bit mantissa cannot meet 1e-4); on a
  GPU the Björck and spectral errors under TF32, TensorFlow's default, are
  reported too, without a pass/fail;
- WGAN-GP and WGAN-ALP training steps under `mixed_float16` and under
  `compile(jit_compile=True)` (and both together): losses and weights finite;
- a small WGAN under `tf.distribute.MirroredStrategy` over the visible GPUs
  (one GPU is split into two logical GPUs; without a GPU, two logical CPUs)
  against a single-device run from the same initial weights and seed;
- layer speed ratios (BjorckDense vs Dense, SpectralNormConv2D vs Conv2D;
  inference and training steps at batch 1 and a large batch), interleaved
  with `timing.time_interleaved` (TF32 at its default);
- device and version information.

Prints progress to stderr and the summary as ONE JSON line, the last line of
stdout; exits 1 if any check failed.

Run on a GPU (under 5 minutes; `--budget-s`, default 270, skips the checks
not started by then). On the device machine only $OUT comes back, and the
one-line summary can outgrow a 12,000-character output tail, so write it there:
    python benchmarks/gpu_check.py --out "$OUT/gpu_check.json"
`--out` is rewritten after every check ("complete": false until the end), so a
run killed from outside still leaves the checks that finished.
Smoke run (small shapes, CPU, under a minute; used by tests/test_gpu_check.py):
    python benchmarks/gpu_check.py --quick
"""

import argparse
import contextlib
import json
import math
import os
import platform
import subprocess
import sys
import time
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for _path in (HERE, ROOT):
    if _path not in sys.path:
        sys.path.insert(0, _path)


def log(message):
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# Devices (must be configured before TensorFlow initializes its runtime).


def configure_devices(split_gpu_mb):
    """Sets up the devices of the MirroredStrategy check; returns their description.

    Two or more GPUs: all of them. One GPU: two logical GPUs of
    `split_gpu_mb` MiB each (0: no split, one replica). No GPU: two logical
    CPUs, as tests/conftest.py does.
    """
    gpus = tf.config.list_physical_devices("GPU")
    setup = {"physical_gpus": len(gpus)}
    try:
        if not gpus:
            cpu = tf.config.list_physical_devices("CPU")[0]
            tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
            setup["mirrored_devices"] = "two logical CPUs"
        elif len(gpus) == 1 and split_gpu_mb > 0:
            config = tf.config.LogicalDeviceConfiguration(memory_limit=split_gpu_mb)
            tf.config.set_logical_device_configuration(gpus[0], [config, config])
            setup["mirrored_devices"] = f"one GPU split into two logical GPUs of {split_gpu_mb} MiB"
        else:
            setup["mirrored_devices"] = f"{len(gpus)} physical GPU(s)"
    except Exception as error:  # noqa: BLE001 - recorded; the mirrored check then uses what exists
        setup["device_setup_error"] = f"{type(error).__name__}: {error}"
    return setup


def mirrored_device_names():
    gpus = tf.config.list_logical_devices("GPU")
    devices = gpus if gpus else tf.config.list_logical_devices("CPU")
    return [device.name for device in devices]


def device_info(setup):
    import keras

    import tflip

    info = dict(setup)
    info["is_cuda_build"] = bool(tf.sysconfig.get_build_info().get("is_cuda_build", False))
    info["physical_devices"] = [f"{d.device_type}:{d.name}" for d in tf.config.list_physical_devices()]
    info["logical_devices"] = [d.name for d in tf.config.list_logical_devices()]
    gpu_names = []
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            details = tf.config.experimental.get_device_details(gpu)
            gpu_names.append(
                {"name": details.get("device_name"), "compute_capability": details.get("compute_capability")}
            )
        except Exception as error:  # noqa: BLE001
            gpu_names.append({"error": str(error)})
    info["gpus"] = gpu_names
    info["gpu_name"] = gpu_names[0].get("name") if gpu_names else None
    build = tf.sysconfig.get_build_info()
    info["cuda_build"] = {k: build.get(k) for k in ("cuda_version", "cudnn_version") if k in build}
    info["tf32_default"] = bool(tf.config.experimental.tensor_float_32_execution_enabled())
    info["versions"] = {
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "tflip": getattr(tflip, "__version__", None),
    }
    info["platform"] = platform.platform()
    try:
        info["git_commit"] = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip() or None
    except Exception:  # noqa: BLE001
        info["git_commit"] = None
    return info


@contextlib.contextmanager
def tf32(enabled):
    """TensorFloat-32 matmuls / convolutions on or off inside the block (GPU only has an effect)."""
    before = tf.config.experimental.tensor_float_32_execution_enabled()
    tf.config.experimental.enable_tensor_float_32_execution(enabled)
    try:
        yield
    finally:
        tf.config.experimental.enable_tensor_float_32_execution(before)


def on_gpu():
    return bool(tf.config.list_physical_devices("GPU"))


# ---------------------------------------------------------------------------
# Exact norms from explicit matrices.


def layer_matrix(layer, input_shape, chunk=512):
    """The matrix M (n_in x n_out) of the linear part: layer(x) - layer(0) = x M, x flattened."""
    n = int(np.prod(input_shape))
    zero = layer(tf.zeros((1, *input_shape)), training=False)
    rows = []
    for start in range(0, n, chunk):
        basis = np.eye(n, dtype="float32")[start:start + chunk].reshape((-1, *input_shape))
        out = layer(tf.constant(basis), training=False) - zero
        rows.append(np.asarray(tf.cast(out, tf.float32)).reshape(len(basis), -1))
    return np.concatenate(rows).astype("float64")


def train_layer(layer, input_shape, steps, seed):
    """`steps` Adam steps of a regression to random targets in training mode (moves the raw weights)."""
    import keras

    model = keras.Sequential([keras.Input(input_shape), layer])
    rng = np.random.default_rng(seed)
    x = tf.constant(rng.standard_normal((16, *input_shape)), tf.float32)
    target = tf.constant(rng.standard_normal((16, *model.output_shape[1:])), tf.float32)
    optimizer = keras.optimizers.Adam(1e-2)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(x, training=True) - target))
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        return loss

    for _ in range(steps):
        loss = step()
    if not np.isfinite(float(loss)):
        raise FloatingPointError(f"training loss {float(loss)}")
    return layer


def exact_norm_cases(quick):
    from tflip.layers import BjorckDense, LInfProjectedDense, SpectralNormConv2D, SpectralNormDense

    d = 32 if quick else 256
    wide = 48 if quick else 384
    size, channels = (6, 3) if quick else (16, 8)
    return {
        "BjorckDense_square": ("bjorck", lambda: BjorckDense(d, lipschitz=2.0), (d,)),
        "BjorckDense_wide": ("bjorck", lambda: BjorckDense(wide, lipschitz=1.0), (d,)),
        "BjorckDense_tall": ("bjorck", lambda: BjorckDense(d, lipschitz=0.5), (wide,)),
        "SpectralNormDense": ("spectral", lambda: SpectralNormDense(wide, lipschitz=2.0), (d,)),
        "SpectralNormConv2D_s1": (
            "spectral", lambda: SpectralNormConv2D(2 * channels, 3, lipschitz=1.0), (size, size, channels)),
        "SpectralNormConv2D_s2": (
            "spectral", lambda: SpectralNormConv2D(4 * channels, 3, strides=2, lipschitz=1.5),
            (size, size, channels)),
        "LInfProjectedDense_forward": ("linf", lambda: LInfProjectedDense(wide, lipschitz=1.5), (d,)),
        "LInfProjectedDense_constraint": (
            "linf", lambda: LInfProjectedDense(wide, lipschitz=1.5, projection="constraint"), (d,)),
    }


def measure_layer(kind, make, input_shape, steps, seed):
    import keras

    keras.utils.set_random_seed(seed)
    layer = train_layer(make(), input_shape, steps, seed)
    k = float(layer.lipschitz)
    row = {"lipschitz": k, "input_shape": list(input_shape)}
    if kind == "spectral":
        stored, converged = layer.converge_power_vector()
        row["power_norm_before_converging"] = stored
        row["power_norm_converged"] = converged
        # > 1: how far the layer exceeded `lipschitz` before converging (power-iteration lag).
        row["lag_factor"] = converged / stored
    matrix = layer_matrix(layer, input_shape)
    row["matrix_shape"] = list(matrix.shape)
    if kind == "linf":
        norm = float(np.abs(matrix).sum(axis=0).max())  # y = x M: max column L1 norm
        row.update(inf_norm=norm, excess=norm - k, ok=norm <= k + 1e-6)
        return row
    sigma = np.linalg.svd(matrix, compute_uv=False)
    if kind == "bjorck":
        error = float(np.max(np.abs(sigma / k - 1.0)))
        row.update(sigma_min=float(sigma.min()), sigma_max=float(sigma.max()), max_rel_error=error,
                   ok=error <= 1e-4)
    else:
        error = abs(float(sigma[0]) / k - 1.0)
        row.update(sigma_max=float(sigma[0]), rel_error=error, ok=error <= 1e-3)
    return row


def check_exact_norms(quick):
    steps = 5 if quick else 20
    layers, ok = {}, True
    for index, (name, (kind, make, shape)) in enumerate(exact_norm_cases(quick).items()):
        try:
            with tf32(False):
                row = measure_layer(kind, make, shape, steps, seed=index)
            if on_gpu() and kind != "linf":
                # The same layer and steps under TensorFlow's default TF32: reported, not judged.
                try:
                    with tf32(True):
                        tf32_row = measure_layer(kind, make, shape, steps, seed=index)
                    row["tf32_error"] = tf32_row.get("max_rel_error", tf32_row.get("rel_error"))
                except Exception as error:  # noqa: BLE001
                    row["tf32_error"] = f"{type(error).__name__}: {error}"[:500]
        except Exception as error:  # noqa: BLE001 - one layer's failure must not hide the others
            row = {"ok": False, "error": f"{type(error).__name__}: {error}"[:2000]}
        ok = ok and row["ok"]
        layers[name] = row
        log(f"  {name}: {'ok' if row['ok'] else 'FAILED'}")
    return {"ok": ok, "layers": layers}


def check_activation_gradients(quick):
    from tflip.layers import FullSort, GroupSort, MaxMin

    n = 16 if quick else 64
    rng = np.random.default_rng(0)
    x = tf.constant(rng.standard_normal((4, n)), tf.float32)
    rows, ok = {}, True
    for name, layer in (("GroupSort4", GroupSort(4)), ("MaxMin", MaxMin()), ("FullSort", FullSort())):
        outputs, jacobian = tf.function(_batch_jacobian)(layer, x)
        jacobian = np.asarray(jacobian, "float64")
        sigma = np.linalg.svd(jacobian, compute_uv=False)
        # A permutation: every entry 0 or 1, every singular value 1, the output a reordering of the input.
        error = float(np.max(np.abs(sigma - 1.0)))
        permutes = bool(np.allclose(np.sort(np.asarray(outputs), -1), np.sort(np.asarray(x), -1)))
        binary = bool(np.all((jacobian == 0) | (jacobian == 1)))
        row_ok = error <= 1e-6 and permutes and binary
        rows[name] = {"max_sigma_error": error, "permutes_input": permutes, "jacobian_0_1": binary, "ok": row_ok}
        ok = ok and row_ok
    return {"ok": ok, "layers": rows}


def _batch_jacobian(layer, x):
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=True)
    return y, tape.batch_jacobian(y, x)


# ---------------------------------------------------------------------------
# WGAN training steps.


def mlp(inputs, outputs, width, seed, activation="relu"):
    import keras

    from tflip.layers import MaxMin

    layers = [keras.Input((inputs,))]
    for i in range(2):
        layers.append(keras.layers.Dense(width, kernel_initializer=keras.initializers.GlorotUniform(seed + i)))
        layers.append(MaxMin() if activation == "maxmin" else keras.layers.Activation(activation))
    layers.append(keras.layers.Dense(outputs, kernel_initializer=keras.initializers.GlorotUniform(seed + 2)))
    return keras.Sequential(layers)


def make_penalty(name):
    from tflip import penalties

    if name == "gp":
        return penalties.GradientPenalty(10.0)
    return penalties.AdversarialLipschitzPenalty(weight=10.0, epsilon=(0.01, 0.1))


def all_finite(variables):
    return all(np.isfinite(np.asarray(v, dtype="float64")).all() for v in variables)


def check_wgan(penalty, policy, jit_compile, quick):
    import keras

    from tflip.datasets import eight_gaussians
    from tflip.models import WGAN

    width = 32 if quick else 256
    # Enough steps for the critic to move even if mixed_float16's loss scaling skips the first updates.
    batch, steps = (32, 3) if quick else (256, 5)
    keras.utils.set_random_seed(0)
    keras.mixed_precision.set_global_policy(policy)
    try:
        gan = WGAN(mlp(2, 2, width, 0), mlp(2, 1, width, 10, activation="maxmin"), latent_dim=2,
                   penalty=make_penalty(penalty), n_critic=1 if quick else 2)
        kwargs = {"jit_compile": True} if jit_compile else {}
        gan.compile(keras.optimizers.Adam(1e-4, 0.5, 0.9), keras.optimizers.Adam(1e-4, 0.5, 0.9), **kwargs)
        initial = [np.array(v.numpy()) for v in gan.critic.trainable_variables]
        history = gan.fit(eight_gaussians(batch * steps, seed=1), batch_size=batch, epochs=1, verbose=0,
                          shuffle=False).history
    finally:
        keras.mixed_precision.set_global_policy("float32")
    logs = {key: float(values[-1]) for key, values in history.items()}
    losses_finite = all(math.isfinite(v) for v in logs.values())
    weights_finite = all_finite(gan.generator.weights) and all_finite(gan.critic.weights)
    moved = any(not np.array_equal(a, np.asarray(b)) for a, b in zip(initial, gan.critic.trainable_variables))
    scale = getattr(gan.critic_optimizer, "dynamic_scale", None)
    # Keras silently falls back to jit_compile=False for a model it deems unsupported: report what ran.
    xla = bool(gan.jit_compile)
    return {
        "ok": losses_finite and weights_finite and moved and xla == jit_compile,
        "critic_loss_scale": None if scale is None else float(np.asarray(scale)),
        "losses_finite": losses_finite,
        "weights_finite": weights_finite,
        "critic_updated": moved,
        "compute_dtype": gan.critic.layers[0].compute_dtype,
        "loss_scaling": isinstance(gan.critic_optimizer, keras.optimizers.LossScaleOptimizer),
        "jit_compile": xla,
        "logs": logs,
    }


_MIRRORED = {}


def check_mirrored(quick):
    """A small WGAN (tflip layers in the critic) under MirroredStrategy vs one device, same start."""
    import keras

    from tflip.datasets import eight_gaussians
    from tflip.layers import BjorckDense, MaxMin, SpectralNormDense
    from tflip.models import WGAN

    devices = mirrored_device_names()
    if "mirrored" not in _MIRRORED:
        _MIRRORED["mirrored"] = tf.distribute.MirroredStrategy(devices)
    strategy = _MIRRORED["mirrored"]
    width, batch, steps = (16, 32, 2) if quick else (64, 128, 3)
    data = eight_gaussians(batch * steps, seed=2)

    def critic():
        init = keras.initializers.GlorotUniform
        return keras.Sequential([
            keras.Input((2,)),
            SpectralNormDense(width, kernel_initializer=init(20)), MaxMin(),
            BjorckDense(width, kernel_initializer=keras.initializers.Orthogonal(seed=21)), MaxMin(),
            keras.layers.Dense(1, kernel_initializer=init(22)),
        ])

    def run(scope_strategy, start=None):
        keras.utils.set_random_seed(0)
        with scope_strategy.scope():
            gan = WGAN(mlp(2, 2, width, 0), critic(), latent_dim=2, penalty=make_penalty("gp"),
                       n_critic=1 if quick else 2, seed=3)
            gan.compile(keras.optimizers.SGD(0.01), keras.optimizers.SGD(0.01))
            if start is not None:
                gan.generator.set_weights(start[0])
                gan.critic.set_weights(start[1])
        initial = (gan.generator.get_weights(), gan.critic.get_weights())
        history = gan.fit(data, batch_size=batch, epochs=1, verbose=0, shuffle=False).history
        return gan, initial, {key: float(values[-1]) for key, values in history.items()}

    with tf32(False):
        single, start, single_logs = run(tf.distribute.get_strategy())
        mirrored, _, mirrored_logs = run(strategy, start)
    def state(gan):
        # Trained weights and power vectors; not the inference-kernel caches (NaN until a first inference call).
        return [np.asarray(v) for model in (gan.generator, gan.critic) for v in model.weights
                if v.trainable or v.name == "power_vector"]

    pairs = list(zip(state(single), state(mirrored)))
    weight_difference = max(float(np.max(np.abs(a - b))) for a, b in pairs)
    log_difference = max(abs(single_logs[k] - mirrored_logs[k]) / max(abs(single_logs[k]), 1e-3)
                         for k in single_logs)
    tolerance = 1e-4
    finite = all(math.isfinite(v) for v in mirrored_logs.values()) and all(np.isfinite(b).all() for _, b in pairs)
    replicas = strategy.num_replicas_in_sync
    return {
        # One replica compares a run with itself: not a distributed check.
        "ok": bool(replicas >= 2 and finite and weight_difference <= tolerance and log_difference <= 1e-3),
        "compared_variables": len(pairs),
        "finite": bool(finite),
        "replicas": replicas,
        "devices": devices,
        "max_weight_difference": weight_difference,
        "max_relative_log_difference": log_difference,
        "weight_tolerance": tolerance,
        "logs_single": single_logs,
        "logs_mirrored": mirrored_logs,
    }


# ---------------------------------------------------------------------------
# Speed ratios.


def _pair_times(make_plain, make_tflip, input_shape, batch, repeats, calls):
    import keras
    from timing import train_step_fn

    x = tf.random.normal((batch, *input_shape))
    steps = {}
    for name, make in (("plain", make_plain), ("tflip", make_tflip)):
        model = keras.Sequential([keras.Input(input_shape), make()])
        steps[f"{name}_inference"] = tf.function(lambda model=model: model(x, training=False))
        steps[f"{name}_train"] = train_step_fn(model, x)
    from timing import time_interleaved

    times = time_interleaved(steps, repeats, calls=calls)
    return {
        "ms": {key: seconds * 1e3 for key, seconds in times.items()},
        "inference_ratio": times["tflip_inference"] / times["plain_inference"],
        "train_ratio": times["tflip_train"] / times["plain_train"],
    }


def check_speed(quick):
    import keras

    from tflip.layers import BjorckDense, SpectralNormConv2D

    units = 64 if quick else 512
    size, channels = (8, 8) if quick else (16, 64)
    dense_batches = (1, 32) if quick else (1, 256)
    conv_batches = (1, 8) if quick else (1, 64)
    repeats, calls = (3, 2) if quick else (15, 10)
    results = {}
    for batch in dense_batches:
        results[f"BjorckDense{units}_vs_Dense_batch{batch}"] = _pair_times(
            lambda: keras.layers.Dense(units), lambda: BjorckDense(units), (units,), batch, repeats, calls)
    for batch in conv_batches:
        results[f"SpectralNormConv2D{channels}_{size}x{size}_vs_Conv2D_batch{batch}"] = _pair_times(
            lambda: keras.layers.Conv2D(channels, 3, padding="same"), lambda: SpectralNormConv2D(channels, 3),
            (size, size, channels), batch, repeats, calls)
    finite = all(math.isfinite(r["inference_ratio"]) and math.isfinite(r["train_ratio"]) for r in results.values())
    return {"ok": finite, "tf32": bool(tf.config.experimental.tensor_float_32_execution_enabled()),
            "repeats": repeats, "calls": calls, "pairs": results}


# ---------------------------------------------------------------------------


def checks(quick):
    wgan = {}
    for penalty in ("gp", "alp"):
        wgan[f"wgan_{penalty}_mixed_float16"] = (check_wgan, (penalty, "mixed_float16", False, quick))
        wgan[f"wgan_{penalty}_xla"] = (check_wgan, (penalty, "float32", True, quick))
        if not quick:
            wgan[f"wgan_{penalty}_mixed_float16_xla"] = (check_wgan, (penalty, "mixed_float16", True, quick))
    return {
        "exact_norms": (check_exact_norms, (quick,)),
        "activation_gradients": (check_activation_gradients, (quick,)),
        **wgan,
        "mirrored_strategy": (check_mirrored, (quick,)),
        "speed": (check_speed, (quick,)),
    }


def run_check(name, function, args):
    import keras

    log(f"[gpu_check] {name} ...")
    start = time.perf_counter()
    try:
        entry = dict(function(*args))
        entry["ok"] = bool(entry.get("ok", False))
    except Exception as error:  # noqa: BLE001 - recorded in the summary, the other checks still run
        entry = {"ok": False, "error": f"{type(error).__name__}: {error}"[:2000],
                 "traceback": traceback.format_exc()[-4000:]}
    finally:
        keras.mixed_precision.set_global_policy("float32")
    entry["seconds"] = round(time.perf_counter() - start, 3)
    log(f"[gpu_check] {name}: {'ok' if entry['ok'] else 'FAILED'} ({entry['seconds']:.1f} s)")
    if not entry["ok"] and "error" in entry:
        log(entry["traceback"])
    return entry


def jsonable(value):
    """Plain JSON: numpy scalars to Python, non-finite floats to strings ("nan", "inf")."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else str(value)
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    return value


def write_summary(summary, path):
    """Writes the summary to `path` (indented JSON) through a temporary file, so a kill leaves a whole file."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    temporary = f"{path}.tmp"
    with open(temporary, "w") as handle:
        json.dump(jsonable(summary), handle, indent=2, default=str)
        handle.write("\n")
    os.replace(temporary, path)


def main(argv=None):
    parser = argparse.ArgumentParser(description="tflip GPU readiness check (one JSON summary)")
    parser.add_argument("--quick", action="store_true", help="small shapes, few repetitions (CPU smoke run)")
    parser.add_argument("--out", help="also write the summary (indented JSON) to this file")
    parser.add_argument("--only", help="comma-separated check names to run (default: all)")
    parser.add_argument("--split-gpu-mb", type=int, default=16384,
                        help="with exactly one GPU, split it into two logical GPUs of this many MiB for the "
                             "MirroredStrategy check (0: do not split; one replica, and that check fails)")
    parser.add_argument("--budget-s", type=float, default=None,
                        help="skip (as failed) the checks not started after this many seconds "
                             "(default: 270 without --quick, none with it)")
    parser.add_argument("--allow-cpu", action="store_true",
                        help="without --quick, do not fail when TensorFlow sees no GPU")
    args = parser.parse_args(argv)
    budget = args.budget_s if args.budget_s is not None else (None if args.quick else 270.0)

    started = time.perf_counter()
    setup = configure_devices(args.split_gpu_mb)
    import keras

    keras.config.disable_interactive_logging()
    selected = checks(args.quick)
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = sorted(set(names) - set(selected))
        if unknown:
            parser.error(f"unknown checks {unknown}; known: {sorted(selected)}")
        selected = {n: selected[n] for n in names}
    try:
        device = device_info(setup)
    except Exception as error:  # noqa: BLE001 - the checks still run
        device = dict(setup, device_info_error=f"{type(error).__name__}: {error}"[:2000])
    summary = {"quick": args.quick, "complete": False, "budget_s": budget, "device": device, "checks": {}}
    if not args.quick and not args.allow_cpu and not on_gpu():
        # A CPU-only TensorFlow (tensorflow-cpu) on the GPU machine would otherwise pass every check on the CPU.
        summary["checks"]["gpu_visible"] = {
            "ok": False, "seconds": 0.0,
            "error": "TensorFlow sees no GPU (CPU-only build or CUDA libraries not found); "
                     "pass --allow-cpu to run the full checks on the CPU"}
    if args.out:
        write_summary(summary, args.out)  # the device information survives even a crash in the first check
    # Everything but the mirrored check runs on the default device (the first logical one).
    for name, (function, function_args) in selected.items():
        elapsed = time.perf_counter() - started
        if budget is not None and elapsed > budget:
            summary["checks"][name] = {"ok": False, "seconds": 0.0,
                                       "error": f"skipped: time budget of {budget:g} s spent ({elapsed:.0f} s)"}
            log(f"[gpu_check] {name}: SKIPPED (time budget)")
            continue
        summary["checks"][name] = run_check(name, function, function_args)
        if args.out:
            try:
                write_summary(summary, args.out)
            except Exception as error:  # noqa: BLE001 - the final write below reports it
                log(f"[gpu_check] could not write {args.out}: {error}")
    summary["failed"] = [name for name, entry in summary["checks"].items() if not entry["ok"]]
    summary["ok"] = not summary["failed"]
    summary["complete"] = True
    summary["total_seconds"] = round(time.perf_counter() - started, 3)
    summary = jsonable(summary)
    if args.out:
        write_summary(summary, args.out)
    sys.stdout.flush()
    print(json.dumps(summary, default=str), flush=True)
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
