"""ResNet critics and generators: shapes, certified bounds, one WGAN step, export, saving, bad arguments."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tflip
from tests.layer_checks import check_mixed_precision
from tflip.callbacks import PowerIterationRefresh
from tflip.export import to_plain_keras
from tflip.lipschitz import jacobian_norms, lipschitz_upper_bound
from tflip.models import WGAN, resnet_critic, resnet_generator

ORTHOGONAL_AVAILABLE = hasattr(tflip.layers, "OrthogonalConv2D")
# One activation per constraint, so every activation is exercised by the parametrized cases.
CONSTRAINTS = {
    "none": "relu",
    "spectral": "leaky_relu",
    "aol": "groupsort",
    "orthogonal": "maxmin",
    "sll": "fullsort",
}
# OrthogonalConv2D's graphs (Polar Express steps, the Björck cache refresh) take 5-20 s to trace and compile.
HEAVY = {"orthogonal": pytest.mark.slow}
CONSTRAINT_CASES = [pytest.param(c, marks=HEAVY.get(c, ())) for c in CONSTRAINTS]
# The three sizes of the issue, each with a downsampling mode (16x16 with space-to-depth).
# 32x32 with -m slow: the same blocks as 16x16, one more downsampling.
SHAPES = [((8, 8, 1), "average"), ((16, 16, 3), "invertible"),
          pytest.param((32, 32, 3), "average", marks=pytest.mark.slow)]
# Float32 rounding of the layers' certificates (orthogonal / Björck kernels are orthonormal to ~1e-7 per
# layer; measured worst 1.0000012 over the cases below).
ROUNDING = 1e-5
# SpectralNormConv2D's certificate on inputs above tflip.ops.conv.EXACT_NORM_LIMIT is a Gram-iteration bound
# of the exactly normalized conv (measured 1.0024 for a 3x3 conv, 3 -> 4 channels on 32x32).
SPECTRAL_CERTIFICATE_SLACK = 1e-2


def critic(constraint, shape=(8, 8, 1), downsampling="average", width=4, blocks=2, seed=0):
    keras.utils.set_random_seed(seed)
    return resnet_critic(shape, width=width, blocks=blocks, constraint=constraint,
                         activation=CONSTRAINTS[constraint], downsampling=downsampling)


def needs_orthogonal(constraint):
    """True (after checking the error) where `OrthogonalConv2D` has not landed: the builder must refuse."""
    if constraint != "orthogonal" or ORTHOGONAL_AVAILABLE:
        return False
    with pytest.raises(ValueError, match="OrthogonalConv2D"):
        resnet_critic((8, 8, 1), width=4, constraint="orthogonal")
    return True


def points(shape, n=16, seed=1):
    return np.random.default_rng(seed).normal(size=(n, *shape)).astype("float32")


def snapshot(*models):
    return [[np.array(w) for w in model.weights] for model in models]


def restore(models, values):
    for model, weights in zip(models, values):
        for variable, value in zip(model.weights, weights):
            variable.assign(value)


@pytest.mark.parametrize("constraint", list(CONSTRAINTS))
@pytest.mark.parametrize("shape,downsampling", SHAPES)
def test_critic_shape_and_certified_bound(constraint, shape, downsampling):
    if needs_orthogonal(constraint):
        return
    model = critic(constraint, shape, downsampling)
    x = points(shape)
    assert tuple(model(x).shape) == (16, 1)
    if constraint == "spectral":
        PowerIterationRefresh().refresh(model)  # a fresh power vector under-estimates the norm (gain up to 17x)
    bound = lipschitz_upper_bound(model)
    empirical = float(tf.reduce_max(jacobian_norms(model, x)))
    assert np.isfinite(bound) and bound >= empirical > 0
    if constraint == "none":
        return
    # The construction is 1-Lipschitz: every layer is, and each block is a convex combination of two paths.
    assert bound <= 1.0 + (SPECTRAL_CERTIFICATE_SLACK if constraint == "spectral" else ROUNDING)
    # Not vacuous: random points reach a sizeable part of the bound (measured 0.14-0.49).
    # Not vacuous: random points at initialization reach a sizeable part of it (measured 0.099-0.47).
    assert empirical >= 0.05


def test_convex_combination_is_what_certifies_the_blocks():
    # A block's bound is the mean of its two paths' bounds (a sum, Gulrajani's `shortcut + branch`, would
    # double it): the graph bound of a one-block AOL critic is exactly that, times the head's.
    model = critic("aol", (8, 8, 1), blocks=1)
    merges = [layer for layer in model.layers if isinstance(layer, keras.layers.Average)]
    assert len(merges) == 1
    from tflip.lipschitz import layer_lipschitz_bound

    branch = ["critic_block0_conv1", "critic_block0_mid_groupsort", "critic_block0_conv2"]
    branch_bound = np.prod([layer_lipschitz_bound(model.get_layer(n)) for n in branch])
    shortcut_bound = layer_lipschitz_bound(model.get_layer("critic_block0_shortcut_conv"))
    head = layer_lipschitz_bound(model.get_layer("critic_output"))
    assert lipschitz_upper_bound(model) == pytest.approx((branch_bound + shortcut_bound) / 2 * head, rel=1e-12)


def test_constrained_average_pooling_is_scaled_to_one_lipschitz():
    model = critic("aol", (16, 16, 1), blocks=1)
    pool = model.get_layer("critic_block0_pool")
    scale = model.get_layer("critic_block0_pool_scale")
    inputs = keras.Input((16, 16, 1))
    chain = keras.Model(inputs, scale(pool(inputs)))
    assert lipschitz_upper_bound(chain) == pytest.approx(1.0, abs=1e-12)
    # Tight: constant 2x2 windows keep their norm.
    x = np.ones((1, 16, 16, 1), "float32")
    assert np.linalg.norm(chain(x)) == pytest.approx(np.linalg.norm(x), rel=1e-6)
    # Unconstrained critics use Gulrajani et al.'s plain mean pooling.
    assert not any(isinstance(layer, keras.layers.Rescaling) for layer in critic("none", (16, 16, 1)).layers)


@pytest.mark.parametrize("shape,expected", [((8, 8, 1), 0), ((16, 16, 3), 1), ((32, 32, 3), 2), ((28, 28, 1), 1)])
def test_default_downsamplings_end_at_eight_or_more(shape, expected):
    keras.utils.set_random_seed(0)
    model = resnet_critic(shape, width=4, blocks=3, constraint="aol", activation="maxmin")
    flatten = model.get_layer("critic_flatten")
    assert tuple(flatten.input.shape[1:3]) == (shape[0] // 2**expected, shape[1] // 2**expected)
    pools = [layer for layer in model.layers if isinstance(layer, keras.layers.AveragePooling2D)]
    assert len(pools) == 2 * expected  # branch and shortcut of each downsampling block


def test_sll_critic_is_built_of_sll_blocks():
    model = critic("sll", (16, 16, 3), "invertible", blocks=3)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds.count("SLLConv2D") == 3
    assert "InvertibleDownSampling" in kinds and "Average" not in kinds and "Add" not in kinds
    assert model.get_layer("critic_output").__class__ is tflip.layers.AOLDense


@pytest.mark.parametrize("output_shape", [(8, 8, 1), (16, 16, 3), (32, 32, 3)])
@pytest.mark.parametrize("upsampling", ["nearest", "transposed"])
def test_generator_shapes(output_shape, upsampling):
    keras.utils.set_random_seed(0)
    generator = resnet_generator(6, output_shape, width=4, upsampling=upsampling)
    images = generator(points((6,), n=3), training=False)
    assert tuple(images.shape) == (3, *output_shape)
    assert float(tf.reduce_max(tf.abs(images))) <= 1.0  # tanh
    # Default: start at 4x4 and double once per block (Gulrajani et al.'s 4 -> 8 -> 16 -> 32).
    assert generator.get_layer("generator_dense").units == 4 * 4 * 4
    merges = [layer for layer in generator.layers if isinstance(layer, keras.layers.Add)]
    assert len(merges) == {8: 1, 16: 2, 32: 3}[output_shape[0]]


def test_generator_options():
    keras.utils.set_random_seed(0)
    generator = resnet_generator(5, (12, 8, 2), width=4, blocks=3, upsamplings=1, batch_norm=False,
                                 activation="groupsort", output_activation="linear", constraint="spectral")
    kinds = {type(layer).__name__ for layer in generator.layers}
    assert "BatchNormalization" not in kinds and "SpectralNormConv2D" in kinds and "SpectralNormDense" in kinds
    assert tuple(generator(points((5,), n=2)).shape) == (2, 12, 8, 2)
    assert generator.get_layer("generator_dense").units == 6 * 4 * 4
    transposed = resnet_generator(5, (8, 8, 1), width=4, upsampling="transposed", constraint="spectral")
    assert any(isinstance(layer, tflip.layers.SpectralNormConv2DTranspose) for layer in transposed.layers)


class FixedLatentWGAN(WGAN):
    """A WGAN whose latent vectors are one fixed batch, so that the step's losses can be recomputed."""

    fixed_latent = None

    def sample_latent(self, batch_size, random):
        return tf.constant(self.fixed_latent)


def test_orthogonal_critic_eager_step_keeps_its_bound():
    # The default run's training check of the orthogonal critic (its WGAN step above is slow to trace).
    if needs_orthogonal("orthogonal"):
        return
    model = critic("orthogonal", (8, 8, 1))
    real, fake = points((8, 8, 1), n=8, seed=3), points((8, 8, 1), n=8, seed=4)
    before = snapshot(model)[0]
    optimizer = keras.optimizers.Adam(1e-2)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(model(fake, training=True)) - tf.reduce_mean(model(real, training=True))
    optimizer.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
    assert np.isfinite(float(loss))
    assert all(not np.allclose(np.array(w), b) for w, b in zip(model.weights, before)
               if w.trainable and w.path != "critic_output/bias")
    assert lipschitz_upper_bound(model) <= 1.0 + ROUNDING


@pytest.mark.parametrize("constraint", CONSTRAINT_CASES)
def test_one_wgan_step_with_resnet_generator(constraint):
    if needs_orthogonal(constraint):
        return
    shape, batch, latent_dim = (8, 8, 1), 8, 6
    model = critic(constraint, shape)
    keras.utils.set_random_seed(1)
    generator = resnet_generator(latent_dim, shape, width=4)
    gan = FixedLatentWGAN(generator, model, latent_dim=latent_dim, n_critic=1, penalty=None)
    gan.fixed_latent = points((latent_dim,), n=batch, seed=2)
    gan.compile(critic_optimizer=keras.optimizers.Adam(1e-2), generator_optimizer=keras.optimizers.Adam(1e-2))
    real = np.tanh(points(shape, n=batch, seed=3))

    # The step's losses replayed in its order of calls: G(z); f(real), f(fake) (each training call may
    # advance the power iteration); update f; -f(G(z)).
    before = snapshot(generator, model)
    fake = generator(gan.fixed_latent, training=True)
    real_values = model(real, training=True)
    fake_values = model(fake, training=True)
    expected_critic_loss = float(tf.reduce_mean(fake_values) - tf.reduce_mean(real_values))
    critic_state = [np.array(w) for w in model.non_trainable_weights]
    restore((generator, model), before)

    history = gan.fit(real, batch_size=batch, epochs=1, verbose=0, shuffle=False)
    logs = {key: values[-1] for key, values in history.history.items()}
    assert np.isfinite([logs["critic_loss"], logs["generator_loss"], logs["wasserstein"]]).all()
    assert logs["critic_loss"] == pytest.approx(expected_critic_loss, abs=1e-5)
    assert logs["wasserstein"] == pytest.approx(-expected_critic_loss, abs=1e-5)
    # Every other critic weight moves; the generator's kernels move (a bias right before a training-mode
    # BatchNormalization gets a zero gradient: the normalization removes it).
    moved = lambda model, values: {  # noqa: E731
        w.path: not np.allclose(np.array(w), b) for w, b in zip(model.weights, values) if w.trainable
    }
    critic_moved = moved(model, before[1])
    # The output bias cancels in mean f(fake) - mean f(real): zero gradient, it stays.
    assert critic_moved.pop("critic_output/bias") is False
    assert all(critic_moved.values()), critic_moved
    generator_kernels = {k: v for k, v in moved(generator, before[0]).items() if k.endswith("kernel")}
    assert len(generator_kernels) >= 5 and all(generator_kernels.values()), generator_kernels

    # Generator loss: the updated critic (its state as after the two critic calls) on G before its update.
    trained_critic = snapshot(model)[0]
    restore((generator,), before[:1])
    for variable, value in zip(model.non_trainable_weights, critic_state):
        variable.assign(value)
    expected_generator_loss = -float(tf.reduce_mean(model(generator(gan.fixed_latent, training=True),
                                                          training=True)))
    assert logs["generator_loss"] == pytest.approx(expected_generator_loss, abs=1e-5)
    restore((model,), [trained_critic])
    if constraint != "none":
        if constraint == "spectral":
            PowerIterationRefresh().refresh(model)
        slack = SPECTRAL_CERTIFICATE_SLACK if constraint == "spectral" else ROUNDING
        assert lipschitz_upper_bound(model) <= 1.0 + slack


@pytest.mark.parametrize("constraint", list(CONSTRAINTS))
def test_export_and_save_load(constraint, tmp_path):
    if needs_orthogonal(constraint):
        return
    model = critic(constraint, (8, 8, 1))
    x = points((8, 8, 1))
    expected = np.asarray(model(x, training=False))
    # SLL layers are kept: expanded into plain layers they re-certify only to 1 + 2 ||V||^2 each.
    plain = to_plain_keras(model, keep=(tflip.layers.SLLConv2D,))
    np.testing.assert_allclose(np.asarray(plain(x, training=False)), expected, atol=1e-5, rtol=1e-5)
    if constraint == "sll":
        expanded = to_plain_keras(model)
        np.testing.assert_allclose(np.asarray(expanded(x, training=False)), expected, atol=1e-5, rtol=1e-5)
    # The exported critic is certified by the same graph walk (plain Conv2D / Dense: exact or Gram bounds).
    bound = lipschitz_upper_bound(plain)
    assert bound >= float(tf.reduce_max(jacobian_norms(plain, x)))
    if constraint != "none":
        if constraint == "spectral":
            # Same inference kernels (the stored power-iteration estimates), same certificates.
            assert bound == pytest.approx(lipschitz_upper_bound(model), rel=1e-6)
        else:
            assert bound <= 1.0 + ROUNDING

    path = tmp_path / "critic.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(np.asarray(loaded(x, training=False)), expected, atol=1e-6, rtol=1e-6)



@pytest.mark.parametrize("constraint", CONSTRAINT_CASES)
def test_critic_under_xla(constraint):
    if needs_orthogonal(constraint):
        return
    model = critic(constraint, (8, 8, 1))
    x = points((8, 8, 1))
    expected = np.asarray(model(x, training=False))
    compiled = tf.function(lambda inputs: model(inputs, training=False), jit_compile=True)
    np.testing.assert_allclose(np.asarray(compiled(x)), expected, atol=1e-5, rtol=1e-5)
    # Training mode (kernels recomputed, power iteration advanced) under XLA == eagerly, from the same state.
    state = snapshot(model)
    eager = np.asarray(model(x, training=True))
    restore((model,), state)
    training = tf.function(lambda inputs: model(inputs, training=True), jit_compile=True)
    np.testing.assert_allclose(np.asarray(training(x)), eager, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("constraint", list(CONSTRAINTS))
def test_critic_mixed_precision(constraint):
    # Computes in float16 with float32 weights (the layers do their linear algebra in float32); the
    # tolerance is float16's over two residual blocks.
    if needs_orthogonal(constraint):
        return
    check_mixed_precision(lambda: critic(constraint, (8, 8, 1)), points((8, 8, 1), n=4), "mixed_float16", 2e-2)


def test_generator_mixed_precision_outputs_float32():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        keras.utils.set_random_seed(0)
        generator = resnet_generator(6, (8, 8, 1), width=4)
        images = generator(points((6,), n=2), training=False)
        assert images.dtype == "float32" and all(w.dtype == "float32" for w in generator.weights)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_generator_export_and_save_load(tmp_path):
    keras.utils.set_random_seed(0)
    generator = resnet_generator(6, (8, 8, 1), width=4, constraint="spectral", upsampling="transposed")
    z = points((6,), n=4)
    expected = np.asarray(generator(z, training=False))
    np.testing.assert_allclose(np.asarray(to_plain_keras(generator)(z, training=False)), expected, atol=1e-5)
    generator.save(tmp_path / "generator.keras")
    loaded = keras.models.load_model(tmp_path / "generator.keras")
    np.testing.assert_allclose(np.asarray(loaded(z, training=False)), expected, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs,argument",
    [
        ({"input_shape": (8, 8)}, "input_shape"),
        ({"input_shape": (2, 8, 1)}, "input_shape"),
        ({"width": 0}, "width"),
        ({"blocks": 0}, "blocks"),
        ({"constraint": "bjorck"}, "constraint"),
        ({"activation": "elu"}, "activation"),
        ({"activation": "groupsort", "group_size": 3}, "width"),
        ({"activation": "groupsort", "group_size": 0}, "group_size"),
        ({"activation": "maxmin", "width": 5}, "width"),
        ({"downsampling": "max"}, "downsampling"),
        ({"downsamplings": 3}, "downsamplings"),
        ({"input_shape": (12, 12, 1), "blocks": 3, "downsamplings": 3}, "downsamplings"),
        ({"downsamplings": -1}, "downsamplings"),
    ],
)
def test_critic_bad_arguments(kwargs, argument):
    arguments = {"input_shape": (16, 16, 1), "width": 4, "blocks": 2, **kwargs}
    with pytest.raises(ValueError, match=f"`{argument}`"):
        resnet_critic(**arguments)


@pytest.mark.parametrize(
    "kwargs,argument",
    [
        ({"latent_dim": 0}, "latent_dim"),
        ({"output_shape": (8, 8, 0)}, "output_shape"),
        ({"width": -1}, "width"),
        ({"blocks": 0}, "blocks"),
        ({"blocks": 1, "upsamplings": 2}, "upsamplings"),
        ({"upsamplings": 5}, "upsamplings"),
        ({"upsampling": "bilinear"}, "upsampling"),
        ({"batch_norm": 1}, "batch_norm"),
        ({"activation": "gelu"}, "activation"),
        ({"activation": "fullsort", "group_size": 1.5}, "group_size"),
        ({"activation": "groupsort", "group_size": 8}, "width"),
        ({"output_activation": "relu"}, "output_activation"),
        ({"constraint": "aol"}, "constraint"),
    ],
)
def test_generator_bad_arguments(kwargs, argument):
    arguments = {"latent_dim": 4, "output_shape": (16, 16, 1), "width": 4, **kwargs}
    with pytest.raises(ValueError, match=f"`{argument}`"):
        resnet_generator(**arguments)
