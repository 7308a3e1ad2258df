"""LipschitzResidual: closed-form bounds, Jacobians, shape checks, serialization and export."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.layer_checks import (
    check_mirrored_training,
    check_mixed_precision,
    check_save_load_roundtrip,
    check_sequential_and_graph_modes,
)
from tflip.export import to_plain_keras
from tflip.layers import GroupSort, LipschitzResidual, SpectralNormConv2D, SpectralNormDense
from tflip.layers.base import iter_layers
from tflip.lipschitz import jacobian_norms, lipschitz_upper_bound


def scaled_identity(scale, units=4):
    layer = keras.layers.Dense(units, use_bias=False, kernel_initializer=keras.initializers.Identity(scale))
    layer.build((None, units))
    return layer


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("scale", [0.25, 3.0])
def test_bound_is_exact_on_a_scaled_identity_branch(alpha, scale):
    """(1 - alpha) x + alpha c x has constant (1 - alpha) + alpha c, which is the certified bound."""
    block = LipschitzResidual(scaled_identity(scale), alpha=alpha)
    model = keras.Sequential([keras.Input((4,)), block])
    expected = (1 - alpha) + alpha * scale
    # The bound uses alpha as the float32 forward pass does (0.3 is 0.30000001 there).
    alpha32 = float(np.float32(alpha))
    assert block.lipschitz_upper_bound() == pytest.approx((1 - alpha32) + alpha32 * scale, rel=1e-12)
    assert lipschitz_upper_bound(model) == pytest.approx(expected, rel=1e-7)
    matrix = np.asarray(model(np.eye(4, dtype="float32")))
    assert np.linalg.norm(matrix, 2) == pytest.approx(expected, rel=1e-6)


def test_bound_covers_jacobian_norms_of_a_nonlinear_branch(rng):
    branch = keras.Sequential([SpectralNormConv2D(3, 3, lipschitz=2.0, power_iterations=30), GroupSort(3),
                               SpectralNormConv2D(3, 3, power_iterations=30)])
    block = LipschitzResidual(branch, alpha=0.4, learn_alpha=True)
    model = keras.Sequential([keras.Input((6, 6, 3)), block])
    x = rng.normal(size=(8, 6, 6, 3)).astype("float32")
    for _ in range(3):
        model(x, training=True)
    for layer in branch.layers[::2]:
        layer.converge_power_vector()
    bound = lipschitz_upper_bound(model)
    alpha = float(block.current_alpha())
    assert alpha == pytest.approx(0.4, rel=1e-6)
    assert bound == pytest.approx((1 - alpha) + alpha * 2.0, rel=2e-3)
    assert float(tf.reduce_max(jacobian_norms(model, x))) <= bound * (1 + 1e-6)
    assert float(block.operator_norm()) == pytest.approx(bound, rel=2e-3)


def test_known_constants_reach_the_branch():
    branch = keras.Sequential([keras.Input((4,)), keras.layers.LayerNormalization(name="norm")])
    block = LipschitzResidual(branch, alpha=0.5)
    model = keras.Sequential([keras.Input((4,)), block])
    with pytest.raises(ValueError, match="norm"):
        lipschitz_upper_bound(model)
    assert lipschitz_upper_bound(model, known={"norm": 3.0}) == pytest.approx(0.5 + 0.5 * 3.0)


def test_learned_alpha_trains_and_stays_in_the_unit_interval(rng):
    block = LipschitzResidual(SpectralNormDense(4), alpha=0.5, learn_alpha=True)
    model = keras.Sequential([keras.Input((4,)), block])
    model.compile(keras.optimizers.SGD(1.0), "mse")
    x = rng.normal(size=(16, 4)).astype("float32")
    model.fit(x, 3 * x, epochs=5, verbose=0)  # the branch cannot scale by 3: alpha moves
    alpha = float(block.current_alpha())
    assert 0.0 < alpha < 1.0 and abs(alpha - 0.5) > 1e-3
    assert block.alpha_logit.trainable
    assert block.lipschitz_upper_bound() == pytest.approx(
        (1 - alpha) + alpha * block.layer.lipschitz_upper_bound(), rel=1e-9)


def test_branch_shape_must_match():
    with pytest.raises(ValueError, match="layer"):
        keras.Sequential([keras.Input((4,)), LipschitzResidual(keras.layers.Dense(3))])
    with pytest.raises(ValueError, match="layer"):
        keras.Sequential([keras.Input((6, 6, 2)), LipschitzResidual(SpectralNormConv2D(2, 3, strides=2))])


@pytest.mark.parametrize(
    "kwargs", [{"alpha": 1.5}, {"alpha": -0.1}, {"alpha": "half"}, {"alpha": 1.0, "learn_alpha": True},
               {"alpha": 0.0, "learn_alpha": True}, {"layer": "dense"}]
)
def test_bad_arguments(kwargs):
    name = "layer" if "layer" in kwargs else "alpha"
    with pytest.raises(ValueError, match=name):
        LipschitzResidual(**{"layer": keras.layers.Dense(2), **kwargs})


def make_block():
    branch = keras.Sequential([SpectralNormConv2D(2, 3, use_bias=True), GroupSort(2),
                               SpectralNormConv2D(2, 3, lipschitz=0.5)])
    return LipschitzResidual(branch, alpha=0.3, learn_alpha=True)


def make_dense_block():
    return LipschitzResidual(SpectralNormDense(4, activation="relu"), alpha=0.7)


def test_shared_checks(tmp_path):
    x = np.random.default_rng(1).normal(size=(4, 5, 5, 2)).astype("float32")
    restored = check_save_load_roundtrip(make_block, x, tmp_path)
    block = restored.layers[-1]
    assert isinstance(block, LipschitzResidual) and isinstance(block.layer, keras.Sequential)
    check_sequential_and_graph_modes(make_block, x)
    check_mirrored_training(make_block, x)
    check_mixed_precision(make_block, x, "mixed_float16", 5e-3)
    xd = np.random.default_rng(2).normal(size=(4, 4)).astype("float32")
    check_save_load_roundtrip(make_dense_block, xd, tmp_path)
    check_sequential_and_graph_modes(make_dense_block, xd)


@pytest.mark.parametrize("make,shape", [(make_block, (5, 5, 2)), (make_dense_block, (4,))])
def test_export_expands_the_block_around_the_exported_branch(make, shape, rng):
    inputs = keras.Input(shape)
    model = keras.Model(inputs, make()(inputs))
    x = rng.normal(size=(3, *shape)).astype("float32")
    model(x, training=True)
    exported = to_plain_keras(model)
    block = exported.layers[-1]
    assert isinstance(block, keras.Model) and block.name == model.layers[-1].name
    inner = list(iter_layers(block))
    assert all(type(layer).__module__.startswith("keras.") or type(layer) is GroupSort for layer in inner)
    np.testing.assert_allclose(exported(x), model(x, training=False), atol=1e-6)
    assert lipschitz_upper_bound(exported) == pytest.approx(lipschitz_upper_bound(model), rel=1e-5)
