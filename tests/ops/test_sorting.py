"""GroupSort, MaxMin and FullSort against numpy: values, gradients, shapes, dtypes."""

import numpy as np
import pytest
import tensorflow as tf

from tflip.ops.sorting import full_sort, group_sort, max_min

# (shape, axis): 2-D dense activations and 4-D images, channels last or first.
SHAPES_AND_AXES = [
    ((5, 24), -1),
    ((5, 24), 1),
    ((3, 4, 5, 24), -1),
    ((3, 24, 4, 5), 1),
]
GROUP_SIZES = [1, 2, 3, 4, 8]


def numpy_group_sort_source(x, group_size, axis):
    """Index along `axis` of the input element that lands in each output position."""
    moved = np.moveaxis(x, axis, -1)
    groups = moved.reshape(moved.shape[:-1] + (-1, group_size))
    within = np.argsort(groups, axis=-1, kind="stable")
    offsets = np.arange(0, moved.shape[-1], group_size).reshape(-1, 1)
    source = (within + offsets).reshape(moved.shape)
    return np.moveaxis(source, -1, axis)


def numpy_max_min_source(x, axis):
    """Source index of each MaxMin output: [argmax of each pair, then argmin]."""
    moved = np.moveaxis(x, axis, -1)
    half = moved.shape[-1] // 2
    own = np.broadcast_to(np.arange(half), moved[..., :half].shape)
    first_is_max = moved[..., :half] >= moved[..., half:]
    source = np.concatenate(
        [np.where(first_is_max, own, own + half), np.where(first_is_max, own + half, own)], axis=-1
    )
    return np.moveaxis(source, -1, axis)


def numpy_full_sort_source(x, axis):
    return numpy_group_sort_source(x, x.shape[axis], axis)


def permuted_gradient(source, upstream, axis):
    """Gradient of sum(upstream * x[source]) w.r.t. x: upstream scattered back to its source."""
    gradient = np.zeros_like(upstream)
    np.put_along_axis(gradient, source, upstream, axis=axis)
    return gradient


def value_and_gradient(fn, x, upstream):
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = fn(x)
        loss = tf.reduce_sum(upstream * y)
    return y.numpy(), tape.gradient(loss, x).numpy()


@pytest.mark.parametrize("shape, axis", SHAPES_AND_AXES)
@pytest.mark.parametrize("group_size", GROUP_SIZES)
def test_group_sort_matches_numpy_values_and_gradients(rng, shape, axis, group_size):
    x = rng.standard_normal(shape).astype("float32")
    upstream = rng.standard_normal(shape).astype("float32")
    y, gradient = value_and_gradient(lambda t: group_sort(t, group_size, axis), x, upstream)

    moved = np.moveaxis(x, axis, -1)
    expected = np.sort(moved.reshape(moved.shape[:-1] + (-1, group_size)), axis=-1)
    np.testing.assert_array_equal(y, np.moveaxis(expected.reshape(moved.shape), -1, axis))
    source = numpy_group_sort_source(x, group_size, axis)
    np.testing.assert_array_equal(y, np.take_along_axis(x, source, axis=axis))
    np.testing.assert_array_equal(gradient, permuted_gradient(source, upstream, axis))


@pytest.mark.parametrize(
    "channels, group_size", [(2, 2), (4, 2), (6, 2), (8, 2), (4, 4), (8, 4), (16, 4)]
)
def test_few_channels(rng, channels, group_size):
    # Few channels make view dimensions coincide (e.g. 2 pairs of 2), a past bug.
    x = rng.standard_normal((7, channels)).astype("float32")
    upstream = rng.standard_normal(x.shape).astype("float32")
    y, gradient = value_and_gradient(lambda t: group_sort(t, group_size), x, upstream)
    source = numpy_group_sort_source(x, group_size, -1)
    np.testing.assert_array_equal(y, np.take_along_axis(x, source, axis=-1))
    np.testing.assert_array_equal(gradient, permuted_gradient(source, upstream, -1))


@pytest.mark.parametrize("shape, axis", SHAPES_AND_AXES + [((5, 2), -1), ((5, 4), -1)])
def test_max_min_layout_values_and_gradients(rng, shape, axis):
    x = rng.standard_normal(shape).astype("float32")
    upstream = rng.standard_normal(shape).astype("float32")
    y, gradient = value_and_gradient(lambda t: max_min(t, axis), x, upstream)

    first, second = np.split(x, 2, axis=axis)
    expected = np.concatenate([np.maximum(first, second), np.minimum(first, second)], axis=axis)
    np.testing.assert_array_equal(y, expected)
    # A permutation of each sample's input.
    np.testing.assert_array_equal(
        np.sort(y.reshape(shape[0], -1)), np.sort(x.reshape(shape[0], -1))
    )
    source = numpy_max_min_source(x, axis)
    np.testing.assert_array_equal(gradient, permuted_gradient(source, upstream, axis))


@pytest.mark.parametrize("shape, axis", SHAPES_AND_AXES + [((5, 4), -1), ((5, 2), -1)])
def test_full_sort_matches_numpy(rng, shape, axis):
    x = rng.standard_normal(shape).astype("float32")
    upstream = rng.standard_normal(shape).astype("float32")
    y, gradient = value_and_gradient(lambda t: full_sort(t, axis), x, upstream)
    np.testing.assert_array_equal(y, np.sort(x, axis=axis))
    source = numpy_full_sort_source(x, axis)
    np.testing.assert_array_equal(gradient, permuted_gradient(source, upstream, axis))


SORTS = {
    "group_sort_2": lambda t, axis=-1: group_sort(t, 2, axis),
    "group_sort_3": lambda t, axis=-1: group_sort(t, 3, axis),
    "group_sort_4": lambda t, axis=-1: group_sort(t, 4, axis),
    "max_min": max_min,
    "full_sort": full_sort,
}


@pytest.mark.parametrize("name", SORTS)
def test_ties_route_gradients_as_a_permutation(rng, name):
    # With ties, built-in min/max gradients would send both to one input; ours
    # must stay a permutation of the upstream gradient (norm preserved).
    x = rng.integers(0, 2, size=(16, 12)).astype("float32")
    upstream = rng.standard_normal(x.shape).astype("float32")
    y, gradient = value_and_gradient(SORTS[name], x, upstream)
    np.testing.assert_array_equal(np.sort(y, axis=-1), np.sort(x, axis=-1))
    np.testing.assert_array_equal(np.sort(gradient, axis=-1), np.sort(upstream, axis=-1))


@pytest.mark.parametrize("name", SORTS)
def test_jacobian_is_a_permutation_matrix(rng, name):
    x = tf.constant(rng.standard_normal((3, 12)).astype("float32"))
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = SORTS[name](x)
    jacobian = tape.batch_jacobian(y, x).numpy()
    assert set(np.unique(jacobian)) <= {0.0, 1.0}
    np.testing.assert_array_equal(jacobian.sum(axis=1), 1.0)
    np.testing.assert_array_equal(jacobian.sum(axis=2), 1.0)


@pytest.mark.parametrize("name", ["group_sort_2", "group_sort_4", "max_min"])
@pytest.mark.parametrize("axis", [-1, 1])
def test_jacobian_with_ties_is_a_permutation_matrix(rng, name, axis):
    # Channels last and first take different code paths (transposed slots,
    # halves). Values from {0, 1} tie in most groups.
    shape = (3, 2, 8) if axis == -1 else (3, 8, 2)
    x = tf.constant(rng.integers(0, 2, size=shape).astype("float32"))
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = SORTS[name](x, axis)
    jacobian = tape.batch_jacobian(y, x).numpy().reshape(3, 16, 16)
    assert set(np.unique(jacobian)) <= {0.0, 1.0}
    np.testing.assert_array_equal(jacobian.sum(axis=1), 1.0)
    np.testing.assert_array_equal(jacobian.sum(axis=2), 1.0)
    # The output is the input permuted along the Jacobian.
    flat_x = x.numpy().reshape(3, 16)
    np.testing.assert_array_equal(np.einsum("bij,bj->bi", jacobian, flat_x), y.numpy().reshape(3, 16))


@pytest.mark.parametrize("name", SORTS)
def test_one_lipschitz_in_l2_and_linf(rng, name):
    x = rng.standard_normal((64, 12)).astype("float32")
    scales = rng.uniform(0.01, 3, (64, 1))
    z = (x + rng.standard_normal(x.shape) * scales).astype("float32")
    difference = (SORTS[name](x) - SORTS[name](z)).numpy()
    for order in (2, np.inf):
        out = np.linalg.norm(difference, ord=order, axis=-1)
        inp = np.linalg.norm(x - z, ord=order, axis=-1)
        assert np.all(out <= inp * (1 + 1e-6))


@pytest.mark.parametrize("name", SORTS)
@pytest.mark.parametrize("axis", [-1, 1])
def test_dynamic_shapes_in_tf_function(rng, name, axis):
    image = rng.standard_normal((2, 3, 5, 12)).astype("float32")
    x = image if axis == -1 else np.moveaxis(image, -1, 1)
    spec = [None, None, None, 12] if axis == -1 else [None, 12, None, None]
    upstream = rng.standard_normal(x.shape).astype("float32")

    @tf.function(input_signature=[tf.TensorSpec(spec, tf.float32)] * 2)
    def graph(t, w):
        with tf.GradientTape() as tape:
            tape.watch(t)
            y = SORTS[name](t, axis=axis)
            loss = tf.reduce_sum(w * y)
        return y, tape.gradient(loss, t)

    y, gradient = graph(x, upstream)
    assert graph.get_concrete_function().structured_outputs[0].shape.as_list() == spec
    expected_y, expected_gradient = value_and_gradient(
        lambda t: SORTS[name](t, axis=axis), x, upstream
    )
    np.testing.assert_array_equal(y, expected_y)
    np.testing.assert_array_equal(gradient, expected_gradient)


@pytest.mark.parametrize("name", SORTS)
def test_xla_matches_eager(rng, name):
    x = rng.standard_normal((2, 3, 3, 12)).astype("float32")
    upstream = rng.standard_normal(x.shape).astype("float32")

    @tf.function(jit_compile=True)
    def compiled(t):
        with tf.GradientTape() as tape:
            tape.watch(t)
            y = SORTS[name](t)
            loss = tf.reduce_sum(upstream * y)
        return y, tape.gradient(loss, t)

    y, gradient = compiled(tf.constant(x))
    expected_y, expected_gradient = value_and_gradient(SORTS[name], x, upstream)
    np.testing.assert_array_equal(y, expected_y)
    np.testing.assert_array_equal(gradient, expected_gradient)


@pytest.mark.parametrize(
    "name, source",
    [
        ("group_sort_2", lambda x: numpy_group_sort_source(x, 2, -1)),
        ("group_sort_4", lambda x: numpy_group_sort_source(x, 4, -1)),
        ("max_min", lambda x: numpy_max_min_source(x, -1)),
        ("full_sort", lambda x: numpy_full_sort_source(x, -1)),
    ],
)
def test_second_order_gradient_penalty(rng, name, source):
    """The gradient of a gradient penalty (WGAN-GP) through the activation.

    Reference: the same network with the activation replaced by a gather along
    the (locally constant) permutation numpy finds.
    """
    inputs = tf.constant(rng.standard_normal((6, 3)).astype("float32"))
    kernel = tf.Variable(rng.standard_normal((3, 8)).astype("float32"))
    readout = tf.constant(rng.standard_normal((8, 1)).astype("float32"))
    permutation = source((inputs @ kernel).numpy())

    def penalty_gradient(activation):
        with tf.GradientTape() as outer:
            with tf.GradientTape() as inner:
                inner.watch(inputs)
                critic = activation(inputs @ kernel) @ readout
            input_gradient = inner.gradient(critic, inputs)
            penalty = tf.reduce_sum((tf.norm(input_gradient, axis=-1) - 1.0) ** 2)
        return outer.gradient(penalty, kernel).numpy()

    reference = penalty_gradient(lambda h: tf.gather(h, permutation, axis=1, batch_dims=1))
    np.testing.assert_allclose(penalty_gradient(SORTS[name]), reference, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float64"])
@pytest.mark.parametrize("name", SORTS)
def test_low_precision_is_exact(rng, dtype, name):
    x = tf.cast(rng.standard_normal((8, 12)), dtype)
    x_float = tf.cast(x, "float64").numpy()
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = SORTS[name](x)
    assert y.dtype == x.dtype
    assert tape.gradient(y, x).dtype == x.dtype
    expected = SORTS[name](tf.constant(x_float)).numpy()
    np.testing.assert_array_equal(tf.cast(y, "float64").numpy(), expected)


@pytest.mark.parametrize("group_size", [0, -2, 2.5, True, "2", None])
def test_bad_group_size(group_size):
    with pytest.raises(ValueError, match="group_size"):
        group_sort(tf.zeros((2, 8)), group_size)


def test_group_size_must_divide_the_channels():
    with pytest.raises(ValueError, match="group_size"):
        group_sort(tf.zeros((2, 6)), 4)


def test_max_min_needs_even_channels():
    with pytest.raises(ValueError, match="axis 1.*7"):
        max_min(tf.zeros((2, 7)))


@pytest.mark.parametrize("fn", [lambda t: group_sort(t, 2), max_min, full_sort])
def test_channel_axis_must_be_static(fn):
    @tf.function(input_signature=[tf.TensorSpec([None, None])])
    def graph(t):
        return fn(t)

    with pytest.raises(ValueError, match="static"):
        graph.get_concrete_function()


@pytest.mark.parametrize("axis", [2, -3, 1.0, "1"])
def test_bad_axis(axis):
    with pytest.raises(ValueError, match="axis"):
        full_sort(tf.zeros((2, 4)), axis=axis)
