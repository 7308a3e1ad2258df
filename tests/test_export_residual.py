"""to_plain_keras for residual layers: SLLDense / SLLConv2D and LipschitzResidual become nested functional models of
built-in layers with the same outputs; `keep` keeps chosen tflip layers (and SLL's certificate)."""

import functools

import keras
import numpy as np
import pytest

from tests.export_checks import all_layers, outputs_in_fresh_process
from tflip.export import to_plain_keras
from tflip.layers import BjorckDense, LipschitzResidual, SLLConv2D, SLLDense, SpectralNormConv2D, SpectralNormDense
from tflip.layers.base import iter_layers
from tflip.lipschitz import jacobian_norms, lipschitz_upper_bound


def train(model, x):
    """A few Adam steps towards a non-zero target, so that V, the SLL biases and learned alphas move."""
    model.compile(keras.optimizers.Adam(0.05), "mse")
    target = np.full(model.output_shape[1:], 0.5, "float32")
    model.fit(x, np.broadcast_to(target, (len(x), *target.shape)), epochs=3, batch_size=len(x), verbose=0)
    return model, x


@functools.cache  # to_plain_keras leaves the model as it is: the tests share one trained copy
def conv_sequential():
    """SLLConv2D with odd and even kernels, a learned-alpha residual around a conv, SLLDense, a fixed-alpha block."""
    model = keras.Sequential([
        keras.Input((5, 5, 2)),
        SLLConv2D(4, 3, name="sll_odd"),
        SLLConv2D(3, (2, 4), name="sll_even"),
        LipschitzResidual(SpectralNormConv2D(2, 3, padding="same"), alpha=0.3, learn_alpha=True, name="conv_block"),
        keras.layers.Flatten(),
        SLLDense(6, name="sll_dense"),
        LipschitzResidual(BjorckDense(50, activation="relu"), alpha=0.6, name="dense_block"),
    ])
    return train(model, np.random.default_rng(0).standard_normal((8, 5, 5, 2)).astype("float32"))


@functools.cache
def dense_functional():
    """Functional: SLLDense, residual blocks around a layer, an SLL layer and a nested model, merged by Average."""
    inputs = keras.Input((6,))
    a = SLLDense(7, name="sll")(inputs)
    b = LipschitzResidual(SpectralNormDense(6), alpha=0.4, learn_alpha=True, name="block_layer")(a)
    c = LipschitzResidual(SLLDense(3, use_bias=False), alpha=0.7, name="block_sll")(a)
    branch = keras.Sequential([keras.Input((6,)), SpectralNormDense(6, activation="relu"), SpectralNormDense(6)])
    d = LipschitzResidual(branch, alpha=0.5, name="block_model")(inputs)
    model = keras.Model(inputs, keras.layers.Average()([b, c, d]))
    return train(model, np.random.default_rng(1).standard_normal((8, 6)).astype("float32"))


def names(model):
    return [layer.name for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]


@pytest.mark.parametrize("build", [conv_sequential, dense_functional])
def test_same_outputs_from_built_in_layers_only(build):
    model, x = build()
    for layer in all_layers(model):
        if isinstance(layer, (SLLDense, SLLConv2D)) and layer.use_bias:
            assert np.abs(np.asarray(layer.bias)).max() > 1e-3  # trained: the bias inside the ReLU matters
        if isinstance(layer, LipschitzResidual) and layer.learn_alpha:
            assert abs(float(layer.current_alpha()) - layer.alpha) > 1e-3
    expected = np.asarray(model(x, training=False))
    before = [np.array(w) for w in model.weights]
    plain = to_plain_keras(model)
    np.testing.assert_allclose(plain(x, training=False), expected, atol=1e-5)
    np.testing.assert_allclose(plain.predict(x, verbose=0), expected, atol=1e-5)
    assert all(type(layer).__module__.startswith("keras.") for layer in all_layers(plain))
    assert type(plain) is type(model) and names(plain) == names(model)
    assert all(weight.dtype == "float32" for weight in plain.weights)
    for a, b in zip(before, model.weights):
        np.testing.assert_array_equal(a, np.asarray(b))


def test_export_reloads_in_a_fresh_process_without_tflip(tmp_path):
    model, x = conv_sequential()
    expected = np.asarray(model(x, training=False))
    np.testing.assert_allclose(outputs_in_fresh_process(to_plain_keras(model), x, tmp_path), expected, atol=1e-5)


def test_export_accepts_the_inputs_the_layers_accept():
    """Any image size when built without one (even with `input_size` given), any rank for SLLDense."""
    conv = keras.Sequential([keras.Input((None, None, 2)), SLLConv2D(3, 2, input_size=(6, 6))])
    dense = keras.Sequential([keras.Input((None, 4)), LipschitzResidual(SLLDense(5), alpha=0.5)])
    for model, shapes in ((conv, [(2, 6, 6, 2), (2, 9, 7, 2)]), (dense, [(2, 3, 4), (2, 5, 4)])):
        model(np.zeros(shapes[0], "float32"))
        plain = to_plain_keras(model)
        for shape in shapes:
            x = np.random.default_rng(4).standard_normal(shape).astype("float32")
            np.testing.assert_allclose(plain(x), model(x), atol=1e-5)


def test_expanded_sll_recertifies_loosely_but_validly():
    model, x = conv_sequential()
    plain = to_plain_keras(model)
    for norm in (2, "inf"):
        original, exported = lipschitz_upper_bound(model, norm), lipschitz_upper_bound(plain, norm)
        assert exported >= original - 1e-6, (norm, original, exported)
    assert lipschitz_upper_bound(plain) >= float(np.max(jacobian_norms(plain, x)))


@pytest.mark.parametrize("build", [conv_sequential, dense_functional])
def test_keep_keeps_sll_layers_and_their_certificate(build):
    model, x = build()
    plain = to_plain_keras(model, keep=(SLLConv2D, SLLDense))
    np.testing.assert_allclose(plain(x, training=False), model(x, training=False), atol=1e-5)
    kept = [layer.name for layer in all_layers(plain) if isinstance(layer, (SLLConv2D, SLLDense))]
    # iter_layers also walks into the residual blocks' branches (all_layers walks models only).
    assert kept == [layer.name for layer in iter_layers(model) if isinstance(layer, (SLLConv2D, SLLDense))]
    # Everything else is expanded, residual blocks around a kept SLL branch included.
    assert not any(isinstance(layer, LipschitzResidual) for layer in all_layers(plain))
    for norm in (2, "inf"):
        original = lipschitz_upper_bound(model, norm)
        assert lipschitz_upper_bound(plain, norm) == pytest.approx(original, rel=1e-3)


def test_keep_one_class():
    model, x = conv_sequential()
    plain = to_plain_keras(model, keep=[SLLConv2D])
    assert [type(layer).__name__ for layer in plain.layers[:2]] == ["SLLConv2D", "SLLConv2D"]
    assert isinstance(plain.get_layer("sll_dense"), keras.Model)
    np.testing.assert_allclose(plain(x), model(x), atol=1e-5)


def test_residual_export_keeps_the_bound():
    model = keras.Sequential([
        keras.Input((4, 4, 2)),
        LipschitzResidual(SpectralNormConv2D(2, 3, padding="same", lipschitz=2.0), alpha=0.25, learn_alpha=True),
        keras.layers.Flatten(),
        LipschitzResidual(SpectralNormDense(32, lipschitz=0.5), alpha=0.8),
    ])
    train(model, np.random.default_rng(2).standard_normal((4, 4, 4, 2)).astype("float32"))
    plain = to_plain_keras(model)
    assert sorted(type(layer).__name__ for layer in plain.layers[0].layers) == [
        "Add", "Conv2D", "InputLayer", "Rescaling", "Rescaling"
    ]
    for norm in (2, "inf"):
        original = lipschitz_upper_bound(model, norm)
        assert abs(lipschitz_upper_bound(plain, norm) - original) <= 1e-3 * original


def test_mixed_precision_export_keeps_float32_kernels():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = keras.Sequential([
            keras.Input((4, 4, 2)), SLLConv2D(3, 2), LipschitzResidual(SpectralNormConv2D(2, 3, padding="same")),
            keras.layers.Flatten(), SLLDense(5),
        ])
        x = np.random.default_rng(3).standard_normal((2, 4, 4, 2)).astype("float32")
        model(x, training=True)
        plain = to_plain_keras(model)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert all(weight.dtype == "float32" for weight in plain.weights)
    assert plain.layers[0].get_layer(f"{model.layers[0].name}_inner").compute_dtype == "float16"
    np.testing.assert_allclose(np.asarray(plain(x), np.float32), np.asarray(model(x), np.float32), atol=1e-3)
    np.testing.assert_array_equal(np.asarray(plain.layers[0].get_layer(f"{model.layers[0].name}_inner").kernel),
                                  np.asarray(model.layers[0].inference_kernel()))


@pytest.mark.parametrize("keep", [SLLConv2D, None, (SLLConv2D(2, 3),), ("SLLConv2D",), (keras.layers.Dense,)])
def test_bad_keep_is_rejected_and_the_model_untouched(keep):
    model = keras.Sequential([keras.Input((6,)), SLLDense(4)])
    model(np.ones((1, 6), "float32"))
    before = [np.array(w) for w in model.weights]
    with pytest.raises(ValueError, match="`keep`"):
        to_plain_keras(model, keep=keep)
    for a, b in zip(before, model.weights):
        np.testing.assert_array_equal(a, np.asarray(b))
    assert isinstance(model.layers[0], SLLDense)


def test_exports_accept_every_image_size_the_layers_accept():
    """Layers built on 5x5 images and called on 9x7 ones: the nested exports take any size too."""
    model = keras.Sequential([SLLConv2D(3, 3), LipschitzResidual(SpectralNormConv2D(2, 3, padding="same"))])
    rng = np.random.default_rng(4)
    model(rng.standard_normal((2, 5, 5, 2)).astype("float32"))
    plain = to_plain_keras(model)
    x = rng.standard_normal((2, 9, 7, 2)).astype("float32")
    np.testing.assert_allclose(plain(x), model(x), atol=1e-5)


def test_dynamic_size_exports_are_certified_on_the_built_size():
    """In a model that accepts any image size, the nested exports' convolutions are bounded on the size the
    layers were built for (as the original layers' bounds are); the residual block's bound is the original's."""
    branch = SpectralNormConv2D(2, 3, padding="same")
    block = LipschitzResidual(branch, alpha=0.4, name="block")
    block(np.zeros((1, 6, 6, 2), "float32"))
    inputs = keras.Input((None, None, 2))
    model = keras.Model(inputs, block(inputs))
    plain = to_plain_keras(model)
    original = lipschitz_upper_bound(model)
    assert abs(lipschitz_upper_bound(plain) - original) <= 1e-3 * original


def test_names_inside_exports_do_not_collide_with_the_branch():
    model = keras.Sequential([keras.Input((4,)), LipschitzResidual(SpectralNormDense(4, name="combine"), name="r")])
    plain = to_plain_keras(model)
    x = np.random.default_rng(5).standard_normal((3, 4)).astype("float32")
    np.testing.assert_allclose(plain(x), model(x), atol=1e-6)
    assert {layer.name for layer in plain.layers[0].layers} >= {"r_identity_scale", "r_branch_scale", "r_combine"}


def test_float64_residual_export_matches_to_the_precision_of_keras_rescaling():
    """`call` forms 1 - alpha in float64; Keras' Rescaling holds its scale at float32 precision (~6e-8)."""
    block = LipschitzResidual(SpectralNormDense(4), alpha=0.3, learn_alpha=True, dtype="float64")
    model = keras.Sequential([keras.Input((4,), dtype="float64"), block])
    x = np.random.default_rng(6).standard_normal((3, 4))
    np.testing.assert_allclose(to_plain_keras(model)(x), model(x), rtol=2e-7, atol=0)


def test_an_expanded_sll_layer_takes_its_declared_certificate_by_name():
    model = keras.Sequential([keras.Input((5, 5, 2)), SLLConv2D(3, 3, name="block")])
    plain = to_plain_keras(model)
    assert lipschitz_upper_bound(plain) > 1.0 + 1e-3  # the graph bound of the plain pieces
    assert lipschitz_upper_bound(plain, known={"block": 1.0}) == pytest.approx(1.0)
