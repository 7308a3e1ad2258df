"""tflip._validation: one check per kind of argument, each raising ValueError naming the argument."""

import numpy as np
import pytest
import tensorflow as tf

from tflip import _validation
from tflip.gradients import critic_values, input_gradients, values_and_input_gradients
from tflip.models.mlp import check_width, width_multiple


@pytest.mark.parametrize("value", [-1, 1.0, True, "1", None])
def test_non_negative_int_and_random_seed_reject(value):
    with pytest.raises(ValueError, match="`depth`"):
        _validation.non_negative_int("depth", value)
    with pytest.raises(ValueError, match="`seed`"):
        _validation.random_seed("seed", value)


def test_non_negative_int_and_random_seed_accept():
    assert _validation.non_negative_int("depth", 0) == 0 and _validation.random_seed("seed", np.int64(7)) == 7
    assert type(_validation.random_seed("seed", np.int64(7))) is int


def test_positive_int_refuses_a_minimum_below_one():
    assert _validation.positive_int("size", 2, minimum=2) == 2
    with pytest.raises(ValueError, match="`size` must be an integer >= 2"):
        _validation.positive_int("size", 1, minimum=2)
    with pytest.raises(ValueError, match="non_negative_int"):
        _validation.positive_int("size", 0, minimum=0)


def test_boolean():
    assert _validation.boolean("flag", False) is False
    with pytest.raises(ValueError, match="`flag`"):
        _validation.boolean("flag", 1)


@pytest.mark.parametrize("value", [(1.0, 1.0), (2, 1), (0, float("inf")), (float("nan"), 1), (1,), 3, ("a", 2),
                                   (True, 2)])
def test_interval_rejects(value):
    with pytest.raises(ValueError, match="`clip`"):
        _validation.interval("clip", value)


def test_interval_accepts_and_positive_excludes_zero():
    assert _validation.interval("clip", (-1, 2)) == (-1.0, 2.0)
    assert _validation.interval("epsilon", np.array([0.5, 2.0]), positive=True) == (0.5, 2.0)
    with pytest.raises(ValueError, match="0 < low < high"):
        _validation.interval("epsilon", (0.0, 2.0), positive=True)


@pytest.mark.parametrize("activation, group_size, multiple", [
    ("relu", 4, 1), ("fullsort", 4, 1), ("maxmin", 4, 2), ("groupsort", 3, 3), ("groupsort", 4, 4)])
def test_width_multiple(activation, group_size, multiple):
    assert width_multiple(activation, group_size) == multiple
    assert check_width(6 * multiple, activation, group_size) == 6 * multiple
    if multiple > 1:
        with pytest.raises(ValueError, match=f"`--width` must be a multiple of {multiple}"):
            check_width(6 * multiple + 1, activation, group_size, name="--width")


def test_values_and_input_gradients_of_a_quadratic():
    """f(x) = sum(x^2) per sample: gradient 2x, values independent of the batch."""

    def critic(x, training=False):
        return tf.reduce_sum(tf.square(x), axis=1, keepdims=True)

    x = tf.constant([[1.0, -2.0], [0.5, 3.0], [0.0, 0.0]])
    values, gradients = values_and_input_gradients(critic, x)
    np.testing.assert_allclose(values, [5.0, 9.25, 0.0])
    np.testing.assert_allclose(gradients, 2 * x.numpy())
    np.testing.assert_allclose(input_gradients(critic, x), 2 * x.numpy())
    with pytest.raises(ValueError, match="one value per sample"):
        critic_values(lambda x, training: tf.concat([x, x], 1), x)
