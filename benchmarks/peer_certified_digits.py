"""Peer side of bench_certified_digits: deel-lip 1.5's own layers, trained on the same digits split and losses.

Run with the peer interpreter (TF 2.15 / Keras 2 + deel-lip 1.5), not tflip's:

    source /work/shared/tools/peer_env.sh
    $PEER_PY benchmarks/peer_certified_digits.py DATA.npz CONFIG.json OUT.json

DATA.npz holds the split written by bench_certified_digits.py (x_train,
y_train, x_test, y_test); CONFIG.json the shared training settings. For each
loss it trains the network of the same size as tflip's (deel-lip
SpectralConv2D / SpectralDense, GroupSort2, ScaledL2NormPooling2D), exports
it with deel-lip's `vanilla_export` and writes, for the test set, the logits,
the last layer's kernel and numerically certified Lipschitz constants of the
exported network (product of the exact operator norms of its layers: SVD of
each convolution's explicit matrix on its input grid, of each dense kernel;
GroupSort2, L2-norm pooling and Flatten are 1-Lipschitz). The certificates
themselves are computed by bench_certified_digits.py with the same code for
both libraries. Nothing of tflip is imported here.
"""

import json
import math
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from deel.lip.activations import GroupSort2  # noqa: E402
from deel.lip.layers import ScaledL2NormPooling2D, SpectralConv2D, SpectralDense  # noqa: E402
from deel.lip.losses import MulticlassHKR  # noqa: E402
from deel.lip.model import Sequential  # noqa: E402
from tensorflow import keras  # noqa: E402

# deel-lip 1.5's MulticlassHKR (deel/lip/losses.py `_kr`, lines 33-36) divides by
# `batch_size - num_elements_per_class + epsilon` with epsilon = 1e-7, so that a class filling the whole batch
# gives 0 / 1e-7 = 0. Inside a tf.function, grappler's constant folding pushes the constant down,
# `(B - n) + 1e-7 -> B - (n - 1e-7)`, and in float32 `3 - 1e-7 == 3`: the denominator is exactly 0, the term
# 0 / 0 = NaN, and one such batch turns every weight into NaN. It happens with the last partial batch of an epoch
# (1347 = 21 * 64 + 3 images) when its 3 images share a class: epoch 10 at the seed-0 shuffling, whatever the
# learning rate. Turning that one grappler pass off keeps deel-lip's loss exactly as written (same formula as
# tflip's, which divides with divide_no_nan); the pass only pre-computes constant subgraphs, so the maths of both
# losses and layers is unchanged.
tf.config.optimizer.set_experimental_options({"constant_folding": False})


def build(config):
    """The benchmark's architecture with deel-lip layers: conv widths, 2x2 L2-norm pooling, dense head."""
    layers = [keras.layers.Input(config["input_shape"])]
    for stage, filters in enumerate(config["stages"]):
        for _ in range(config["convs_per_stage"]):
            layers += [SpectralConv2D(filters, 3, padding="same"), GroupSort2()]
        layers.append(ScaledL2NormPooling2D(pool_size=(2, 2)))
    layers += [keras.layers.Flatten(), SpectralDense(config["dense"]), GroupSort2(), SpectralDense(10)]
    return Sequential(layers, k_coef_lip=1.0)


def offset_cross_entropy(offset, temperature):
    """CE(softmax(tau (f - u e_y)), y) / tau on one-hot labels (the same loss as tflip's OffsetCrossEntropy)."""
    def loss(y_true, y_pred):
        shifted = temperature * (y_pred - offset * y_true)
        return tf.nn.softmax_cross_entropy_with_logits(y_true, shifted) / temperature
    return loss


def make_loss(spec):
    """deel-lip's MulticlassHKR, or the offset cross-entropy, with the settings of tflip's run.

    deel-lip 1.5's MulticlassHKR with one-hot labels is term for term tflip's `MulticlassHKR`: `-KR + alpha * hinge`,
    the KR estimate averaged over classes with class weights `1/n_k` and `1/(B - n_k)`, the hinge
    `relu(m/2 - sign * f)` with the true class weighted by `C - 1`, averaged over classes, and the batch mean
    (reduction AUTO). So the same `alpha` and `min_margin = margin` are the same loss.
    """
    if spec["kind"] == "hkr":
        return MulticlassHKR(alpha=spec["alpha"], min_margin=spec["margin"])
    return offset_cross_entropy(spec["offset"], spec["temperature"])


def conv_norm(layer, input_shape):
    """Exact L2 operator norm of a plain Conv2D (bias excluded) on its input grid: SVD of the explicit matrix."""
    size = int(np.prod(input_shape))
    basis = np.eye(size, dtype="float32").reshape((size,) + tuple(input_shape))
    kernel = layer.kernel
    outputs = tf.nn.conv2d(basis, kernel, strides=layer.strides, padding=layer.padding.upper()).numpy()
    return matrix_norm(outputs.reshape(size, -1))


def matrix_norm(matrix):
    """Largest singular value in float64: the square root of the top eigenvalue of the smaller Gram matrix.

    (numpy's SVD (gesdd) failed to converge on one exported 1024 x 1024 conv matrix; the Gram matrix's
    symmetric eigenvalue problem is robust, and a relative 1e-12 margin covers its rounding.)
    """
    matrix = np.asarray(matrix, np.float64)
    if not np.all(np.isfinite(matrix)):
        raise ValueError("the exported network has non-finite weights")
    gram = matrix.T @ matrix if matrix.shape[0] >= matrix.shape[1] else matrix @ matrix.T
    return float(np.sqrt(max(np.linalg.eigvalsh(gram)[-1], 0.0)) * (1 + 1e-12))


def exported_bounds(vanilla):
    """Per-layer exact norms of the exported network, the full product and the product without the last layer."""
    norms = []
    for layer in vanilla.layers:
        if isinstance(layer, keras.layers.Conv2D):
            norms.append(conv_norm(layer, layer.input_shape[1:]))
        elif isinstance(layer, keras.layers.Dense):
            norms.append(matrix_norm(layer.kernel.numpy()))
        elif type(layer).__name__ in ("GroupSort2", "ScaledL2NormPooling2D", "Flatten", "InputLayer"):
            continue
        else:
            raise ValueError(f"no Lipschitz constant for exported layer {layer.name} ({type(layer).__name__})")
    return norms, math.prod(norms), math.prod(norms[:-1])


def train_and_export(config, spec, seed, data, y_train):
    """Trains deel-lip's network on one loss from `seed`; returns the result for the certificates (or a failure)."""
    # A run whose weights still end non-finite is retried once at a third of the learning rate, and the result
    # records the rate used. (The HKR NaN of earlier runs was the constant-folding 0 / 0 above, not the rate: it
    # came back at a third of it.)
    for learning_rate in (config["learning_rate"], config["learning_rate"] / 3):
        tf.keras.utils.set_random_seed(seed)
        model = build(config)
        steps = config["epochs"] * -(-len(y_train) // config["batch"])
        schedule = keras.optimizers.schedules.CosineDecay(learning_rate, steps, alpha=0.05)
        model.compile(keras.optimizers.Adam(schedule), loss=make_loss(spec))
        start = time.perf_counter()
        model.fit(data["x_train"], y_train, batch_size=config["batch"], epochs=config["epochs"], shuffle=True,
                  verbose=0)
        seconds = time.perf_counter() - start
        if all(np.all(np.isfinite(w)) for w in model.get_weights()):
            break
        print(f"deel-lip {spec['name']}: non-finite weights at learning rate {learning_rate:g}", flush=True)
    vanilla = model.vanilla_export()
    logits = vanilla.predict(data["x_test"], verbose=0)
    constrained = model.predict(data["x_test"], verbose=0)
    try:
        norms, lipschitz, backbone = exported_bounds(vanilla)
    except (ValueError, np.linalg.LinAlgError) as error:
        return {"loss": spec["name"], "train_seconds": seconds, "failed": str(error),
                "finite_logits": bool(np.all(np.isfinite(logits)))}
    return {
        "loss": spec["name"],
        "train_seconds": seconds,
        "learning_rate": learning_rate,
        "logits": logits.tolist(),
        "export_max_abs_difference": float(np.max(np.abs(logits - constrained))),
        "last_kernel": vanilla.layers[-1].kernel.numpy().tolist(),
        "layer_norms": norms,
        "lipschitz_numeric": lipschitz,
        "backbone_lipschitz_numeric": backbone,
        "parameters": int(model.count_params()),
    }


def main(argv):
    """Trains every (seed, loss) of CONFIG.json and writes OUT.json; `argv` is DATA.npz CONFIG.json OUT.json.

    CONFIG's `seeds` lists one base seed per seed index (default `[seed]`, then `[0]`); the run of loss number `j`
    at base seed `b` is seeded with `b + j`, and its result carries `seed`, the seed index.
    """
    data_path, config_path, out_path = argv
    data = np.load(data_path)
    with open(config_path) as handle:
        config = json.load(handle)
    y_train = np.eye(10, dtype="float32")[data["y_train"]]
    results = []
    for seed_index, base_seed in enumerate(config.get("seeds", [config.get("seed", 0)])):
        for index, spec in enumerate(config["losses"]):
            result = train_and_export(config, spec, base_seed + index, data, y_train)
            result["seed"] = seed_index
            results.append(result)
            outcome = result.get("failed", f"exported L = {result.get('lipschitz_numeric', 0.0):.4f}")
            print(f"deel-lip {spec['name']} [seed {seed_index}]: {result['train_seconds']:.0f} s, {outcome}",
                  flush=True)
    with open(out_path, "w") as handle:
        json.dump({"tensorflow": tf.__version__, "deel_lip": _deel_version(), "results": results}, handle)


def _deel_version():
    import deel.lip

    return getattr(deel.lip, "__version__", "unknown")


if __name__ == "__main__":
    main(sys.argv[1:])
