"""Gradient-norm-preserving sorting activations: GroupSort, MaxMin, FullSort.

From Anil, Lucas & Grosse, "Sorting Out Lipschitz Function Approximation"
(ICML 2019), section 4.1. Each layer outputs a permutation of its input, so it
is 1-Lipschitz in the L2 and L-infinity norms (in every p-norm) and its
Jacobian is a permutation matrix, which preserves gradient norms: the reason
why norm-constrained networks need these activations instead of ReLU to be
universal approximators of Lipschitz functions.

The math lives in `tflip.ops.sorting`; these layers validate their arguments
and input shapes and implement the `LipschitzLayer` protocol.
"""

import keras
import tensorflow as tf

from tflip._validation import positive_int
from tflip.layers.base import LipschitzLayer
from tflip.ops import sorting
from tflip.ops.norms import check_norm


class _SortingActivation(keras.layers.Layer, LipschitzLayer):
    """A weightless layer that permutes its input along a static channel axis."""

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        self.axis = sorting.check_axis(axis)

    def build(self, input_shape):
        axis, channels = sorting.channel_axis(input_shape, self.axis)
        self._check_channels(channels, axis)
        # Later calls must keep the channel count the checks above accepted.
        self.input_spec = keras.layers.InputSpec(ndim=len(input_shape), axes={axis: channels})
        super().build(input_shape)

    def _check_channels(self, channels, axis):
        """Raises `ValueError` if the layer cannot permute `channels` channels."""

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}

    def operator_norm(self):
        """A permutation has operator norm 1 (the float32 constant `1.0`)."""
        return tf.constant(1.0, dtype=tf.float32)

    def lipschitz_upper_bound(self, norm=2):
        """Returns `1.0`: a permutation is 1-Lipschitz in the L2 and L-infinity norms.

        Args:
            norm: `2`, `"inf"` or `np.inf`.

        Raises:
            ValueError: For any other `norm`.
        """
        check_norm(norm)
        return 1.0


@keras.saving.register_keras_serializable(package="tflip")
class GroupSort(_SortingActivation):
    """Sorts each contiguous group of `group_size` channels in ascending order.

    GroupSort from Anil, Lucas & Grosse, "Sorting Out Lipschitz Function
    Approximation" (ICML 2019), section 4.1: a 1-Lipschitz, gradient norm
    preserving activation. Group `i` holds channels
    `[i * group_size, (i + 1) * group_size)` of `axis`. `group_size=2` is the
    paper's MaxMin up to a channel permutation (see `MaxMin`, which is
    faster), `group_size` equal to the channel count is `FullSort`.

    Args:
        group_size: Channels per group, an int >= 1 that divides the size of
            `axis`. Groups of 2 and 4 use a sorting network of elementwise ops,
            larger groups the slower `tf.sort`.
        axis: The channel axis, whose size must be static.
        **kwargs: Base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: A floating-point tensor. Only the channel axis needs a static
            size; the output is computed in the input's dtype.

    Returns:
        A tensor of the shape and dtype of `inputs`.

    Example:

        >>> layer = GroupSort(group_size=2)
        >>> layer(np.array([[3.0, 1.0, 2.0, 4.0]], "float32")).numpy()
    array([[1., 3., 2., 4.]], dtype=float32)
    """

    def __init__(self, group_size=2, axis=-1, **kwargs):
        super().__init__(axis=axis, **kwargs)
        self.group_size = positive_int("group_size", group_size)

    def _check_channels(self, channels, axis):
        sorting.check_group_size(self.group_size, channels, axis)

    def call(self, inputs):
        return sorting.group_sort(inputs, self.group_size, axis=self.axis)

    def get_config(self):
        return {**super().get_config(), "group_size": self.group_size}


@keras.saving.register_keras_serializable(package="tflip")
class MaxMin(_SortingActivation):
    """Pairs the two halves of the channels and outputs their maxima, then their minima.

    MaxMin (equivalently OPLU) from Anil, Lucas & Grosse, "Sorting Out
    Lipschitz Function Approximation" (ICML 2019), section 4.1: GroupSort with
    groups of 2, 1-Lipschitz and gradient norm preserving.

    Layout: with `a` the first and `b` the second half of the channels of
    `axis`, the output is `concat([maximum(a, b), minimum(a, b)], axis)`. This
    is `GroupSort(2)` followed by a fixed channel permutation (which the next
    linear layer absorbs), and the fastest sorting activation.

    Args:
        axis: The channel axis, whose size must be static and even.
        **kwargs: Base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: A floating-point tensor. Only the channel axis needs a static
            size; the output is computed in the input's dtype.

    Returns:
        A tensor of the shape and dtype of `inputs`.

    Example:

        >>> layer = MaxMin()
        >>> layer(np.array([[3.0, 1.0, 2.0, 4.0]], "float32")).numpy()
    array([[3., 4., 2., 1.]], dtype=float32)
    """

    def _check_channels(self, channels, axis):
        sorting.check_even_channels(channels, axis)

    def call(self, inputs):
        return sorting.max_min(inputs, axis=self.axis)


@keras.saving.register_keras_serializable(package="tflip")
class FullSort(_SortingActivation):
    """Sorts the whole channel axis in ascending order.

    FullSort from Anil, Lucas & Grosse, "Sorting Out Lipschitz Function
    Approximation" (ICML 2019), section 4.1: GroupSort with a single group.
    It represents some functions more compactly than MaxMin but the paper
    finds it harder to train, and `tf.sort` makes it much slower.

    Args:
        axis: The axis to sort, whose size must be static.
        **kwargs: Base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: A floating-point tensor. Only the channel axis needs a static
            size; the output is computed in the input's dtype.

    Returns:
        A tensor of the shape and dtype of `inputs`.

    Example:

        >>> layer = FullSort()
        >>> layer(np.array([[3.0, 1.0, 2.0, 4.0]], "float32")).numpy()
    array([[1., 2., 3., 4.]], dtype=float32)
    """

    def call(self, inputs):
        return sorting.full_sort(inputs, axis=self.axis)
