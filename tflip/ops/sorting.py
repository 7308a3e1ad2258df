"""Sorting activations: GroupSort, MaxMin and FullSort.

Anil, Lucas & Grosse, "Sorting Out Lipschitz Function Approximation"
(ICML 2019), section 4.1. Each output is a permutation of its input, so these
activations are 1-Lipschitz in every p-norm and their Jacobian is a
permutation matrix: they preserve the norm of the gradient, unlike ReLU.

Speed. `tf.sort` (a top-k kernel) is an order of magnitude slower than
elementwise ops on small groups, so pairs (MaxMin, GroupSort(2)) and groups
of 4 are sorted with `minimum`/`maximum` comparators only; larger groups use
`tf.sort`. `benchmarks/bench_activations.py` times them against ReLU.

Gradients. Every comparator decides once which input lands in which slot
and routes the output gradient back along the same permutation. This is also
right on ties, where the built-in gradients of `tf.minimum` and `tf.maximum`
would both send their gradient to the same input (breaking norm
preservation, and ties are common in float16/bfloat16).
"""

import numbers

import numpy as np
import tensorflow as tf

from tflip._validation import positive_int


def group_sort(x, group_size, axis=-1):
    """Sorts each contiguous group of `group_size` channels ascending.

    Args:
        x: A floating-point tensor of static rank; the size of `axis` must be
            static and divisible by `group_size`. Other dimensions may be dynamic.
        group_size: Channels per group, an int >= 1. Group `i` holds channels
            `[i * group_size, (i + 1) * group_size)` of `axis`. `1` is the
            identity; the channel count of `axis` is `full_sort`.
        axis: The channel axis.

    Returns:
        A tensor of the shape and dtype of `x`.
    """
    x = tf.convert_to_tensor(x)
    axis, channels = channel_axis(x.shape, axis)
    group_size = check_group_size(group_size, channels, axis)
    if group_size == 1:
        return tf.identity(x)
    if group_size == 2:
        return _sort_pairs(x, axis, stride=1)
    if group_size == 4:
        return _sort_groups_of_four(x, axis, channels)
    return _sort_groups(x, axis, channels, group_size)


def max_min(x, axis=-1):
    """MaxMin activation (GroupSort with groups of 2, OPLU) on the two halves of `axis`.

    Layout: with `a` the first and `b` the second half of the channels,
    the output is `concat([maximum(a, b), minimum(a, b)], axis)`: channel `i`
    of the first half holds the larger and channel `i` of the second half the
    smaller of the pair `(a[i], b[i])`. This pairs channel `i` with channel
    `i + C/2` instead of `2i` with `2i + 1` (as `group_sort(x, 2)` does) and puts
    the maximum first, so it equals `group_sort(x, 2)` up to a fixed channel
    permutation; a learned linear layer on either side absorbs the difference.
    Pairing the halves keeps every memory access contiguous and makes this the
    fastest sorting activation.

    Args:
        x: A floating-point tensor of static rank; the size of `axis` must be
            static and even.
        axis: The channel axis.

    Returns:
        A tensor of the shape and dtype of `x`.
    """
    x = tf.convert_to_tensor(x)
    axis, channels = channel_axis(x.shape, axis)
    check_even_channels(channels, axis)
    return _max_min_halves(x, axis, channels)


def full_sort(x, axis=-1):
    """Sorts the whole of `axis` ascending (GroupSort with a single group).

    Args:
        x: A floating-point tensor of static rank with a static size of `axis`.
        axis: The axis to sort.

    Returns:
        A tensor of the shape and dtype of `x`.
    """
    x = tf.convert_to_tensor(x)
    _, channels = channel_axis(x.shape, axis)
    return group_sort(x, channels, axis)


# Argument checks, shared with the layers so that they fail at `build` time.


def check_axis(axis):
    """Returns `axis` as an int, or raises if it is not an integer."""
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        # ValueError for every bad argument, as in `tflip._validation`.
        raise ValueError(f"`axis` must be an int, got {axis!r}.")  # noqa: TRY004
    return int(axis)


def channel_axis(shape, axis):
    """Returns `(axis, channels)`: `axis` made non-negative and its static size in `shape`."""
    shape = tf.TensorShape(shape)
    axis = check_axis(axis)
    if shape.rank is None:
        raise ValueError("Sorting activations need an input of known rank.")
    if not -shape.rank <= axis < shape.rank:
        raise ValueError(f"`axis`={axis} is out of range for an input of rank {shape.rank}.")
    axis %= shape.rank
    channels = shape[axis]
    if channels is None:
        raise ValueError(f"The size of the channel axis {axis} must be static, got shape {shape}.")
    return axis, channels


def check_group_size(group_size, channels, axis):
    """Returns `group_size` as an int, or raises unless it is >= 1 and divides `channels`."""
    group_size = positive_int("group_size", group_size)
    if channels % group_size:
        raise ValueError(
            f"`group_size`={group_size} must divide the size {channels} of the channel axis {axis}."
        )
    return group_size


def check_even_channels(channels, axis):
    """Raises unless MaxMin can split the channel axis into two halves."""
    if channels % 2:
        raise ValueError(f"MaxMin needs an even size of the channel axis {axis}, got {channels}.")


def _view_shape(x, axis, channel_dims):
    """Shape of a view `(outer, *channel_dims[, trailing])` of `x`.

    `outer` merges the axes before `axis` and `trailing` those after it
    (omitted when statically 1); `channel_dims` factorizes the channel axis.
    TensorFlow's reverse, unstack and broadcasting kernels are much faster on
    such a low-rank view than on one with many (or size-1) dimensions.
    """
    dims = [_merged_size(x, slice(0, axis)), *channel_dims]
    if _has_trailing_axes(x, axis):
        dims.append(_merged_size(x, slice(axis + 1, None)))
    return tf.stack(dims)


def _merged_size(x, axes):
    """The product of the sizes of `x.shape[axes]`, static if they are known."""
    shape = x.shape[axes]
    if shape.is_fully_defined():
        return shape.num_elements()
    return tf.reduce_prod(tf.shape(x)[axes])


def _has_trailing_axes(x, axis):
    """Whether the axes after `axis` are not statically of total size 1."""
    trailing = x.shape[axis + 1 :]
    return not (trailing.is_fully_defined() and trailing.num_elements() == 1)


def _sort_pairs(x, axis, stride, descending=False):
    """Sorts the channel pairs `(c, c + stride)`, for every `c` with `c // stride` even.

    `stride=1` pairs adjacent channels (GroupSort with groups of 2);
    `stride=C/2` pairs the two halves (MaxMin, with `descending=True`).

    The whole tensor is processed at once: each channel is compared with its
    partner, obtained by reversing the pair axis of a view, and a per-channel
    mask says whether it takes the minimum or the maximum. Splitting into two
    half-size tensors instead needs strided slices and an interleave that are
    several times slower than elementwise ops (without XLA).
    """
    channels = x.shape[axis]
    blocks = channels // (2 * stride)
    # Size-1 dimensions make XLA pick a transposed layout and copy, so drop them.
    pair_dims = [d for d in (blocks, 2, stride) if d > 1]
    pair_axis = 2 if blocks > 1 else 1
    pair_view = _view_shape(x, axis, pair_dims)
    channel_view = _view_shape(x, axis, [channels])
    takes_min = (np.arange(channels) // stride % 2 == 0) != descending
    if _has_trailing_axes(x, axis):
        takes_min = takes_min[:, None]  # broadcast over the trailing axes
    takes_min = tf.constant(takes_min)

    def partner(t):
        return tf.reshape(tf.reverse(tf.reshape(t, pair_view), [pair_axis]), channel_view)

    @tf.custom_gradient
    def sort_pairs(inputs):
        values = tf.reshape(inputs, channel_view)
        partners = partner(values)
        sorted_values = tf.where(
            takes_min, tf.minimum(values, partners), tf.maximum(values, partners)
        )
        # On ties both partners stay, so `stays` agrees within each pair and
        # the routing below is a permutation.
        stays = tf.equal(sorted_values, values)

        def grad(upstream):
            upstream = tf.reshape(upstream, channel_view)
            return tf.reshape(tf.where(stays, upstream, partner(upstream)), tf.shape(inputs))

        return tf.reshape(sorted_values, tf.shape(inputs)), grad

    return sort_pairs(x)


def _max_min_halves(x, axis, channels):
    """MaxMin on a view `(outer, 2, C/2[, trailing])` of `x`.

    The forward compares the two halves (`a`, `b`) once for the backward's
    mask and stacks `maximum(a, b)` and `minimum(b, a)` (the operand order of
    the former whole-tensor version). The backward is one select between the
    upstream gradient and its pair-swapped copy (the mask is stacked for both
    halves: broadcasting it is 1.5x slower under XLA). Forward + backward on
    (64, 32, 32, 128) float32 as a graph is ~15% faster than the former
    whole-tensor `_sort_pairs` (a reverse, both extremes on the whole tensor,
    a select and an equality mask; see `benchmarks/bench_activations.py`),
    and as fast under XLA. (Reductions over the pair axis are as fast as a
    graph but 1.5x slower under XLA.) Tied signed zeros may come out in
    either order, as before (vectorized and scalar kernels differ on them).
    """
    half = channels // 2
    view = _view_shape(x, axis, [2, half] if half > 1 else [2])

    @tf.custom_gradient
    def max_min_halves(inputs):
        values = tf.reshape(inputs, view)
        first, second = values[:, 0], values[:, 1]
        # Both elements of a pair keep their place (also on ties) or both
        # swap, so the routing below is a permutation.
        first_is_max = first >= second
        stays = tf.stack([first_is_max, first_is_max], axis=1)
        sorted_values = tf.stack([tf.maximum(first, second), tf.minimum(second, first)], axis=1)

        def grad(upstream):
            upstream = tf.reshape(upstream, view)
            swapped = tf.reverse(upstream, [1])
            return tf.reshape(tf.where(stays, upstream, swapped), tf.shape(inputs))

        return tf.reshape(sorted_values, tf.shape(inputs)), grad

    return max_min_halves(x)


@tf.custom_gradient
def _min_max(a, b):
    """`(minimum(a, b), maximum(a, b))`, routing each gradient to the element that went there."""
    a_is_min = a <= b

    def grad(upstream_min, upstream_max):
        return (
            tf.where(a_is_min, upstream_min, upstream_max),
            tf.where(a_is_min, upstream_max, upstream_min),
        )

    return (tf.minimum(a, b), tf.maximum(a, b)), grad


# The optimal 5-comparator sorting network for 4 elements.
_FOUR_SORTER = ((0, 1), (2, 3), (0, 2), (1, 3), (1, 2))


def _sort_groups_of_four(x, axis, channels):
    """Sorts groups of 4 with a sorting network on the 4 unstacked slots.

    On (64, 32, 32, 128) float32, forward + backward on 2 CPU cores, this took
    ~150 ms as a graph and ~40 ms under XLA, against ~500 and ~600 ms for
    `tf.sort` on groups of 4. Each comparator works on aligned elements of two
    slot tensors, so XLA fuses the network without recomputing earlier stages
    at shifted indices, which made a whole-tensor chain of three
    `_sort_pairs`-like stages 4x slower under XLA.
    """
    if not _has_trailing_axes(x, axis):
        return _sort_last_axis_groups_of_four(x)
    view = tf.reshape(x, _view_shape(x, axis, [channels // 4, 4]))
    slots = tf.unstack(view, axis=2)
    for i, j in _FOUR_SORTER:
        slots[i], slots[j] = _min_max(slots[i], slots[j])
    return tf.reshape(tf.stack(slots, axis=2), tf.shape(x))


def _sort_last_axis_groups_of_four(x):
    """Groups of 4 on the last axis: the network on the rows of a transposed `(4, n)` view.

    Slicing the 4 slots out of the last axis (stride 4) and stacking them
    back are slow strided copies without XLA; a 2-D transpose to `(4, n)`
    makes every slot a contiguous row (unstacking rows copies nothing), and
    one transpose brings the stacked result back. The backward routes the
    upstream gradient through the network in reverse with the comparators'
    masks, two selects each, in the same transposed layout. Forward +
    backward on (64, 32, 32, 128) float32 is ~40% faster than with strided
    slots, as a graph and under XLA.
    """

    def to_slots(t):
        return tf.unstack(tf.transpose(tf.reshape(t, [-1, 4])))

    def from_slots(slots, shape):
        return tf.reshape(tf.transpose(tf.stack(slots)), shape)

    @tf.custom_gradient
    def sort_groups_of_four(inputs):
        slots = to_slots(inputs)
        first_is_min = []
        for i, j in _FOUR_SORTER:
            first_is_min.append(slots[i] <= slots[j])
            slots[i], slots[j] = tf.minimum(slots[i], slots[j]), tf.maximum(slots[i], slots[j])

        def grad(upstream):
            slots = to_slots(upstream)
            for (i, j), mask in zip(reversed(_FOUR_SORTER), reversed(first_is_min)):
                low, high = slots[i], slots[j]
                slots[i], slots[j] = tf.where(mask, low, high), tf.where(mask, high, low)
            return from_slots(slots, tf.shape(inputs))

        return from_slots(slots, tf.shape(inputs)), grad

    return sort_groups_of_four(x)


def _sort_groups(x, axis, channels, group_size):
    """Sorts groups with `tf.sort`, whose gradient routes along the sort permutation."""
    if group_size == channels:
        return tf.sort(x, axis=axis)
    groups = tf.reshape(x, _view_shape(x, axis, [channels // group_size, group_size]))
    return tf.reshape(tf.sort(groups, axis=2), tf.shape(x))
