"""L1-ball and L-infinity operator-norm projections against an independent reference."""

import numpy as np
import pytest
import tensorflow as tf

from tflip.ops.projections import (
    linf_operator_norm,
    project_l1_ball,
    project_linf_operator,
)


def reference_l1_projection(v, radius, axis=-1):
    """Projection onto the L1 ball of every vector along `axis`, by bisection.

    Deliberately unlike Condat's sort-based algorithm: in float64, it finds the
    tau with sum(max(|v| - tau, 0)) = radius by halving [0, max|v|] 200 times,
    for all vectors at once.
    """
    v = np.moveaxis(np.asarray(v, np.float64), axis, -1)
    magnitudes = np.abs(v)
    radius = np.broadcast_to(np.asarray(radius, np.float64), v.shape[:-1] + (1,))
    low = np.zeros_like(radius)
    high = magnitudes.max(axis=-1, keepdims=True)
    for _ in range(200):
        tau = 0.5 * (low + high)
        too_big = np.maximum(magnitudes - tau, 0.0).sum(axis=-1, keepdims=True) > radius
        low = np.where(too_big, tau, low)
        high = np.where(too_big, high, tau)
    projected = np.sign(v) * np.maximum(magnitudes - 0.5 * (low + high), 0.0)
    inside = magnitudes.sum(axis=-1, keepdims=True) <= radius
    return np.moveaxis(np.where(inside, v, projected), -1, axis)


def l1_norms(x, axis=-1):
    return np.abs(np.asarray(x, np.float64)).sum(axis=axis)


def assert_matches_reference(v, radius, axis=-1):
    result = np.asarray(project_l1_ball(v, radius, axis=axis))
    expected = reference_l1_projection(v, radius, axis)
    # float32 cumulative sums of up to ~100 O(1) entries: a few 1e-6 of error.
    np.testing.assert_allclose(result, expected, atol=1e-5 * max(1.0, radius), rtol=0)
    return result


@pytest.mark.parametrize("size", [1, 2, 7, 100])
@pytest.mark.parametrize("radius", [0.01, 0.5, 1.0, 3.0, 40.0])
def test_matches_bisection_reference(rng, size, radius):
    # Rows of very different scales, so each radius has rows inside and outside.
    scales = np.exp(rng.uniform(-4, 3, size=(300, 1)))
    v = (rng.standard_normal((300, size)) * scales).astype("float32")
    assert_matches_reference(v, radius)


def test_matches_reference_with_ties_zeros_and_heavy_tails(rng):
    ties = rng.integers(-3, 4, size=(50, 12)).astype("float32")
    sparse = rng.standard_normal((50, 12)).astype("float32") * (rng.random((50, 12)) < 0.2)
    heavy = rng.standard_cauchy((50, 12)).astype("float32")
    for v in (ties, sparse, heavy, np.zeros((3, 12), "float32")):
        assert_matches_reference(v, 1.5)


@pytest.mark.parametrize("axis", [0, 1, 2, -1, -2, -3])
def test_batched_3d_along_any_axis(rng, axis):
    v = rng.standard_normal((4, 5, 6)).astype("float32")
    result = assert_matches_reference(v, 1.0, axis=axis)
    assert result.shape == v.shape
    assert np.all(l1_norms(result, axis) <= 1.0 * (1 + 1e-6))


def test_batched_2d_along_axis_0(rng):
    v = rng.standard_normal((9, 30)).astype("float32")
    assert_matches_reference(v, 2.0, axis=0)


def test_one_radius_per_vector(rng):
    v = rng.standard_normal((20, 8)).astype("float32")
    radii = rng.uniform(0.1, 8.0, size=(20, 1)).astype("float32")
    result = np.asarray(project_l1_ball(v, radii))
    expected = reference_l1_projection(v, radii)
    np.testing.assert_allclose(result, expected, atol=1e-5 * 8.0, rtol=0)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
def test_exact_identity_inside_the_ball(rng, dtype):
    v = rng.standard_normal((200, 16))
    # L1 norms spread over (0, 0.999 * radius): strictly inside, well above rounding.
    v *= rng.uniform(0.0, 0.999, size=(200, 1)) * 2.0 / l1_norms(v)[:, None]
    v = tf.constant(v, dtype=dtype)
    result = project_l1_ball(v, 2.0)
    assert result.dtype == v.dtype
    np.testing.assert_array_equal(tf.cast(result, tf.float64), tf.cast(v, tf.float64))


def test_identity_inside_mixed_with_projected_rows(rng):
    v = rng.standard_normal((100, 10)).astype("float32")
    v[::2] *= 0.5 / l1_norms(v[::2])[:, None]  # even rows at L1 ~ 0.5, odd rows ~ 8
    result = np.asarray(project_l1_ball(v, 1.0))
    np.testing.assert_array_equal(result[::2], v[::2])
    np.testing.assert_allclose(l1_norms(result[1::2]), 1.0, rtol=1e-6)


def test_on_the_boundary(rng):
    # Dyadic entries: the L1 norm is exactly the radius in any summation order.
    exact = np.array([[0.5, -0.25, 0.25], [-1.0, 0.0, 0.0], [0.125, 0.375, -0.5]], "float32")
    np.testing.assert_array_equal(project_l1_ball(exact, 1.0), exact)
    # Random vectors scaled onto the sphere: unchanged up to float32 rounding.
    v = rng.standard_normal((100, 20))
    v = (3.0 * v / l1_norms(v)[:, None]).astype("float32")
    result = assert_matches_reference(v, 3.0)
    np.testing.assert_allclose(result, v, atol=1e-6, rtol=0)


@pytest.mark.parametrize("radius", [0.1, 1.0, 7.0])
def test_result_in_ball_and_on_sphere_when_outside(rng, radius):
    v = rng.standard_normal((200, 25)).astype("float32") * 10.0
    result = np.asarray(project_l1_ball(v, radius))
    norms = l1_norms(result)
    assert np.all(norms <= radius * (1 + 1e-6))
    # Each kept entry |v_i| - tau is resolved to ulp(|v_i|) only, hence the tolerance.
    resolution = 8 * np.finfo(np.float32).eps * np.abs(v).max(axis=-1)
    assert np.all(np.abs(norms - radius) <= resolution)
    # The projection shrinks magnitudes and never flips a sign.
    assert np.all(np.abs(result) <= np.abs(v))
    assert np.all(result * v >= 0)


@pytest.mark.parametrize("scale, radius", [(1e4, 0.01), (1e3, 1.0), (0.1, 1.0)])
def test_feasible_even_when_float32_cannot_resolve_the_threshold(rng, scale, radius):
    # With |v| ~ 1e6 * radius, ulp(|v_i|) exceeds the radius: |v_i| - tau alone
    # would overshoot the ball by far more than rounding.
    v = rng.standard_normal((200, 300)).astype("float32") * scale
    result = np.asarray(project_l1_ball(v, radius))
    assert np.all(l1_norms(result) <= radius * (1 + 1e-6))


def test_idempotent(rng):
    v = rng.standard_normal((100, 12, 3)).astype("float32") * rng.uniform(0.01, 5, (100, 1, 1))
    once = project_l1_ball(v, 1.0, axis=1)
    twice = project_l1_ball(once, 1.0, axis=1)
    np.testing.assert_allclose(twice, once, atol=1e-6, rtol=0)


def test_distance_is_minimal_among_feasible_points(rng):
    radius = 1.5
    v = rng.standard_normal((30, 6)).astype("float32") * 3.0
    result = np.asarray(project_l1_ball(v, radius), np.float64)
    best = np.linalg.norm(result - v, axis=-1)
    # Feasible competitors: random points of the ball, points of the sphere, and
    # small feasible perturbations of the answer itself (the hardest to beat).
    directions = rng.standard_normal((30, 500, 6))
    sphere = radius * directions / l1_norms(directions)[..., None]
    ball = sphere * rng.uniform(0, 1, size=(30, 500, 1))
    nearby = reference_l1_projection(result[:, None, :] + 0.05 * directions, radius)
    for candidates in (sphere, ball, nearby):
        assert np.all(l1_norms(candidates) <= radius * (1 + 1e-12))
        distances = np.linalg.norm(candidates - v[:, None, :], axis=-1)
        assert np.all(best[:, None] <= distances + 1e-5)


def test_gradients_are_finite_and_match_finite_differences(rng):
    batch = np.concatenate(
        [
            rng.standard_normal((4, 6)) * 5.0,  # outside
            rng.standard_normal((2, 6)) * 0.01,  # inside
            np.zeros((1, 6)),
            np.array([[2.0, 2.0, -2.0, 0.0, 1.0, 1.0]]),  # ties
        ]
    ).astype("float32")
    v = tf.constant(batch)
    weights = tf.constant(rng.standard_normal(batch.shape).astype("float32"))
    with tf.GradientTape() as tape:
        tape.watch(v)
        loss = tf.reduce_sum(weights * project_l1_ball(v, 1.0))
    gradient = tape.gradient(loss, v)
    assert np.all(np.isfinite(gradient))
    # Inside the ball the map is the identity.
    np.testing.assert_array_equal(gradient[4:7], weights[4:7])
    # Outside, with distinct magnitudes, the Jacobian is smooth: check it numerically.
    outside = tf.constant(rng.standard_normal((1, 6)) * 5.0, tf.float64)
    theoretical, numerical = tf.test.compute_gradient(lambda t: project_l1_ball(t, 1.0), [outside])
    np.testing.assert_allclose(theoretical[0], numerical[0], atol=1e-6)


def test_graph_and_xla_with_unknown_batch(rng):
    v = rng.standard_normal((7, 9)).astype("float32") * 2.0
    eager = np.asarray(project_l1_ball(v, 1.0))
    signature = [tf.TensorSpec((None, 9), tf.float32)]
    graph = tf.function(lambda t: project_l1_ball(t, 1.0), input_signature=signature)
    xla = tf.function(lambda t: project_l1_ball(t, 1.0), input_signature=signature, jit_compile=True)
    np.testing.assert_allclose(graph(v), eager, atol=1e-6)
    np.testing.assert_allclose(xla(v), eager, atol=1e-6)


@pytest.mark.parametrize("dtype, atol", [("float16", 2e-3), ("bfloat16", 2e-2)])
def test_low_precision_is_projected_in_float32_and_cast_back(rng, dtype, atol):
    v = tf.constant(rng.standard_normal((50, 64)) * 2.0, dtype=dtype)
    result = project_l1_ball(v, 1.0)
    assert result.dtype == v.dtype
    expected = reference_l1_projection(tf.cast(v, tf.float64), 1.0)
    np.testing.assert_allclose(tf.cast(result, tf.float64), expected, atol=atol, rtol=0)


def test_linf_operator_norm(rng):
    kernel = rng.standard_normal((7, 4)).astype("float32")
    np.testing.assert_allclose(linf_operator_norm(kernel), np.abs(kernel).sum(axis=0).max(), rtol=1e-6)
    # It is the L-infinity Lipschitz constant of x -> x @ kernel, attained at x = sign(column).
    worst_column = np.argmax(np.abs(kernel).sum(axis=0))
    x = np.sign(kernel[:, worst_column])[None, :]
    np.testing.assert_allclose(np.abs(x @ kernel).max(), linf_operator_norm(kernel), rtol=1e-6)
    assert linf_operator_norm(tf.constant(kernel, tf.float16)).dtype == tf.float32


def test_project_linf_operator_projects_each_column(rng):
    kernel = rng.standard_normal((10, 6)).astype("float32")
    kernel[:, :2] *= 0.05  # two columns already inside
    result = np.asarray(project_linf_operator(kernel, 2.0))
    np.testing.assert_array_equal(result[:, :2], kernel[:, :2])
    np.testing.assert_allclose(result, reference_l1_projection(kernel, 2.0, axis=0), atol=2e-5, rtol=0)
    assert float(linf_operator_norm(result)) <= 2.0 * (1 + 1e-6)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: project_l1_ball([1.0, 2.0], 0.0), "radius"),
        (lambda: project_l1_ball([1.0, 2.0], -1.0), "radius"),
        (lambda: project_l1_ball([1.0, 2.0], 1.0, axis=1), "axis"),
        (lambda: project_l1_ball([1, 2], 1.0), "v"),
        (lambda: project_l1_ball(3.0, 1.0), "v"),
        (lambda: project_linf_operator(np.ones((2, 2, 2)), 1.0), "kernel"),
        (lambda: linf_operator_norm(np.ones(3)), "kernel"),
    ],
)
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()
