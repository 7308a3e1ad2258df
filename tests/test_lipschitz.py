"""Network-level Lipschitz bounds against exact values."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tflip.layers import (
    BjorckDense,
    GroupSort,
    InvertibleDownSampling,
    L2NormPooling2D,
    LInfProjectedDense,
    LipschitzResidual,
    SpectralNormConv2D,
)
from tflip.lipschitz import jacobian_norms, layer_lipschitz_bound, lipschitz_lower_bound, lipschitz_upper_bound
from tflip.ops.conv import conv_matrix


def test_linear_model_bounds_are_exact(rng):
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4, use_bias=False)])
    kernel = model.layers[0].kernel.numpy()
    exact = np.linalg.norm(kernel, 2)
    assert lipschitz_upper_bound(model) == pytest.approx(exact, rel=1e-9)
    lower = lipschitz_lower_bound(model, rng.normal(size=(8, 6)).astype("float32"))
    assert lower == pytest.approx(exact, rel=1e-4)


def test_bjorck_groupsort_network_bounds_meet():
    model = keras.Sequential(
        [keras.Input((8,)), BjorckDense(8, lipschitz=2.0), GroupSort(2), BjorckDense(4), GroupSort(2),
         BjorckDense(1, lipschitz=1.5)]
    )  # widths never grow, so the gradient norm is 3 almost everywhere
    upper = lipschitz_upper_bound(model)
    assert upper == pytest.approx(3.0, rel=1e-4)
    lower = lipschitz_lower_bound(model, np.random.rand(16, 8).astype("float32"))
    assert lower <= upper * (1 + 1e-4)
    assert lower == pytest.approx(3.0, rel=1e-3)


def test_conv_network_upper_bound_covers_true_norm():
    model = keras.Sequential(
        [
            keras.Input((8, 8, 2)),
            keras.layers.Conv2D(3, 3, padding="same", use_bias=False),
            SpectralNormConv2D(2, 3, strides=2, lipschitz=2.0, use_bias=False),
            keras.layers.Flatten(),
        ]
    )
    plain = model.layers[0]
    exact_plain = np.linalg.norm(conv_matrix(plain.kernel, _geometry(plain)), 2)
    assert exact_plain <= layer_lipschitz_bound(plain) <= 1.1 * exact_plain
    # The whole (linear) network's exact norm is below the product bound.
    x = np.eye(8 * 8 * 2, dtype="float32").reshape(-1, 8, 8, 2)
    matrix = model(x).numpy().T
    assert np.linalg.norm(matrix, 2) <= lipschitz_upper_bound(model)


def _geometry(layer):
    from tflip.ops.conv import ConvGeometry

    return ConvGeometry((8, 8), layer.strides, layer.padding)


def test_linf_norm_bound():
    model = keras.Sequential([keras.Input((6,)), LInfProjectedDense(4, lipschitz=0.5), keras.layers.ReLU(),
                              LInfProjectedDense(2, lipschitz=2.0)])
    assert lipschitz_upper_bound(model, norm="inf") <= 1.0 + 1e-6


def test_activation_and_pooling_constants():
    model = keras.Sequential(
        [keras.Input((4, 4, 1)), keras.layers.AveragePooling2D(2), keras.layers.MaxPooling2D(2, strides=1),
         keras.layers.Flatten(), keras.layers.Dense(1, activation="sigmoid", use_bias=False)]
    )
    kernel = model.layers[-1].kernel.numpy()
    expected = np.sqrt(1 / 4) * np.sqrt(4) * np.linalg.norm(kernel, 2) * 0.25
    assert lipschitz_upper_bound(model) == pytest.approx(expected, rel=1e-9)


def test_unknown_layer_raises_unless_declared():
    model = keras.Sequential([keras.Input((3,)), keras.layers.LayerNormalization(name="bn"), keras.layers.Dense(1)])
    with pytest.raises(ValueError, match="bn"):
        lipschitz_upper_bound(model)
    kernel = model.layers[1].kernel.numpy()
    assert lipschitz_upper_bound(model, known={"bn": 2.0}) == pytest.approx(2 * np.linalg.norm(kernel, 2))


def explicit_matrix(model, shapes):
    """Matrix of a linear (affine) model w.r.t. the concatenation of its inputs, minus its offset (float64)."""
    sizes = [int(np.prod(shape)) for shape in shapes]
    n = sum(sizes)
    basis = np.eye(n, dtype="float32")
    zero = np.zeros((1, n), "float32")

    def split(x):
        parts = np.split(x, np.cumsum(sizes)[:-1], axis=1)
        return [p.reshape(-1, *shape) for p, shape in zip(parts, shapes)]

    def flat(outputs):
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        return np.concatenate([np.asarray(o, np.float64).reshape(len(o), -1) for o in outputs], axis=1)

    return (flat(model(split(basis) if len(shapes) > 1 else split(basis)[0]))
            - flat(model(split(zero) if len(shapes) > 1 else split(zero)[0]))).T


def scaled_identity(scale, units=4, **kwargs):
    return keras.layers.Dense(units, use_bias=False, kernel_initializer=keras.initializers.Identity(scale), **kwargs)


def spectral_norm(matrix):
    return np.linalg.norm(matrix, 2)


def test_residual_closed_form_is_tight():
    """x + f(x) with f of constant 0.25 (in the direction of x) has constant 1.25."""
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Add()([inputs, scaled_identity(0.25)(inputs)]))
    assert lipschitz_upper_bound(model) == pytest.approx(1.25, rel=1e-12)
    assert spectral_norm(explicit_matrix(model, [(4,)])) == pytest.approx(1.25, rel=1e-6)
    # The same written with operators on symbolic tensors.
    model = keras.Model(inputs, inputs + scaled_identity(0.25)(inputs) * 1.0)
    assert lipschitz_upper_bound(model) == pytest.approx(1.25, rel=1e-12)


@pytest.mark.parametrize(
    "merge,a,b,expected",
    [
        (keras.layers.Average, 0.5, 1.5, 1.0),  # (L_g + L_h) / 2
        (keras.layers.Concatenate, 0.6, 0.8, 1.0),  # sqrt(L_g^2 + L_h^2)
        (keras.layers.Subtract, 1.0, -0.25, 1.25),  # L_g + L_h
        (keras.layers.Add, 2.0, -3.0, 5.0),  # the sum; the exact constant here is 1: only an upper bound
    ],
)
def test_merge_rules(merge, a, b, expected):
    inputs = keras.Input((4,))
    model = keras.Model(inputs, merge()([scaled_identity(a)(inputs), scaled_identity(b)(inputs)]))
    bound = lipschitz_upper_bound(model)
    exact = spectral_norm(explicit_matrix(model, [(4,)]))
    assert bound == pytest.approx(expected, rel=1e-7)  # kernels hold float32(a), float32(b)
    assert exact <= bound * (1 + 1e-6)
    if merge is not keras.layers.Add:
        assert exact == pytest.approx(bound, rel=1e-6)


def test_scaling_rules(rng):
    inputs = keras.Input((4,))
    scaled = keras.layers.Rescaling(-0.5)(inputs)
    outputs = keras.ops.reshape(scaled / 4.0 - inputs * 2.0 + 1.0, (-1, 2, 2))
    model = keras.Model(inputs, outputs)
    assert lipschitz_upper_bound(model) == pytest.approx(0.125 + 2.0, rel=1e-12)
    assert spectral_norm(explicit_matrix(model, [(4,)])) == pytest.approx(2.125, rel=1e-6)


def test_several_inputs_and_outputs_bound_the_concatenation():
    """f(x1) + g(x2) = [aI bI] [x1; x2] has norm sqrt(a^2 + b^2); several outputs are concatenated."""
    x1, x2 = keras.Input((4,)), keras.Input((4,))
    a, b = scaled_identity(0.6)(x1), scaled_identity(0.8)(x2)
    model = keras.Model([x1, x2], keras.layers.Add()([a, b]))
    assert lipschitz_upper_bound(model) == pytest.approx(1.0, rel=1e-7)  # float32 kernels
    assert spectral_norm(explicit_matrix(model, [(4,), (4,)])) == pytest.approx(1.0, rel=1e-6)
    two = keras.Model([x1, x2], [a, b])  # block-diagonal: the parts of different inputs stay apart, exact norm 0.8
    assert spectral_norm(explicit_matrix(two, [(4,), (4,)])) == pytest.approx(0.8, rel=1e-6)
    assert lipschitz_upper_bound(two) == pytest.approx(0.8, rel=1e-7)
    assert lipschitz_upper_bound(two, norm="inf") == pytest.approx(0.8, rel=1e-7)
    concatenated = keras.Model([x1, x2], keras.layers.Concatenate()([a, b]))
    assert lipschitz_upper_bound(concatenated) == pytest.approx(0.8, rel=1e-7)
    both = keras.Model([x1, x2], keras.layers.Concatenate()([a, scaled_identity(0.8)(x1)]))  # same input: stacked
    assert lipschitz_upper_bound(both) == pytest.approx(1.0, rel=1e-7)
    assert spectral_norm(explicit_matrix(both, [(4,), (4,)])) == pytest.approx(1.0, rel=1e-6)
    # L-infinity: the sum over inputs.
    assert lipschitz_upper_bound(model, norm="inf") == pytest.approx(1.4, rel=1e-7)


@pytest.mark.parametrize("seed", range(4))
def test_multi_input_graphs_bound_the_explicit_matrix(seed):
    """Random linear graphs over two inputs (concatenations, sums, a two-input nested model, a rescaling, several
    outputs): the bound is at least the exact norm of the explicit matrix, in L2 and L-infinity."""
    rng = np.random.default_rng(seed)

    def dense(units):
        kernel = rng.standard_normal((4, units)).astype("float32") * rng.uniform(0.2, 1.5)
        return keras.layers.Dense(units, use_bias=False, kernel_initializer=keras.initializers.Constant(kernel))

    u1, u2 = keras.Input((4,)), keras.Input((4,))
    inner = keras.Model([u1, u2], keras.layers.Concatenate()([dense(4)(u1), keras.layers.Add()([u1, dense(4)(u2)])]))
    x1, x2 = keras.Input((4,)), keras.Input((4,))
    a = keras.layers.Concatenate()([dense(3)(x1), dense(5)(x2)])
    b = inner([x1, dense(4)(keras.layers.Add()([x1, x2]))])
    model = keras.Model([x1, x2], [a, keras.layers.Rescaling(0.7)(b), dense(2)(x2)])
    matrix = explicit_matrix(model, [(4,), (4,)])
    assert lipschitz_upper_bound(model) >= spectral_norm(matrix) * (1 - 1e-6)
    assert lipschitz_upper_bound(model, norm="inf") >= np.max(np.abs(matrix).sum(axis=1)) * (1 - 1e-6)


def test_long_concatenation_chains_stay_small_and_sound():
    """DenseNet-style growth, t = [t; f(t)] thirty times: the bound matrix is compacted (it would have 2^30 rows)."""
    rng = np.random.default_rng(0)
    x1, x2 = keras.Input((2,)), keras.Input((2,))
    t = keras.layers.Concatenate()([x1, x2])
    for _ in range(30):
        kernel = rng.standard_normal((t.shape[-1], 1)).astype("float32") * 0.1
        dense = keras.layers.Dense(1, use_bias=False, kernel_initializer=keras.initializers.Constant(kernel))
        t = keras.layers.Concatenate()([t, dense(t)])
    model = keras.Model([x1, x2], t)
    matrix = explicit_matrix(model, [(2,), (2,)])
    assert spectral_norm(matrix) <= lipschitz_upper_bound(model) * (1 + 1e-6)
    assert np.max(np.abs(matrix).sum(axis=1)) <= lipschitz_upper_bound(model, norm="inf") * (1 + 1e-6)


def test_broadcasting_copies_count_in_l2():
    """x of shape (1,) broadcast to (4,) has 4 copies of each difference: L2 constant 2, L-infinity 1."""
    x, y = keras.Input((1,)), keras.Input((4,))
    model = keras.Model(x, x + np.zeros(4, "float32"))
    assert lipschitz_upper_bound(model) == pytest.approx(2.0)
    assert lipschitz_upper_bound(model, norm="inf") == pytest.approx(1.0)
    assert lipschitz_upper_bound(keras.Model(x, x * np.ones(4, "float32"))) == pytest.approx(2.0)
    both = keras.Model([x, y], keras.layers.Add()([x, y]))  # [2 * 1 ... ; I]: exact sqrt(4 + 1)
    assert lipschitz_upper_bound(both) == pytest.approx(np.sqrt(5.0))
    assert spectral_norm(explicit_matrix(both, [(1,), (4,)])) == pytest.approx(np.sqrt(5.0), rel=1e-6)


def test_unbounded_parts_give_an_infinite_bound():
    x, y = keras.Input((4,)), keras.Input((4,))
    divided = x / np.array([1.0, 0.0, 1.0, 1.0], "float32")
    assert lipschitz_upper_bound(keras.Model(x, divided)) == np.inf
    assert lipschitz_upper_bound(keras.Model(x, divided), norm="inf") == np.inf
    assert lipschitz_upper_bound(keras.Model([x, y], keras.layers.Concatenate()([divided, y]))) == np.inf
    big = scaled_identity(1.0, name="big")
    assert lipschitz_upper_bound(keras.Model([x, y], [big(x), y]), known={"big": np.inf}) == np.inf


def test_nested_and_shared_models():
    inner_input = keras.Input((4,))
    block = keras.Model(inner_input, keras.layers.Add()([inner_input, scaled_identity(0.25)(inner_input)]))
    inputs = keras.Input((4,))
    model = keras.Model(inputs, block(block(inputs)))  # shared nested model, called twice
    assert lipschitz_upper_bound(model) == pytest.approx(1.5625, rel=1e-12)
    assert spectral_norm(explicit_matrix(model, [(4,)])) == pytest.approx(1.5625, rel=1e-6)
    outer = keras.Sequential([keras.Input((4,)), model, scaled_identity(2.0)])
    assert lipschitz_upper_bound(outer) == pytest.approx(3.125, rel=1e-12)
    assert lipschitz_upper_bound(outer, known={model.name: 1.0}) == pytest.approx(2.0, rel=1e-12)


def resnet(activation=None, seed=0):
    """A small ResNet-like critic: conv stem, two residual blocks (one Add, one LipschitzResidual), pooling."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6, 6, 2))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    branch = keras.layers.Conv2D(4, 3, padding="same", activation=activation)(x)
    branch = keras.layers.Conv2D(4, 3, padding="same")(branch)
    x = keras.layers.Add()([x, branch])
    x = LipschitzResidual(keras.Sequential([SpectralNormConv2D(4, 3, lipschitz=0.5), keras.layers.Activation(
        activation or "linear")]), alpha=0.5)(x)
    x = L2NormPooling2D(2)(x) if activation else InvertibleDownSampling(3)(x)
    y = keras.layers.Concatenate()([x, keras.layers.Rescaling(0.5)(x)])
    outputs = keras.layers.Dense(3)(keras.layers.Flatten()(y))
    return keras.Model(inputs, outputs)


def test_resnet_bound_covers_the_exact_norm_of_a_linear_graph():
    model = resnet()
    bound = lipschitz_upper_bound(model)
    exact = spectral_norm(explicit_matrix(model, [(6, 6, 2)]))
    assert exact <= bound * (1 + 1e-9)


def test_resnet_bound_covers_jacobian_norms(rng):
    model = resnet(activation="relu", seed=1)
    x = rng.normal(size=(16, 6, 6, 2)).astype("float32")
    assert float(tf.reduce_max(jacobian_norms(model, x))) <= lipschitz_upper_bound(model)


def test_maximum_rule_covers_jacobian_norms(rng):
    inputs = keras.Input((5,))
    model = keras.Model(inputs, keras.layers.Maximum()([keras.layers.Dense(5)(inputs), keras.layers.Dense(5)(inputs)]))
    x = rng.normal(size=(64, 5)).astype("float32")
    assert float(tf.reduce_max(jacobian_norms(model, x))) <= lipschitz_upper_bound(model)


def test_linf_graph_bound_covers_the_explicit_matrix():
    inputs = keras.Input((6,))
    branch = LInfProjectedDense(6, lipschitz=0.5, use_bias=False)(inputs)
    merged = keras.layers.Concatenate()([keras.layers.Add()([inputs, branch]), keras.layers.Dense(2)(inputs)])
    model = keras.Model(inputs, merged)
    matrix = explicit_matrix(model, [(6,)])
    assert np.abs(matrix).sum(axis=1).max() <= lipschitz_upper_bound(model, norm="inf") * (1 + 1e-9)


def test_products_and_unknown_merges_raise_unless_declared():
    inputs = keras.Input((3,))
    dense = keras.layers.Dense(3)(inputs)
    model = keras.Model(inputs, keras.layers.Multiply(name="gate")([inputs, dense]))
    with pytest.raises(ValueError, match="gate"):
        lipschitz_upper_bound(model)
    assert lipschitz_upper_bound(model, known={"gate": 2.0}) == pytest.approx(
        2.0 * np.sqrt(1 + np.linalg.norm(model.layers[1].kernel.numpy(), 2) ** 2))
    product = keras.Model(inputs, inputs * dense)
    with pytest.raises(ValueError, match="not Lipschitz"):
        lipschitz_upper_bound(product)


def test_subclassed_models_raise():
    class Net(keras.Model):
        def __init__(self):
            super().__init__(name="net")
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(x) + x[:, :2]

    net = Net()
    net(np.zeros((1, 3), "float32"))
    with pytest.raises(ValueError, match="subclassed"):
        lipschitz_upper_bound(net)
    assert lipschitz_upper_bound(net, known={"net": 2.0}) == 2.0


def test_keras_conv1d_bound_certifies_its_explicit_matrix(rng):
    layer = keras.layers.Conv1D(3, 3, strides=2, padding="same", use_bias=False)
    model = keras.Sequential([keras.Input((9, 2)), layer])
    exact = spectral_norm(explicit_matrix(model, [(9, 2)]))
    assert exact * (1 - 1e-6) <= lipschitz_upper_bound(model) <= exact * (1 + 1e-6)


def test_bad_norm():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    with pytest.raises(ValueError, match="norm"):
        lipschitz_upper_bound(model, norm=1)


def test_lower_bound_never_exceeds_upper(rng):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(2)])
    x = rng.normal(size=(32, 4)).astype("float32")
    assert lipschitz_lower_bound(model, x) <= lipschitz_upper_bound(model) * (1 + 1e-6)


def test_transposed_conv_bound_certifies_its_explicit_matrix(rng):
    layer = keras.layers.Conv2DTranspose(2, 3, strides=2, padding="same", use_bias=False)
    model = keras.Sequential([keras.Input((6, 6, 3)), layer])
    layer.set_weights([rng.normal(size=(3, 3, 2, 3)).astype("float32")])
    basis = np.eye(6 * 6 * 3, dtype="float32").reshape(-1, 6, 6, 3)
    matrix = model.predict(basis, verbose=0).reshape(108, -1).astype("float64")  # row i: the image of input i
    exact = np.linalg.norm(matrix, 2)
    bound = lipschitz_upper_bound(model)
    assert exact * (1 - 1e-6) <= bound <= 1.1 * exact
    # L-infinity: the largest absolute sum of the inputs feeding one output; the bound sums all taps of a channel.
    assert np.abs(matrix).sum(axis=0).max() * (1 - 1e-6) <= lipschitz_upper_bound(model, "inf")


def test_batch_normalization_bound_is_the_largest_diagonal_entry_at_inference():
    layer = keras.layers.BatchNormalization(epsilon=1e-3)
    layer.build((None, 5))
    rng = np.random.default_rng(0)
    layer.set_weights([rng.normal(size=5), rng.normal(size=5), rng.normal(size=5), rng.uniform(0.1, 3, size=5)])
    basis = np.eye(5, dtype="float32")
    jacobian = np.asarray(layer(basis, training=False)) - np.asarray(layer(np.zeros((1, 5), "float32")))
    expected = np.abs(np.diag(jacobian)).max()
    np.testing.assert_allclose(np.abs(jacobian - np.diag(np.diag(jacobian))).max(), 0.0, atol=1e-6)
    for norm in (2, "inf"):
        np.testing.assert_allclose(layer_lipschitz_bound(layer, norm), expected, rtol=1e-5)
