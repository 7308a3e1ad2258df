"""LInfProjectedDense: L-infinity Lipschitz bound, both projection modes, shared layer checks."""

import keras
import numpy as np
import pytest

from tests.layer_checks import (
    check_mirrored_training,
    check_mixed_precision,
    check_save_load_roundtrip,
    check_sequential_and_graph_modes,
)
from tflip.layers import LInfBallConstraint, LInfProjectedDense, LipschitzLayer
from tflip.ops.projections import project_linf_operator

PROJECTIONS = ["forward", "constraint"]
# Unit-variance weights: every column of a 10-input kernel is far outside the ball.
LARGE_KERNEL = keras.initializers.RandomNormal(stddev=1.0)


def linf_operator_norm_np(kernel):
    return np.abs(np.asarray(kernel, np.float64)).sum(axis=0).max()


def built_layer(input_dim=10, **kwargs):
    kwargs.setdefault("kernel_initializer", LARGE_KERNEL)
    layer = LInfProjectedDense(**{"units": 6, **kwargs})
    layer.build((None, input_dim))
    return layer


def test_is_a_lipschitz_layer():
    assert isinstance(built_layer(), LipschitzLayer)


@pytest.mark.parametrize("projection", PROJECTIONS)
@pytest.mark.parametrize("lipschitz", [0.3, 1.0, 2.5])
def test_operator_norm_bounded_and_layer_is_linf_lipschitz(rng, projection, lipschitz):
    layer = built_layer(lipschitz=lipschitz, projection=projection, activation="relu")
    kernel = np.asarray(layer.effective_kernel())
    assert linf_operator_norm_np(kernel) <= lipschitz + 1e-6
    # Projection from far outside lands on the boundary: the bound is tight.
    np.testing.assert_allclose(float(layer.operator_norm()), lipschitz, rtol=1e-5)
    x = rng.standard_normal((500, 10)).astype("float32")
    y = x + rng.uniform(-1, 1, size=x.shape).astype("float32") * rng.uniform(0, 2, (500, 1)).astype("float32")
    # The worst case for the linear part: y - x = sign of the largest column.
    worst = np.argmax(np.abs(kernel).sum(axis=0))
    x[0], y[0] = 0.0, np.sign(kernel[:, worst])
    output_gap = np.abs(np.asarray(layer(x)) - np.asarray(layer(y))).max(axis=-1)
    input_gap = np.abs(x - y).max(axis=-1)
    assert np.all(output_gap <= lipschitz * input_gap * (1 + 1e-5) + 1e-6)
    # That pair attains the bound on the linear part (before the ReLU).
    np.testing.assert_allclose(np.abs((y[0] - x[0]) @ kernel).max(), lipschitz, rtol=1e-5)


@pytest.mark.parametrize("projection", PROJECTIONS)
def test_effective_kernel_is_the_column_projection(projection):
    layer = built_layer(lipschitz=1.0, projection=projection)
    if projection == "forward":
        raw = np.asarray(layer.kernel)
        assert linf_operator_norm_np(raw) > 1.0  # the variable itself stays unconstrained
        np.testing.assert_array_equal(layer.effective_kernel(), project_linf_operator(raw, 1.0))
    else:
        # The initial value is projected, and the forward pass reads the variable as is.
        assert linf_operator_norm_np(layer.kernel) <= 1.0 + 1e-6
        np.testing.assert_array_equal(layer.effective_kernel(), layer.kernel)


@pytest.mark.parametrize("projection", PROJECTIONS)
def test_kernel_inside_the_ball_is_used_unchanged(rng, projection):
    small = keras.initializers.RandomUniform(-0.05, 0.05)  # column L1 <= 0.5
    layer = built_layer(lipschitz=1.0, projection=projection, kernel_initializer=small, bias_initializer="ones")
    kernel = np.asarray(layer.kernel)
    np.testing.assert_array_equal(layer.effective_kernel(), kernel)
    x = rng.standard_normal((4, 10)).astype("float32")
    np.testing.assert_allclose(layer(x), x @ kernel + 1.0, rtol=1e-6)


def test_forward_pass_never_writes_the_variable(rng):
    layer = built_layer(lipschitz=0.5)
    before = np.array(layer.kernel)
    x = rng.standard_normal((8, 10)).astype("float32")
    layer(x, training=True)
    layer(x, training=False)
    np.testing.assert_array_equal(layer.kernel, before)


def test_forward_projection_is_trained_through(rng):
    keras.utils.set_random_seed(3)
    layer = LInfProjectedDense(6, lipschitz=0.5, kernel_initializer=LARGE_KERNEL)
    model = keras.Sequential([keras.Input((10,)), layer])
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    x = rng.standard_normal((32, 10)).astype("float32")
    target = rng.standard_normal((32, 6)).astype("float32")
    before = np.array(model.layers[0].kernel)
    model.fit(x, target, epochs=2, batch_size=32, verbose=0)
    # Gradients flow through the projection into the raw variable, which stays
    # outside the ball while the effective kernel stays on it.
    assert not np.array_equal(layer.kernel, before)
    assert np.all(np.isfinite(layer.kernel))
    assert linf_operator_norm_np(layer.kernel) > 0.5
    assert float(layer.operator_norm()) <= 0.5 + 1e-6


def test_constraint_mode_keeps_the_variable_in_the_ball_during_fit(rng):
    model = keras.Sequential([keras.Input((10,)), LInfProjectedDense(6, lipschitz=0.5, projection="constraint")])

    def grow_outputs(y_true, y_pred):  # pushes every column outward, against the bound
        return -keras.ops.mean(y_pred, axis=-1)

    model.compile(optimizer=keras.optimizers.SGD(1.0), loss=grow_outputs)
    x = np.abs(rng.standard_normal((32, 10))).astype("float32")
    model.fit(x, np.zeros((32, 1), "float32"), epochs=3, batch_size=16, verbose=0)
    layer = model.layers[0]
    norm = linf_operator_norm_np(layer.kernel)
    assert norm <= 0.5 + 1e-6
    assert norm >= 0.5 * (1 - 1e-5)  # the constraint was active, not trivially satisfied
    np.testing.assert_array_equal(layer.effective_kernel(), layer.kernel)


def test_constraint_projects_columns_and_round_trips(rng):
    constraint = LInfBallConstraint(2.0)
    kernel = rng.standard_normal((10, 4)).astype("float32")
    np.testing.assert_array_equal(constraint(keras.Variable(kernel)), project_linf_operator(kernel, 2.0))
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(constraint))
    assert isinstance(restored, LInfBallConstraint) and restored.radius == 2.0


@pytest.mark.parametrize("projection", PROJECTIONS)
def test_lipschitz_upper_bound(projection):
    layer = built_layer(lipschitz=1.0, projection=projection)
    kernel = np.asarray(layer.effective_kernel(), np.float64)
    for norm in ("inf", "INF", np.inf, float("inf")):
        bound = layer.lipschitz_upper_bound(norm)
        assert isinstance(bound, float)
        np.testing.assert_allclose(bound, linf_operator_norm_np(kernel), rtol=1e-6)
    assert layer.lipschitz_upper_bound() == layer.lipschitz_upper_bound("inf")
    np.testing.assert_allclose(layer.lipschitz_upper_bound(2), np.linalg.norm(kernel, 2), rtol=1e-12)
    for bad in (1, 3, "fro", None, True):
        with pytest.raises(ValueError, match="norm"):
            layer.lipschitz_upper_bound(bad)


def test_rank_3_inputs(rng):
    layer = LInfProjectedDense(5)
    out = layer(rng.standard_normal((2, 3, 7)).astype("float32"))
    assert tuple(out.shape) == (2, 3, 5) == layer.compute_output_shape((2, 3, 7))


def test_get_config_round_trip():
    layer = LInfProjectedDense(
        7,
        lipschitz=2.0,
        projection="CONSTRAINT",
        activation="tanh",
        use_bias=False,
        kernel_initializer=keras.initializers.RandomNormal(stddev=0.3),
        kernel_regularizer=keras.regularizers.L2(0.01),
        bias_regularizer="l1",
        name="linf",
    )
    config = layer.get_config()
    assert config["projection"] == "constraint" and config["lipschitz"] == 2.0
    clone = LInfProjectedDense.from_config(config)
    assert clone.get_config() == config
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(restored) is LInfProjectedDense and restored.get_config() == config


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"units": 0}, "units"),
        ({"units": 2.5}, "units"),
        ({"units": True}, "units"),
        ({"units": 3, "lipschitz": 0.0}, "lipschitz"),
        ({"units": 3, "lipschitz": -1.0}, "lipschitz"),
        ({"units": 3, "lipschitz": float("inf")}, "lipschitz"),
        ({"units": 3, "lipschitz": "1"}, "lipschitz"),
        ({"units": 3, "projection": "backward"}, "projection"),
        ({"units": 3, "projection": None}, "projection"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LInfProjectedDense(**kwargs)


def test_bad_constraint_radius():
    with pytest.raises(ValueError, match="radius"):
        LInfBallConstraint(0.0)


def make_factory(projection):
    return lambda: LInfProjectedDense(4, lipschitz=0.5, projection=projection, kernel_initializer=LARGE_KERNEL)


@pytest.mark.parametrize("projection", PROJECTIONS)
def test_sequential_and_graph_modes(rng, projection):
    check_sequential_and_graph_modes(make_factory(projection), rng.standard_normal((6, 10)).astype("float32"))


@pytest.mark.parametrize("projection", PROJECTIONS)
def test_save_load_roundtrip(rng, tmp_path, projection):
    x = rng.standard_normal((6, 10)).astype("float32")
    restored = check_save_load_roundtrip(make_factory(projection), x, tmp_path)
    assert restored.layers[-1].projection == projection


@pytest.mark.parametrize("projection", PROJECTIONS)
def test_mirrored_training(rng, projection):
    single, mirrored = check_mirrored_training(make_factory(projection), rng.standard_normal((8, 10)).astype("float32"))
    for model in (single, mirrored):
        assert float(model.layers[-1].operator_norm()) <= 0.5 + 1e-6


@pytest.mark.parametrize("projection", PROJECTIONS)
@pytest.mark.parametrize("policy, rtol", [("mixed_float16", 5e-3), ("mixed_bfloat16", 3e-2)])
def test_mixed_precision(rng, projection, policy, rtol):
    check_mixed_precision(make_factory(projection), rng.standard_normal((6, 10)).astype("float32"), policy, rtol)


def test_mixed_precision_projects_the_float32_kernel(rng):
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    layer = built_layer(lipschitz=0.5)
    # The norm is computed from the float32 variable, not a bfloat16 rounding of it.
    assert layer.kernel.dtype == "float32" and layer.effective_kernel().dtype == "float32"
    assert float(layer.operator_norm()) <= 0.5 + 1e-6
    assert layer(rng.standard_normal((2, 10)).astype("float32")).dtype == "bfloat16"
