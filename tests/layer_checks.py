"""Checks every tflip layer must pass: save/load, graph modes, distribution, mixed precision.

Each check builds fresh models from a `make_layer` factory (a zero-argument
callable returning a new layer) and compares against the eager float32 result.
"""

import keras
import numpy as np
import tensorflow as tf


def check_save_load_roundtrip(make_layer, x, tmp_path, training_calls=2):
    """A model with the layer survives `.keras` saving with identical outputs.

    The layer is first called in training mode so that persistent state
    (power-iteration vectors) differs from its initial value and must be saved.
    """
    inputs = keras.Input(shape=x.shape[1:])
    model = keras.Model(inputs, make_layer()(inputs))
    for _ in range(training_calls):
        model(x, training=True)
    expected = model(x, training=False)
    path = str(tmp_path / "model.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    np.testing.assert_array_equal(restored(x, training=False), expected)
    for a, b in zip(model.weights, restored.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    return restored


def check_sequential_and_graph_modes(make_layer, x, atol=1e-5):
    """Sequential, functional, tf.function and XLA give the eager output."""
    layer = make_layer()
    model = keras.Sequential([keras.Input(shape=x.shape[1:]), layer])
    eager = np.asarray(model(x, training=False))
    inputs = keras.Input(shape=x.shape[1:])
    functional = keras.Model(inputs, layer(inputs))
    np.testing.assert_allclose(functional(x, training=False), eager, atol=atol)
    graph = tf.function(lambda t: model(t, training=False))
    np.testing.assert_allclose(graph(x), eager, atol=atol)
    xla = tf.function(lambda t: model(t, training=False), jit_compile=True)
    np.testing.assert_allclose(xla(x), eager, atol=atol)
    # A training step under XLA must compile too (state updates included).
    xla_train = tf.function(lambda t: model(t, training=True), jit_compile=True)
    assert np.all(np.isfinite(xla_train(x)))
    return eager


_STRATEGIES = {}


def mirrored_strategy():
    """One MirroredStrategy per test session: separate instances in one process
    can collide on collective instance keys (shape-mismatch aborts)."""
    if "mirrored" not in _STRATEGIES:
        _STRATEGIES["mirrored"] = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    return _STRATEGIES["mirrored"]


def check_mirrored_training(make_layer, x, loss_fn=None, steps=2, atol=1e-5):
    """`fit` under MirroredStrategy on two logical CPUs matches one device.

    Returns the trained models (single, mirrored) for further checks.
    """
    if loss_fn is None:
        # Per-sample loss (not a scalar) so Keras scales it by the global batch.
        def loss_fn(y_true, y_pred):
            flat = keras.ops.reshape(y_pred, (keras.ops.shape(y_pred)[0], -1))
            return keras.ops.mean(keras.ops.square(flat), axis=-1)
    y = np.zeros((x.shape[0], 1), "float32")

    def train(strategy):
        keras.utils.set_random_seed(1)
        with strategy.scope():
            model = keras.Sequential([keras.Input(shape=x.shape[1:]), make_layer()])
            model.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss_fn)
        model.fit(x, y, batch_size=x.shape[0], epochs=steps, verbose=0, shuffle=False)
        return model

    single = train(tf.distribute.OneDeviceStrategy("/cpu:0"))
    mirrored = train(mirrored_strategy())
    for a, b in zip(single.weights, mirrored.weights):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=atol, err_msg=a.path)
    return single, mirrored


def check_mixed_precision(make_layer, x, policy, rtol):
    """Under a mixed policy the layer computes in the low dtype with float32 state."""
    keras.mixed_precision.set_global_policy("float32")
    keras.utils.set_random_seed(2)
    reference = make_layer()
    expected = np.asarray(reference(x, training=True))
    keras.mixed_precision.set_global_policy(policy)
    try:
        keras.utils.set_random_seed(2)
        layer = make_layer()
        out = layer(x, training=True)
        assert out.dtype == keras.mixed_precision.global_policy().compute_dtype
        for weight in layer.weights:
            assert weight.dtype == "float32", weight.path
        scale = np.max(np.abs(expected)) + 1e-12
        np.testing.assert_allclose(
            np.asarray(tf.cast(out, tf.float32)) / scale, expected / scale, atol=rtol
        )
    finally:
        keras.mixed_precision.set_global_policy("float32")
