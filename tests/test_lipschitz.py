"""Network-level Lipschitz bounds against exact values."""

import keras
import numpy as np
import pytest

from tflip.layers import BjorckDense, GroupSort, LInfProjectedDense, SpectralNormConv2D
from tflip.lipschitz import layer_lipschitz_bound, lipschitz_lower_bound, lipschitz_upper_bound
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


def test_branches_raise():
    inputs = keras.Input((3,))
    dense = keras.layers.Dense(3)
    model = keras.Model(inputs, keras.layers.Add()([inputs, dense(inputs)]))
    with pytest.raises(ValueError, match="chain"):
        lipschitz_upper_bound(model)


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
    exact = np.linalg.norm(model.predict(basis, verbose=0).reshape(108, -1).astype("float64"), 2)
    bound = lipschitz_upper_bound(model)
    assert exact * (1 - 1e-6) <= bound <= 1.1 * exact


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
