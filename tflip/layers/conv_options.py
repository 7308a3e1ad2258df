"""Arguments and input-size handling shared by tflip's 2-D convolution layers."""

import keras

from tflip import _validation


class ConvolutionOptions:
    """Mixin: validates and stores the arguments every constrained convolution takes.

    One place for the checks of `filters`, `kernel_size`, `strides`,
    `padding`, `lipschitz`, `input_size` and `data_format`, and for matching
    the input size against the input shape at build time (the operator norm
    of a zero-padded convolution depends on it).
    """

    def set_convolution_options(
        self, filters, kernel_size, strides, padding, paddings, lipschitz, input_size, data_format
    ):
        """Stores the validated arguments; ValueError naming the first bad one."""
        self.filters = _validation.positive_int("filters", filters)
        self.kernel_size = _validation.int_pair("kernel_size", kernel_size)
        self.strides = _validation.int_pair("strides", strides)
        self.padding = _validation.one_of("padding", padding, paddings)
        self.lipschitz = _validation.positive_number("lipschitz", lipschitz)
        self.input_size = None if input_size is None else _validation.int_pair("input_size", input_size)
        if data_format != "channels_last":
            raise ValueError(f"`data_format` must be 'channels_last', got {data_format!r}.")
        self.data_format = data_format
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def convolution_options_config(self):
        """The stored arguments, for `get_config`."""
        return {
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": self.padding,
            "lipschitz": self.lipschitz,
            "input_size": self.input_size,
            "data_format": self.data_format,
        }

    def resolve_input_size(self, input_shape, required=False):
        """The input channels; sets `input_size` from a static input shape, or checks it against it.

        Args:
            input_shape: `(batch, h, w, c_in)`.
            required: raise if the spatial size is neither static nor given
                (layers whose normalization depends on it).
        """
        _, h, w, c_in = input_shape
        if c_in is None:
            raise ValueError(f"The channel dimension of the inputs must be defined, got {input_shape}.")
        if self.input_size is None:
            if h is not None and w is not None:
                self.input_size = (int(h), int(w))
            elif required:
                raise ValueError(
                    f"The spatial size of the inputs is not static ({input_shape}); the operator norm "
                    "depends on it: pass `input_size=(h, w)`."
                )
        elif (h is not None and h != self.input_size[0]) or (w is not None and w != self.input_size[1]):
            raise ValueError(f"`input_size` {self.input_size} does not match the input shape {input_shape}.")
        return c_in

    def check_valid_padding_size(self, effective_kernel_size):
        """'valid' padding needs inputs at least as large as the (dilated) kernel."""
        if self.padding == "valid" and self.input_size is not None and any(
            n < k for n, k in zip(self.input_size, effective_kernel_size)
        ):
            raise ValueError(f"`input_size` {self.input_size} is smaller than the kernel for 'valid' padding.")
