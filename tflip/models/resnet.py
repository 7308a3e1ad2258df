"""Residual critics and generators for images (Gulrajani et al. 2017, Miyato et al. 2018).

`resnet_critic` and `resnet_generator` build functional Keras models of
fixed shape (8x8 to 32x32 images, any channel count) from residual blocks:

- the critic block of the WGAN-GP CIFAR ResNet (Gulrajani et al., "Improved
  Training of Wasserstein GANs", NeurIPS 2017, appendix F; also the SNGAN
  ResNet discriminator, Miyato et al., "Spectral Normalization for
  Generative Adversarial Networks", ICLR 2018, appendix B.4): a branch
  `act -> conv3x3 -> act -> conv3x3 -> downsample` beside a shortcut
  `downsample -> conv1x1` (the identity when the shapes agree);
- the generator block: `[BN] -> act -> upsample -> conv3x3 -> [BN] -> act ->
  conv3x3` beside `upsample -> conv1x1`, upsampling by nearest neighbour
  (the papers) or a stride-2 transposed convolution.

With a constraint the critic is certified 1-Lipschitz in L2 through
`tflip.lipschitz.lipschitz_upper_bound` (see `resnet_critic`).
"""

import math
import numbers

import keras

from tflip import _validation, layers
from tflip.ops import sorting

CRITIC_CONSTRAINTS = ("none", "spectral", "aol", "orthogonal", "sll")
GENERATOR_CONSTRAINTS = ("none", "spectral")
ACTIVATIONS = ("relu", "leaky_relu", "groupsort", "maxmin", "fullsort")
DOWNSAMPLINGS = ("average", "invertible")
UPSAMPLINGS = ("nearest", "transposed")
OUTPUT_ACTIVATIONS = ("tanh", "sigmoid", "linear")

# LeakyReLU's slope (Radford et al.'s DCGAN value); 1-Lipschitz as every slope in [-1, 1].
LEAKY_RELU_SLOPE = 0.2


def _orthogonal_conv_class():
    """`tflip.layers.OrthogonalConv2D`, or a ValueError for `constraint="orthogonal"` where it is missing."""
    cls = getattr(layers, "OrthogonalConv2D", None)
    if cls is None:
        raise ValueError(
            "`constraint`='orthogonal' needs tflip.layers.OrthogonalConv2D, which this tflip version lacks; "
            "use 'aol', 'spectral' or 'sll'."
        )
    return cls


def _critic_layers(constraint):
    """`(conv(filters, kernel_size, name), dense(units, name))` factories of a critic constraint."""
    if constraint == "none":
        return (
            lambda filters, size, name: keras.layers.Conv2D(filters, size, padding="same", name=name),
            lambda units, name: keras.layers.Dense(units, name=name),
        )
    if constraint == "spectral":
        return (
            lambda filters, size, name: layers.SpectralNormConv2D(filters, size, padding="same", name=name),
            lambda units, name: layers.SpectralNormDense(units, name=name),
        )
    if constraint == "orthogonal":
        orthogonal = _orthogonal_conv_class()
        return (
            lambda filters, size, name: orthogonal(filters, size, padding="same", name=name),
            lambda units, name: layers.BjorckDense(units, name=name),
        )
    # "aol", and the stem / transitions / head of "sll" (SLL layers keep the channel count).
    return (
        lambda filters, size, name: layers.AOLConv2D(filters, size, padding="same", name=name),
        lambda units, name: layers.AOLDense(units, name=name),
    )


def _activation(activation, group_size, name):
    if activation == "relu":
        return keras.layers.ReLU(name=name)
    if activation == "leaky_relu":
        return keras.layers.LeakyReLU(negative_slope=LEAKY_RELU_SLOPE, name=name)
    if activation == "maxmin":
        return layers.MaxMin(name=name)
    if activation == "groupsort":
        return layers.GroupSort(group_size, name=name)
    return layers.FullSort(name=name)


def _check_activation(activation, group_size, width):
    """Validates `activation` and `group_size` against the channel count `width` the activations see.

    Uses the sorting activations' own checks (`tflip.ops.sorting`), so the
    builders accept exactly what the layers accept.
    """
    activation = _validation.one_of("activation", activation, ACTIVATIONS)
    group_size = _validation.positive_int("group_size", group_size)
    try:
        if activation == "groupsort":
            sorting.check_group_size(group_size, width, -1)
        elif activation == "maxmin":
            sorting.check_even_channels(width, -1)
    except ValueError as error:
        raise ValueError(f"`width`={width} does not fit activation={activation!r}: {error}") from None
    return activation, group_size


def _spatial_shape(name, shape, channels_name):
    """Validates an image shape `(h, w, c)` with h, w >= 4 and c >= 1."""
    try:
        values = tuple(shape)
    except TypeError:
        values = ()
    if len(values) != 3 or any(isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1 for v in values):
        raise ValueError(f"`{name}` must be a tuple (height, width, {channels_name}) of positive ints, got {shape!r}.")
    if min(values[:2]) < 4:
        raise ValueError(f"`{name}` must have height and width >= 4, got {shape!r}.")
    return tuple(int(v) for v in values)


def _halvings(size, minimum):
    """How many times `size` can be halved exactly while staying >= `minimum`."""
    count = 0
    while size % 2 == 0 and size // 2 >= minimum:
        size //= 2
        count += 1
    return count


def _resampling_count(name, value, shape, blocks, default_minimum):
    """Validates the number of 2x resamplings: `<= blocks` and dividing both spatial sizes."""
    if value is None:
        value = min(blocks, *(_halvings(n, default_minimum) for n in shape[:2]))
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"`{name}` must be an integer >= 0, got {value!r}.")
    value = int(value)
    if value > blocks:
        raise ValueError(f"`{name}`={value} exceeds `blocks`={blocks}: each block resamples at most once.")
    factor = 2**value
    if any(n % factor or n // factor < 1 for n in shape[:2]):
        raise ValueError(f"`{name}`={value}: height and width {shape[:2]} must be divisible by {factor}.")
    return value


def resnet_critic(
    input_shape,
    width=128,
    blocks=4,
    constraint="none",
    activation="relu",
    group_size=2,
    downsampling="average",
    downsamplings=None,
    name="critic",
):
    """A residual image critic `(h, w, c) -> 1` (Gulrajani et al. 2017; Miyato et al. 2018).

    Architecture: `blocks` residual blocks of `width` channels (the first
    `downsamplings` of them halve the resolution), then `act -> Flatten ->
    Dense(1)` (`"none"`: global average pooling instead of Flatten, as in
    the WGAN-GP code). Each block is

        branch:   [act] -> conv3x3 -> act -> conv3x3 [-> downsample]
        shortcut: [downsample ->] conv1x1       (identity if the shapes agree)
        output:   shortcut + branch              (constraint "none")
                  (shortcut + branch) / 2        (every other constraint)

    (the first block has no leading activation; Gulrajani et al.'s
    `OptimizedResBlockDisc1`). The defaults build the WGAN-GP CIFAR critic
    (Gulrajani et al., appendix F: width 128, 4 blocks, ReLU, mean pooling,
    2 downsamplings on 32x32); `constraint="spectral"` with the default
    activation is the SNGAN ResNet critic (Miyato et al., appendix B.4) made
    exactly norm-bounded. With `constraint="sll"` a block is one
    `SLLConv2D` (a residual layer by itself: `x - 2 W T^-1 ReLU(W^T x +
    b)`, Araujo et al. 2023) followed by the downsampling; an `AOLConv2D`
    stem maps the image to `width` channels and `activation` follows it.

    Certified bound. For `constraint != "none"` every layer is 1-Lipschitz
    in L2: the constrained convolutions and the final Dense (exact spectral
    norm, AOL rescaling, orthogonal convolution / Björck, SLL), the
    activations (ReLU, LeakyReLU(0.2), GroupSort family), the downsampling
    (mean pooling times 2, i.e. window sums / 2: `||.|| <= sqrt(4) / 2 = 1`
    by Cauchy-Schwarz, tight on constant windows; or space-to-depth, a
    permutation) and each block's combination, the mean of two 1-Lipschitz
    paths (a convex combination: `(L_shortcut + L_branch) / 2 <= 1`, where a
    plain sum would give 2 per block). So the whole critic is 1-Lipschitz,
    and `tflip.lipschitz.lipschitz_upper_bound(critic)` certifies it (<= 1
    up to the float32 rounding of the layers' certificates) for every
    constraint but `"spectral"`, whose layers divide by a power-iteration
    estimate: there the certified bound is <= 1 once the estimates have
    converged (`tflip.callbacks.PowerIterationRefresh`), and slightly above
    during training. With `"none"` the bound is finite but unconstrained
    (train with a penalty, e.g. WGAN-GP).

    Args:
        input_shape: `(height, width, channels)` of the images; height and
            width divisible by `2**downsamplings`.
        width: Channels of every block (even for MaxMin, a multiple of
            `group_size` for GroupSort).
        blocks: Number of residual blocks (>= 1).
        constraint: One of `"none"` (`keras.layers.Conv2D` / `Dense`),
            `"spectral"` (`SpectralNormConv2D` / `SpectralNormDense`, the
            exact norm of the zero-padded convolution), `"aol"`
            (`AOLConv2D` / `AOLDense`), `"orthogonal"` (`OrthogonalConv2D`
            with zero padding / `BjorckDense`), `"sll"` (`SLLConv2D`
            blocks, `AOLConv2D` stem and transitions, `AOLDense` head).
        activation: One of `"relu"`, `"leaky_relu"` (slope 0.2),
            `"groupsort"`, `"maxmin"`, `"fullsort"` (`tflip.layers`).
        group_size: GroupSort group size (divides `width`).
        downsampling: `"average"` (2x2 mean pooling at the end of the
            branch and the start of the shortcut; scaled by 2 with a
            constraint, which makes it 1-Lipschitz) or `"invertible"`
            (`InvertibleDownSampling(2)`, space-to-depth, at the block's
            input: 4x the channels, mapped back to `width` by the convs;
            with `"sll"` a 1x1 `AOLConv2D` follows it).
        downsamplings: Number of blocks (the first ones) that halve the
            resolution; default: as many as keep height and width even
            and >= 8 (2 on 32x32, 1 on 16x16, 0 on 8x8), at most `blocks`.
        name: Model name; layer names are prefixed with it.

    Returns:
        A built functional `keras.Model` mapping `(batch, *input_shape)` to
        `(batch, 1)`.

    Raises:
        ValueError: For bad arguments, naming them.

    Example:
        >>> critic = resnet_critic((32, 32, 3), width=64, constraint="aol", activation="groupsort")
        >>> tflip.lipschitz.lipschitz_upper_bound(critic)  # <= 1
    """
    input_shape = _spatial_shape("input_shape", input_shape, "channels")
    width = _validation.positive_int("width", width)
    blocks = _validation.positive_int("blocks", blocks)
    constraint = _validation.one_of("constraint", constraint, CRITIC_CONSTRAINTS)
    activation, group_size = _check_activation(activation, group_size, width)
    downsampling = _validation.one_of("downsampling", downsampling, DOWNSAMPLINGS)
    downsamplings = _resampling_count("downsamplings", downsamplings, input_shape, blocks, 8)
    conv, dense = _critic_layers(constraint)
    constrained = constraint != "none"

    def act(x, label):
        return _activation(activation, group_size, f"{name}_{label}_{activation}")(x)

    def downsample(x, label):
        if downsampling == "invertible":
            return layers.InvertibleDownSampling(2, name=f"{name}_{label}_downsample")(x)
        x = keras.layers.AveragePooling2D(2, name=f"{name}_{label}_pool")(x)
        # Window sums / 2: 1-Lipschitz in L2 (mean pooling alone is 1/2-Lipschitz and loses gradient norm).
        return keras.layers.Rescaling(2.0, name=f"{name}_{label}_pool_scale")(x) if constrained else x

    inputs = keras.Input(input_shape, name=f"{name}_input")
    x = inputs
    if constraint == "sll":
        x = act(conv(width, 3, f"{name}_stem_conv")(x), "stem")
        for i in range(blocks):
            label = f"block{i}"
            x = layers.SLLConv2D(width, 3, name=f"{name}_{label}_sll")(x)
            if i < downsamplings:
                x = downsample(x, label)
                if downsampling == "invertible":
                    x = conv(width, 1, f"{name}_{label}_transition")(x)
    else:
        for i in range(blocks):
            x = _critic_block(x, i, i < downsamplings, width, conv, act, downsample, downsampling, constrained,
                              name)
    x = act(x, "head")
    x = keras.layers.Flatten(name=f"{name}_flatten")(x) if constrained else (
        keras.layers.GlobalAveragePooling2D(name=f"{name}_global_pool")(x)
    )
    outputs = dense(1, f"{name}_output")(x)
    return keras.Model(inputs, outputs, name=name)


def _critic_block(x, index, down, width, conv, act, downsample, downsampling, constrained, name):
    """One critic residual block (see `resnet_critic`)."""
    label = f"block{index}"
    if down and downsampling == "invertible":
        x = downsample(x, label)
    shortcut = x
    branch = x if index == 0 else act(x, f"{label}_pre")
    branch = conv(width, 3, f"{name}_{label}_conv1")(branch)
    branch = conv(width, 3, f"{name}_{label}_conv2")(act(branch, f"{label}_mid"))
    if down and downsampling == "average":
        branch = downsample(branch, label)
        # Mean pooling commutes with the 1x1 conv; pooling first makes the shortcut conv 4x cheaper.
        shortcut = downsample(shortcut, f"{label}_shortcut")
    if shortcut.shape[-1] != width or down:
        shortcut = conv(width, 1, f"{name}_{label}_shortcut_conv")(shortcut)
    merge = keras.layers.Average if constrained else keras.layers.Add
    return merge(name=f"{name}_{label}_merge")([shortcut, branch])


def resnet_generator(
    latent_dim,
    output_shape,
    width=128,
    blocks=None,
    upsamplings=None,
    upsampling="nearest",
    batch_norm=True,
    activation="relu",
    group_size=2,
    output_activation="tanh",
    constraint="none",
    name="generator",
):
    """A residual image generator `latent_dim -> output_shape` (Gulrajani et al. 2017; Miyato et al. 2018).

    Architecture: `Dense(h0 * w0 * width) -> Reshape(h0, w0, width)`, then
    `blocks` residual blocks of `width` channels (the first `upsamplings` of
    them double the resolution, from `h0 = height / 2**upsamplings`), then
    `[BN] -> act -> conv3x3(channels) -> output_activation`. Each block is

        branch:   [BN] -> act -> upsample+conv3x3 -> [BN] -> act -> conv3x3
        shortcut: [upsample ->] conv1x1           (identity if the shapes agree)
        output:   shortcut + branch

    where `upsample+conv3x3` is `UpSampling2D(nearest) -> conv3x3` (the
    papers) or one `Conv2DTranspose(3, strides=2)` (`upsampling=
    "transposed"`). The defaults build the WGAN-GP CIFAR generator
    (Gulrajani et al., appendix F: width 128, 3 upsampling blocks from 4x4
    on 32x32, BatchNorm, ReLU, tanh).

    Args:
        latent_dim: Size of the latent vectors.
        output_shape: `(height, width, channels)` of the images; height and
            width divisible by `2**upsamplings`.
        width: Channels of every block (even for MaxMin, a multiple of
            `group_size` for GroupSort).
        blocks: Number of residual blocks; default `max(1, upsamplings)`.
        upsamplings: Number of blocks (the first ones) that double the
            resolution; default: as many as keep the starting size an
            integer >= 4 (3 on 32x32, 2 on 16x16, 1 on 8x8), at most
            `blocks` when `blocks` is given.
        upsampling: `"nearest"` or `"transposed"`.
        batch_norm: Whether to put `BatchNormalization` before the
            activations (Gulrajani et al.); False for none.
        activation: One of `"relu"`, `"leaky_relu"` (slope 0.2),
            `"groupsort"`, `"maxmin"`, `"fullsort"`.
        group_size: GroupSort group size (divides `width`).
        output_activation: `"tanh"` (images in [-1, 1]), `"sigmoid"` or
            `"linear"`.
        constraint: `"none"` (Keras layers) or `"spectral"`
            (`SpectralNormDense`, `SpectralNormConv2D`,
            `SpectralNormConv2DTranspose`: spectral normalization of the
            generator, as in SAGAN / BigGAN).
        name: Model name; layer names are prefixed with it.

    Returns:
        A built functional `keras.Model` mapping `(batch, latent_dim)` to
        `(batch, *output_shape)`.

    Raises:
        ValueError: For bad arguments, naming them.

    Example:
        >>> generator = resnet_generator(128, (32, 32, 3), width=64)
        >>> images = generator(keras.random.normal((16, 128)))  # (16, 32, 32, 3) in [-1, 1]
    """
    latent_dim = _validation.positive_int("latent_dim", latent_dim)
    output_shape = _spatial_shape("output_shape", output_shape, "channels")
    width = _validation.positive_int("width", width)
    if blocks is not None:
        blocks = _validation.positive_int("blocks", blocks)
    upsamplings = _resampling_count(
        "upsamplings", upsamplings, output_shape, blocks if blocks is not None else math.inf, 4
    )
    blocks = max(1, upsamplings) if blocks is None else blocks
    upsampling = _validation.one_of("upsampling", upsampling, UPSAMPLINGS)
    if not isinstance(batch_norm, bool):
        raise ValueError(f"`batch_norm` must be True or False, got {batch_norm!r}.")
    activation, group_size = _check_activation(activation, group_size, width)
    output_activation = _validation.one_of("output_activation", output_activation, OUTPUT_ACTIVATIONS)
    constraint = _validation.one_of("constraint", constraint, GENERATOR_CONSTRAINTS)
    spectral = constraint == "spectral"

    def conv(filters, size, label, **kwargs):
        cls = layers.SpectralNormConv2D if spectral else keras.layers.Conv2D
        return cls(filters, size, padding="same", name=f"{name}_{label}", **kwargs)

    def conv_transpose(filters, label):
        cls = layers.SpectralNormConv2DTranspose if spectral else keras.layers.Conv2DTranspose
        return cls(filters, 3, strides=2, padding="same", name=f"{name}_{label}")

    def norm_act(x, label):
        if batch_norm:
            x = keras.layers.BatchNormalization(name=f"{name}_{label}_bn")(x)
        return _activation(activation, group_size, f"{name}_{label}_{activation}")(x)

    factor = 2**upsamplings
    start = (output_shape[0] // factor, output_shape[1] // factor)
    inputs = keras.Input((latent_dim,), name=f"{name}_input")
    dense = layers.SpectralNormDense if spectral else keras.layers.Dense
    x = dense(start[0] * start[1] * width, name=f"{name}_dense")(inputs)
    x = keras.layers.Reshape((*start, width), name=f"{name}_reshape")(x)
    for i in range(blocks):
        label = f"block{i}"
        up = i < upsamplings
        shortcut = x
        branch = norm_act(x, f"{label}_pre")
        if up and upsampling == "transposed":
            branch = conv_transpose(width, f"{label}_conv1")(branch)
        else:
            if up:
                branch = keras.layers.UpSampling2D(2, name=f"{name}_{label}_upsample")(branch)
            branch = conv(width, 3, f"{label}_conv1")(branch)
        branch = conv(width, 3, f"{label}_conv2")(norm_act(branch, f"{label}_mid"))
        if up:
            shortcut = keras.layers.UpSampling2D(2, name=f"{name}_{label}_shortcut_upsample")(shortcut)
            shortcut = conv(width, 1, f"{label}_shortcut_conv")(shortcut)
        x = keras.layers.Add(name=f"{name}_{label}_merge")([shortcut, branch])
    x = norm_act(x, "head")
    x = conv(output_shape[2], 3, "output_conv")(x)
    if output_activation != "linear":
        # float32 output under mixed precision: the critic and the data compare in float32.
        x = keras.layers.Activation(output_activation, dtype="float32", name=f"{name}_{output_activation}")(x)
    return keras.Model(inputs, x, name=name)
