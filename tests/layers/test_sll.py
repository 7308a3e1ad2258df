"""SLLDense / SLLConv2D: autodiff Jacobian norms, the paper's formula in numpy, shared layer checks."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.aol_sll_reference import sll_np
from tests.layer_checks import (
    check_mirrored_training,
    check_mixed_precision,
    check_save_load_roundtrip,
    check_sequential_and_graph_modes,
)
from tflip.layers import SLLConv2D, SLLDense
from tflip.ops.conv import conv_matrix

NORMAL = keras.initializers.RandomNormal(stddev=1.0)


def randomize(layer, seed):
    """Random raw kernel, bias and Schur weights (so the ReLU patterns and T vary)."""
    rng = np.random.default_rng(seed)
    layer.kernel.assign(rng.standard_normal(layer.kernel.shape).astype("float32"))
    layer.bias.assign(0.5 * rng.standard_normal(layer.bias.shape).astype("float32"))
    layer.log_q.assign(rng.standard_normal(layer.log_q.shape).astype("float32"))


def jacobians(layer, x):
    """Per-sample input Jacobians `(batch, out_dim, in_dim)` by autodiff (inference mode)."""
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=False)
    jac = tape.batch_jacobian(y, x)
    n = int(np.prod(x.shape[1:]))
    return np.asarray(jac, np.float64).reshape(x.shape[0], n, n)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("dim,inner", [(6, 12), (8, 3)])
def test_dense_jacobian_norms_at_most_one(seed, dim, inner):
    layer = SLLDense(inner)
    layer.build((None, dim))
    randomize(layer, seed)
    x = np.random.default_rng(100 + seed).standard_normal((16, dim)).astype("float32")
    norms = np.linalg.norm(jacobians(layer, x), 2, axis=(1, 2))
    assert norms.max() <= 1.0 + 1e-5
    # Not the identity: some directions are contracted.
    smallest = np.linalg.svd(jacobians(layer, x), compute_uv=False)[:, -1]
    assert smallest.min() < 0.9


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("kernel_size,c,inner", [(3, 2, 4), (2, 3, 2), ((1, 3), 2, 3)])
def test_conv_jacobian_norms_at_most_one(seed, kernel_size, c, inner):
    layer = SLLConv2D(inner, kernel_size)
    layer.build((None, 5, 5, c))
    randomize(layer, seed)
    x = np.random.default_rng(200 + seed).standard_normal((4, 5, 5, c)).astype("float32")
    jac = jacobians(layer, x)
    assert np.linalg.norm(jac, 2, axis=(1, 2)).max() <= 1.0 + 1e-5
    assert np.linalg.svd(jac, compute_uv=False)[:, -1].min() < 0.9
    # The normalized kernel's convolution satisfies V V^T <= I on this size.
    assert np.linalg.norm(conv_matrix(layer.inference_kernel(), layer.geometry), 2) <= 1.0 + 1e-5
    assert float(layer.operator_norm()) == pytest.approx(1.0, rel=1e-5)


def test_output_shape_equals_input_shape():
    x = np.ones((2, 7, 6, 3), "float32")
    assert SLLConv2D(5, 3)(x).shape == x.shape
    assert SLLDense(9)(np.ones((2, 4, 5), "float32")).shape == (2, 4, 5)
    model = keras.Sequential([keras.Input((None, None, 3)), SLLConv2D(4, 3)])
    assert model(x).shape == x.shape
    assert model.compute_output_shape((None, 7, 6, 3)) == (None, 7, 6, 3)


@pytest.mark.parametrize("seed", range(2))
def test_outputs_equal_the_papers_formula(seed):
    """y = x - 2 W T^-1 ReLU(W^T x + b), T from |W^T W| with q, b = T^(1/2) b' (numpy, float64)."""
    x = np.random.default_rng(seed).standard_normal((5, 6)).astype("float32")
    layer = SLLDense(10)
    layer.build((None, 6))
    randomize(layer, seed)
    expected = sll_np(x.astype(np.float64), layer.kernel, layer.bias, layer.log_q)
    np.testing.assert_allclose(layer(x), expected, atol=1e-5)
    np.testing.assert_allclose(layer(x, training=True), expected, atol=1e-5)
    x = np.random.default_rng(seed).standard_normal((2, 6, 5, 3)).astype("float32")
    layer = SLLConv2D(4, 3)
    layer.build((None, 6, 5, 3))
    randomize(layer, seed)
    expected = sll_np(x.astype(np.float64), layer.kernel, layer.bias, layer.log_q)
    np.testing.assert_allclose(layer(x), expected, atol=1e-5)


def test_fixed_q_is_not_trained():
    layer = SLLDense(4, learnable_q=False)
    layer.build((None, 3))
    assert any(w is layer.log_q for w in layer.non_trainable_weights)
    assert not any(w is layer.log_q for w in layer.trainable_weights)
    np.testing.assert_array_equal(layer.log_q, np.zeros(4))


def test_inf_norm_bound_covers_the_jacobians():
    layer = SLLConv2D(3, 3)
    layer.build((None, 4, 4, 2))
    randomize(layer, 3)
    x = np.random.default_rng(4).standard_normal((8, 4, 4, 2)).astype("float32")
    inf_norms = np.abs(jacobians(layer, x)).sum(axis=2).max(axis=1)
    assert inf_norms.max() <= layer.lipschitz_upper_bound("inf")
    assert layer.lipschitz_upper_bound() == 1.0 and layer.lipschitz_upper_bound(2) == 1.0
    dense = SLLDense(5)
    dense.build((None, 4))
    randomize(dense, 5)
    xd = np.random.default_rng(6).standard_normal((8, 4)).astype("float32")
    assert np.abs(jacobians(dense, xd)).sum(axis=2).max() <= dense.lipschitz_upper_bound("inf")
    with pytest.raises(ValueError, match="`norm`"):
        dense.lipschitz_upper_bound(1)


def test_training_moves_the_layer_and_keeps_the_bound():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((32, 6, 6, 2)).astype("float32")
    layer = SLLConv2D(4, 3)
    model = keras.Sequential([keras.Input((6, 6, 2)), layer])
    model.compile(keras.optimizers.Adam(0.05), "mse")
    before = model.evaluate(x, np.zeros_like(x), verbose=0)
    # Shrink towards 0, as far as a 1-Lipschitz residual allows.
    model.fit(x, np.zeros_like(x), batch_size=32, epochs=15, verbose=0)
    assert model.evaluate(x, np.zeros_like(x), verbose=0) < 0.9 * before
    assert np.abs(np.asarray(layer.log_q)).max() > 0  # q is learned
    assert np.linalg.norm(jacobians(layer, x[:2]), 2, axis=(1, 2)).max() <= 1.0 + 1e-5


def test_export_expands_sll_layers_unless_kept():
    from tflip.export import to_plain_keras
    from tflip.layers import AOLConv2D

    model = keras.Sequential([keras.Input((6, 6, 2)), AOLConv2D(3, 3), SLLConv2D(4, 3), keras.layers.Flatten(),
                              SLLDense(8)])
    x = np.random.default_rng(8).standard_normal((3, 6, 6, 2)).astype("float32")
    model(x, training=True)
    plain = to_plain_keras(model)
    assert [type(layer).__name__ for layer in plain.layers] == ["Conv2D", "Functional", "Flatten", "Functional"]
    np.testing.assert_allclose(plain(x), model(x), atol=1e-5)
    kept = to_plain_keras(model, keep=(SLLConv2D, SLLDense))
    assert [type(layer).__name__ for layer in kept.layers] == ["Conv2D", "SLLConv2D", "Flatten", "SLLDense"]
    np.testing.assert_allclose(kept(x), model(x), atol=1e-5)


CHECK_LAYERS = {
    "dense": (lambda: SLLDense(7), (4, 5)),
    "conv": (lambda: SLLConv2D(3, 3), (4, 5, 5, 2)),
}


@pytest.fixture(params=sorted(CHECK_LAYERS))
def case(request):
    make_layer, shape = CHECK_LAYERS[request.param]
    return make_layer, np.random.default_rng(9).standard_normal(shape).astype("float32")


def test_save_load(case, tmp_path):
    check_save_load_roundtrip(*case, tmp_path)


def test_sequential_functional_graph_xla(case):
    check_sequential_and_graph_modes(*case)


def test_mirrored_training(case):
    check_mirrored_training(*case)


def test_mixed_precision(case):
    check_mixed_precision(*case, "mixed_float16", rtol=2e-2)
    check_mixed_precision(*case, "mixed_bfloat16", rtol=5e-2)


@pytest.mark.parametrize(
    "make,name",
    [
        (lambda: SLLDense(0), "inner_units"),
        (lambda: SLLDense(3, learnable_q=1), "learnable_q"),
        (lambda: SLLDense(3, activation="tanh"), "activation"),
        (lambda: SLLConv2D(0, 3), "inner_filters"),
        (lambda: SLLConv2D(2, (3, 0)), "kernel_size"),
        (lambda: SLLConv2D(2, 3, input_size=(4,)), "input_size"),
        (lambda: SLLConv2D(2, 3, activation="relu"), "activation"),
    ],
)
def test_bad_arguments(make, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        make()
