"""The cached inference kernel is never stale, whatever changes the raw weights.

Each reference output is computed with numpy from the layer's raw weights at
the time of the call: the polar factor by SVD for Björck, the L1-ball
projection by sorting for L-infinity, and the stored power vector's norm
through an explicit numpy convolution for spectral normalization, the AOL
scaling from an explicit-shift autocorrelation and the SLL residual in the
paper's form (`tests/aol_sll_reference.py`).
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.aol_sll_reference import aol_kernel_np, sll_np
from tests.layer_checks import mirrored_strategy
from tests.layers.test_orthogonal_conv import orthogonal_conv_reference
from tflip.layers import (
    AOLConv2D,
    AOLDense,
    BjorckDense,
    LInfProjectedDense,
    OrthogonalConv2D,
    SLLConv2D,
    SLLDense,
    SpectralNormConv1D,
    SpectralNormConv2D,
    SpectralNormConv2DTranspose,
    SpectralNormDense,
)
from tflip.layers.kernel_cache import _identical
from tflip.ops.sll import sll_conv_residual, sll_dense_residual


def polar_np(kernel):
    u, _, vt = np.linalg.svd(np.asarray(kernel, np.float64), full_matrices=False)
    return u @ vt


def project_l1_ball_np(v, radius):
    """Euclidean projection of a vector onto the L1 ball (sort-based, Duchi et al. 2008)."""
    if np.abs(v).sum() <= radius:
        return v
    mu = np.sort(np.abs(v))[::-1]
    cumulative = np.cumsum(mu)
    rho = np.nonzero(mu * np.arange(1, len(v) + 1) > cumulative - radius)[0][-1]
    theta = (cumulative[rho] - radius) / (rho + 1.0)
    return np.sign(v) * np.maximum(np.abs(v) - theta, 0.0)


def conv_same_np(x, kernel):
    """Stride-1 'same' convolution (cross-correlation, channels last) in float64."""
    kh, kw, _, _ = kernel.shape
    padded = np.pad(x, ((0, 0), ((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2), (0, 0)))
    h, w = x.shape[1:3]
    out = np.zeros(x.shape[:3] + (kernel.shape[-1],))
    for i in range(kh):
        for j in range(kw):
            out += np.einsum("bhwc,cf->bhwf", padded[:, i : i + h, j : j + w], kernel[i, j])
    return out


def conv_transpose_same_np(y, kernel):
    """The adjoint of `conv_same_np` (a stride-1 'same' transposed convolution) in float64."""
    kh, kw, _, _ = kernel.shape
    h, w = y.shape[1:3]
    padded = np.zeros((y.shape[0], h + kh - 1, w + kw - 1, kernel.shape[2]))
    for i in range(kh):
        for j in range(kw):
            padded[:, i : i + h, j : j + w] += np.einsum("bhwf,cf->bhwc", y, kernel[i, j])
    return padded[:, (kh - 1) // 2 : (kh - 1) // 2 + h, (kw - 1) // 2 : (kw - 1) // 2 + w]


def spectral_conv_transpose_reference(layer, x):
    raw = np.asarray(layer.kernel, np.float64)
    u = np.asarray(layer.power_vector, np.float64)  # on the output grid, where the forward convolution acts
    sigma = np.linalg.norm(conv_same_np(u / np.linalg.norm(u), raw))
    return conv_transpose_same_np(x, layer.lipschitz * raw / sigma) + np.asarray(layer.bias)


def spectral_conv1d_reference(layer, x):
    return spectral_conv_reference(layer, x[:, None])[:, 0]


def bjorck_reference(layer, x):
    return x @ (layer.lipschitz * polar_np(layer.kernel)) + np.asarray(layer.bias)


def linf_reference(layer, x):
    raw = np.asarray(layer.kernel, np.float64)
    kernel = np.stack([project_l1_ball_np(raw[:, j], layer.lipschitz) for j in range(raw.shape[1])], axis=1)
    return x @ kernel + np.asarray(layer.bias)


def spectral_dense_reference(layer, x):
    raw = np.asarray(layer.kernel, np.float64)
    u = np.asarray(layer.power_vector, np.float64)
    u = u / np.linalg.norm(u)
    return x @ (layer.lipschitz * raw / np.linalg.norm(u @ raw)) + np.asarray(layer.bias)


def spectral_conv_reference(layer, x):
    raw = np.asarray(layer.kernel, np.float64)
    u = np.asarray(layer.power_vector, np.float64)
    u = u / np.linalg.norm(u)
    sigma = np.linalg.norm(conv_same_np(u, raw))
    return conv_same_np(x, layer.lipschitz * raw / sigma) + np.asarray(layer.bias)


def aol_dense_reference(layer, x):
    return x @ aol_kernel_np(layer.kernel, layer.lipschitz) + np.asarray(layer.bias)


def aol_conv_reference(layer, x):
    return conv_same_np(x, aol_kernel_np(layer.kernel, layer.lipschitz)) + np.asarray(layer.bias)


def sll_reference(layer, x):
    return sll_np(x, layer.kernel, layer.bias, layer.log_q)


LARGE = keras.initializers.RandomNormal(stddev=1.0)
CASES = {
    "aol_dense": (lambda: AOLDense(6, lipschitz=1.5, kernel_initializer=LARGE), (4, 10), aol_dense_reference),
    "aol_conv": (lambda: AOLConv2D(4, 3, lipschitz=0.8, kernel_initializer=LARGE), (2, 6, 6, 3), aol_conv_reference),
    "sll_dense": (lambda: SLLDense(7), (4, 5), sll_reference),
    "sll_conv": (lambda: SLLConv2D(4, 3), (2, 5, 5, 3), sll_reference),
    "bjorck": (lambda: BjorckDense(6, lipschitz=1.5, inference_iterations=40), (4, 10), bjorck_reference),
    "bjorck_wide": (lambda: BjorckDense(12, inference_iterations=40), (4, 7), bjorck_reference),
    "linf": (lambda: LInfProjectedDense(6, lipschitz=0.7, kernel_initializer=LARGE), (4, 10), linf_reference),
    "spectral_dense": (lambda: SpectralNormDense(6, lipschitz=2.0), (4, 10), spectral_dense_reference),
    "spectral_conv": (lambda: SpectralNormConv2D(4, 3, lipschitz=1.0), (2, 6, 6, 3), spectral_conv_reference),
    "spectral_conv_transpose": (lambda: SpectralNormConv2DTranspose(4, 3, lipschitz=0.8), (2, 5, 5, 3),
                                spectral_conv_transpose_reference),
    "spectral_conv1d": (lambda: SpectralNormConv1D(4, 3, lipschitz=1.2), (2, 7, 3), spectral_conv1d_reference),
    # BCOP: the numpy reference applies the 1x1 matrix and each block convolution in turn (polar factors by SVD).
    "orthogonal_conv": (lambda: OrthogonalConv2D(4, 3, lipschitz=1.5), (2, 6, 6, 3),
                        orthogonal_conv_reference),
}
ATOL = 2e-4


def make_model(name):
    make_layer, shape, _ = CASES[name]
    return keras.Sequential([keras.Input(shape[1:]), make_layer()])


def data(name, seed=0):
    shape = CASES[name][1]
    return np.random.default_rng(seed).standard_normal(shape).astype("float32")


def check(name, model, x, call):
    layer = model.layers[-1]
    expected = CASES[name][2](layer, x.astype(np.float64))
    np.testing.assert_allclose(np.asarray(call(x)), expected, atol=ATOL * max(1.0, np.abs(expected).max()))


def perturb(model, seed):
    """New raw weights (not a normalized kernel) for every variable of the model."""
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(w.shape).astype("float32") if w.trainable else np.asarray(w) for w in model.weights]


def cases(default):
    """Every case, those outside `default` marked slow: the mechanism is one for all layers, so the
    default run checks a representative few of the costlier properties and `-m slow` checks all."""
    return [case if case in default else pytest.param(case, marks=pytest.mark.slow) for case in sorted(CASES)]


@pytest.fixture(params=sorted(CASES))
def name(request):
    return request.param


def test_never_stale_in_eager_graph_and_xla(name):
    model = make_model(name)
    x = data(name)
    graph = tf.function(lambda t: model(t, training=False))
    xla = tf.function(lambda t: model(t, training=False), jit_compile=True)
    for call in (model, graph, xla):
        check(name, model, x, call)  # fills the cache
        kernel = model.layers[-1].kernel
        # A direct assignment to the raw variable.
        kernel.assign(kernel + np.random.default_rng(1).standard_normal(kernel.shape).astype("float32"))
        for caller in (model, graph, xla):
            check(name, model, x, caller)
        # set_weights (a list from get_weights holds the old snapshots: they must not fool the cache).
        weights = model.get_weights()
        weights[0] = perturb(model, 2)[0]
        model.set_weights(weights)
        check(name, model, x, call)


def test_never_stale_after_optimizer_steps_and_training_calls(name):
    model = make_model(name)
    x = data(name)
    y = np.zeros((x.shape[0],) + model.output_shape[1:], "float32")
    model.compile(keras.optimizers.Adam(0.05), "mse")
    check(name, model, x, model.predict_on_batch)
    for _ in range(2):
        model.fit(x, y, epochs=1, verbose=0)  # optimizer steps (and power-iteration updates)
        check(name, model, x, model.predict_on_batch)
        check(name, model, x, lambda t: model(t))
    model.train_on_batch(x, y)
    check(name, model, x, model.predict_on_batch)


def test_never_stale_after_load_weights_and_load_model(name, tmp_path):
    source = make_model(name)
    x = data(name)
    source.set_weights(perturb(source, 3))
    source(x, training=True)  # advances the power vectors
    source.save_weights(str(tmp_path / "w.weights.h5"))
    source.save(str(tmp_path / "m.keras"))

    target = make_model(name)
    check(name, target, x, target)  # the target's cache holds its own kernel
    target.load_weights(str(tmp_path / "w.weights.h5"))
    check(name, target, x, target)
    np.testing.assert_allclose(target(x), source(x), atol=1e-6)
    restored = keras.models.load_model(str(tmp_path / "m.keras"))
    check(name, restored, x, restored)
    restored.set_weights(perturb(restored, 4))
    check(name, restored, x, restored.predict_on_batch)


@pytest.mark.parametrize("name", cases({"bjorck", "linf", "spectral_conv", "sll_dense"}))
def test_never_stale_under_mirrored_strategy(name):
    x = data(name)
    y = np.zeros((x.shape[0],) + make_model(name).output_shape[1:], "float32")
    strategy = mirrored_strategy()
    with strategy.scope():
        model = make_model(name)
        model.compile(keras.optimizers.SGD(0.1), "mse")
    check(name, model, x, lambda t: model.predict(t, batch_size=2, verbose=0))
    model.fit(x, y, batch_size=x.shape[0], epochs=1, verbose=0)
    check(name, model, x, lambda t: model.predict(t, batch_size=2, verbose=0))
    model.set_weights(perturb(model, 5))
    check(name, model, x, lambda t: model.predict(t, batch_size=2, verbose=0))
    check(name, model, x, model)


def test_kernel_is_computed_once_per_change(name, monkeypatch):
    model = make_model(name)
    layer = model.layers[-1]
    x = data(name)
    calls = []
    original = layer.effective_kernel
    monkeypatch.setattr(layer, "effective_kernel", lambda *a, **k: calls.append(k) or original(*a, **k))
    for _ in range(3):
        model(x)
    assert len(calls) == 1
    layer.kernel.assign(layer.kernel * 2.0)
    for _ in range(3):
        model(x)
    assert len(calls) == 2
    model(x, training=True)  # training calls always recompute (and are differentiated)
    assert calls[-1] == {"training": True}


def test_changing_bjorck_inference_iterations_invalidates_the_cache():
    layer = BjorckDense(8, inference_iterations=1, kernel_initializer=LARGE)
    x = np.eye(8, dtype="float32")
    rough = np.asarray(layer(x))
    layer.inference_iterations = 60
    exact = np.asarray(layer(x)) - np.asarray(layer.bias)
    np.testing.assert_allclose(exact, polar_np(layer.kernel), atol=1e-5)
    assert np.abs(rough - exact).max() > 1e-2


@pytest.mark.parametrize("name", cases({"linf", "spectral_dense", "spectral_conv", "sll_dense", "aol_dense"}))
def test_inference_calls_are_differentiable_as_without_the_cache(name):
    model = make_model(name)
    layer = model.layers[-1]
    x = tf.constant(data(name))

    def gradients(call):
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(x)
            y = tf.reduce_sum(tf.sin(call(x)))
        return tape.gradient(y, x), tape.gradient(y, layer.kernel)

    def uncached(t):
        kernel = layer.effective_kernel(training=False)
        if isinstance(layer, SpectralNormConv2DTranspose):
            return layer.geometry.apply_adjoint(t, kernel) + layer.bias
        if isinstance(layer, SpectralNormConv1D):
            return tf.nn.convolution(t[:, None], kernel, padding="SAME")[:, 0] + layer.bias
        if isinstance(layer, SLLDense):
            return sll_dense_residual(t, kernel, layer.bias)
        if isinstance(layer, SLLConv2D):
            return sll_conv_residual(t, kernel, layer.bias)
        if isinstance(layer, OrthogonalConv2D):
            return layer.convolve(t, kernel) + layer.bias
        if isinstance(layer, (SpectralNormConv2D, AOLConv2D)):
            return tf.nn.convolution(t, kernel, padding="SAME") + layer.bias
        return t @ kernel + layer.bias

    expected = gradients(uncached)
    for call in (model, model, tf.function(model), tf.function(model, jit_compile=True)):  # refresh, then cached
        for got, want in zip(gradients(call), expected):
            np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("shape", [(1,), (7, 3), (2**14,), (2**14 + 1,), (512, 512), (3, 2**14 + 5), (2**21 + 3,)])
def test_the_exact_check_sees_a_change_of_any_single_entry(shape):
    """The comparison runs in parts (at most 64, of 2^14 entries where possible): every entry is compared."""
    value = np.random.default_rng(0).standard_normal(shape).astype("float32")
    check = tf.function(_identical)
    assert bool(check(tf.constant(value), tf.constant(value.copy())))
    flat = value.reshape(-1)
    for index in {0, flat.size // 2, flat.size - 1, min(2**14, flat.size - 1), min(2**14 - 1, flat.size - 1)}:
        changed = flat.copy()
        changed[index] = np.nextafter(changed[index], np.inf)
        assert not bool(check(tf.constant(value), tf.constant(changed.reshape(shape)))), index
