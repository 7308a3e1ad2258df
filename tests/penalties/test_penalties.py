"""Penalties against closed forms on linear critics f(x) = w.x + b.

For a linear critic the input gradient is w everywhere, so every gradient
penalty has a closed form, and ALP's power iteration finds the direction
w/||w|| in one step with Lipschitz quotient ||w||.
"""

import inspect

import keras
import numpy as np
import pytest
import tensorflow as tf

from tflip import penalties
from tflip._random import RandomStream
from tflip.penalties import (
    AdversarialLipschitzPenalty,
    GradientPenalty,
    LipschitzPenalty,
    MaxGradientAugmentedLagrangian,
    MaxGradientPenalty,
    WeightClipping,
)


def linear_critic(w, b=0.3):
    w = np.asarray(w, dtype="float32")
    critic = keras.Sequential([keras.Input((len(w),)), keras.layers.Dense(1)])
    critic.layers[0].set_weights([w[:, None], np.array([b], "float32")])
    return critic


def batches(rng, dimension=3, n=64):
    return (rng.normal(size=(n, dimension)).astype("float32"), rng.normal(size=(n, dimension)).astype("float32"))


W = np.array([1.5, -2.0, 0.5], "float32")  # ||w||_2 = 2.5495
SMALL_W = np.array([0.3, 0.2, -0.1], "float32")


@pytest.mark.parametrize("w", [W, SMALL_W])
@pytest.mark.parametrize("sampling", ["interpolates", "real_perturbation", "real_fake_perturbation"])
def test_gradient_penalties_closed_form_on_linear_critic(rng, w, sampling):
    real, fake = batches(rng)
    critic = linear_critic(w)
    norm = np.linalg.norm(w)
    expected = {
        GradientPenalty: 10.0 * (norm - 1) ** 2,
        LipschitzPenalty: 10.0 * max(0.0, norm - 1) ** 2,
        MaxGradientPenalty: 10.0 * (norm - 1) ** 2,
    }
    for cls, value in expected.items():
        penalty = cls(10.0, sampling=sampling)
        np.testing.assert_allclose(float(penalty(critic, real, fake)), value, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(float(penalty.gradient_norm_mean.result()), norm, rtol=1e-5)
        np.testing.assert_allclose(float(penalty.gradient_norm_max.result()), norm, rtol=1e-5)


@pytest.mark.parametrize("cls", [GradientPenalty, LipschitzPenalty, MaxGradientPenalty])
def test_gradient_of_penalty_wrt_weights_matches_closed_form(rng, cls):
    # d/dw weight*(||w|| - 1)^2 = 2*weight*(||w|| - 1) w/||w|| (one-sided: the same when ||w|| > 1).
    real, fake = batches(rng)
    critic = linear_critic(W)
    penalty = cls(4.0)
    kernel = critic.layers[0].kernel
    with tf.GradientTape() as tape:
        value = penalty(critic, real, fake)
    gradient = tape.gradient(value, kernel).numpy()[:, 0]
    norm = np.linalg.norm(W)
    np.testing.assert_allclose(gradient, 2 * 4.0 * (norm - 1) * W / norm, rtol=1e-4)


def test_lipschitz_penalty_is_zero_below_one_and_gradient_penalty_is_not(rng):
    real, fake = batches(rng)
    critic = linear_critic(SMALL_W)
    assert float(LipschitzPenalty(10.0)(critic, real, fake)) == 0.0
    assert float(GradientPenalty(10.0)(critic, real, fake)) > 1.0


@pytest.mark.parametrize("norm, dual", [(1, np.inf), ("inf", 1), (float("inf"), 1), (4, 4 / 3)])
def test_input_metric_uses_the_dual_norm_of_the_gradient(rng, norm, dual):
    real, fake = batches(rng)
    penalty = GradientPenalty(1.0, norm=norm)
    value = float(penalty(linear_critic(W), real, fake))
    np.testing.assert_allclose(value, (np.linalg.norm(W, ord=dual) - 1) ** 2, rtol=1e-5)


def test_gradient_penalty_is_finite_at_zero_gradient(rng):
    real, fake = batches(rng)
    critic = linear_critic(np.zeros(3))
    kernel = critic.layers[0].kernel
    with tf.GradientTape() as tape:
        value = GradientPenalty(10.0)(critic, real, fake)
    gradient = tape.gradient(value, kernel)
    assert float(value) == pytest.approx(10.0)
    assert np.all(np.isfinite(gradient.numpy()))


def test_interpolation_coefficients_are_uniform_per_sample(rng):
    n = 4000
    real = np.ones((n, 2), "float32")
    fake = np.zeros((n, 2), "float32")
    penalty = GradientPenalty()
    penalty.build(real.shape)
    points = penalty.penalty_points(tf.constant(real), tf.constant(fake), RandomStream([0, 1])).numpy()
    alpha = points[:, 0]
    np.testing.assert_array_equal(points[:, 0], points[:, 1])  # one coefficient per sample
    assert alpha.min() >= 0.0 and alpha.max() <= 1.0
    # U[0, 1]: mean 1/2, variance 1/12 (a normal draw would leave [0, 1]).
    assert abs(alpha.mean() - 0.5) < 0.02 and abs(alpha.var() - 1 / 12) < 0.01


@pytest.mark.parametrize("sampling, rows", [("real_perturbation", 1), ("real_fake_perturbation", 2)])
def test_local_perturbation_noise(sampling, rows):
    n = 3000
    real = np.zeros((n, 2), "float32")
    fake = np.full((n, 2), 5.0, "float32")
    penalty = LipschitzPenalty(sampling=sampling, noise_std=0.3)
    penalty.build(real.shape)
    points = penalty.penalty_points(tf.constant(real), tf.constant(fake), RandomStream([0, 1])).numpy()
    assert points.shape == (rows * n, 2)
    np.testing.assert_allclose(points[:n].std(), 0.3, rtol=0.05)
    np.testing.assert_allclose(points[:n].mean(), 0.0, atol=0.02)
    if rows == 2:
        np.testing.assert_allclose(points[n:].mean(), 5.0, atol=0.02)


def test_lazy_regularization_applies_every_interval_scaled(rng):
    real, fake = batches(rng)
    critic = linear_critic(W)
    full = float(GradientPenalty(2.0)(critic, real, fake))
    lazy = GradientPenalty(2.0, interval=3)
    values = [float(lazy(critic, real, fake)) for _ in range(6)]
    np.testing.assert_allclose(values, [3 * full, 0, 0, 3 * full, 0, 0], rtol=1e-5)


def test_max_gradient_penalty_uses_the_batch_maximum(rng):
    # f(x) = 0.5*||x||^2 has gradient x: the penalty is (max ||x_hat|| - 1)^2.
    inputs = keras.Input((2,))
    critic = keras.Model(inputs, keras.layers.Lambda(lambda x: 0.5 * tf.reduce_sum(x * x, 1, keepdims=True))(inputs))
    real = rng.normal(size=(32, 2)).astype("float32")
    penalty = MaxGradientPenalty(1.0, sampling="real_perturbation", noise_std=0.0)
    value = float(penalty(critic, real, real))
    largest = np.linalg.norm(real, axis=1).max()
    np.testing.assert_allclose(value, (largest - 1) ** 2, rtol=1e-5)
    one_sided = MaxGradientPenalty(1.0, one_sided=True, sampling="real_perturbation", noise_std=0.0)
    assert float(one_sided(critic, real * 1e-3, real * 1e-3)) == 0.0


def test_max_gradient_buffer_keeps_the_steepest_points(rng):
    inputs = keras.Input((2,))
    critic = keras.Model(inputs, keras.layers.Lambda(lambda x: 0.5 * tf.reduce_sum(x * x, 1, keepdims=True))(inputs))
    far = np.array([[3.0, 4.0]] + [[0.1, 0.0]] * 7, "float32")  # one point with gradient norm 5
    near = np.full((8, 2), 0.2, "float32")
    penalty = MaxGradientPenalty(1.0, buffer_size=4, sampling="real_perturbation", noise_std=0.0)
    np.testing.assert_allclose(float(penalty(critic, far, far)), 16.0, rtol=1e-5)
    # The steep point is remembered: the maximum still runs over it.
    np.testing.assert_allclose(float(penalty(critic, near, near)), 16.0, rtol=1e-5)
    assert np.any(np.all(np.isclose(penalty.buffer.numpy(), [3.0, 4.0]), axis=1))
    # The batch statistics only describe the fresh points.
    assert float(penalty.gradient_norm_max.result()) < 5.0


def test_augmented_lagrangian_value_and_multiplier_update(rng):
    real, fake = batches(rng)
    critic = linear_critic(W)
    c = np.linalg.norm(W) - 1
    penalty = MaxGradientAugmentedLagrangian(rho=3.0, multiplier_lr=0.1)
    np.testing.assert_allclose(float(penalty(critic, real, fake)), 3.0 * c**2, rtol=1e-5)  # lambda = 0
    penalty.after_critic_update(critic)
    np.testing.assert_allclose(float(penalty.multiplier), 0.1 * c, rtol=1e-5)
    np.testing.assert_allclose(float(penalty(critic, real, fake)), 3.0 * c**2 + 0.1 * c * c, rtol=1e-5)
    penalty.after_critic_update(critic)
    np.testing.assert_allclose(float(penalty.multiplier), 0.2 * c, rtol=1e-5)
    np.testing.assert_allclose(float(penalty.multiplier_metric.result()), 0.2 * c, rtol=1e-5)
    # The multiplier is a constant of the loss: the gradient wrt w is (2 rho c + lambda) w/||w||.
    kernel = critic.layers[0].kernel
    with tf.GradientTape() as tape:
        value = penalty(critic, real, fake)
    expected = (2 * 3.0 * c + 0.2 * c) * W / np.linalg.norm(W)
    np.testing.assert_allclose(tape.gradient(value, kernel).numpy()[:, 0], expected, rtol=1e-4)


def test_alp_finds_the_gradient_direction_of_a_linear_critic(rng):
    real, fake = batches(rng)
    critic = linear_critic(W)
    norm = np.linalg.norm(W)
    penalty = AdversarialLipschitzPenalty(weight=2.0, power_iterations=1)
    penalty.build(real.shape)
    x = tf.constant(np.concatenate([real, fake]))
    values = tf.reshape(critic(x), [-1])
    start = RandomStream([0, 1]).normal(tf.shape(x))
    direction = penalty.adversarial_direction(critic, x, values, start).numpy()
    np.testing.assert_allclose(np.abs(direction @ W), norm, rtol=1e-5)  # +-w/||w||
    np.testing.assert_allclose(float(penalty(critic, real, fake)), 2.0 * (norm - 1) ** 2, rtol=1e-4)
    np.testing.assert_allclose(float(penalty.quotient_mean.result()), norm, rtol=1e-4)
    assert float(penalty.violation_rate.result()) == 1.0
    assert float(penalty.violations.result()) == 2 * len(real)


def test_alp_without_power_iteration_underestimates_the_quotient(rng):
    real, fake = batches(rng)
    penalty = AdversarialLipschitzPenalty(weight=1.0, power_iterations=0, target=0.0, form="two_sided")
    value = float(penalty(linear_critic(W), real, fake))
    # mean of |w.d|^2 over random unit d in R^3 is ||w||^2 / 3.
    assert value < np.linalg.norm(W) ** 2 * 0.6
    assert float(penalty.quotient_max.result()) <= np.linalg.norm(W) * (1 + 1e-5)


def test_alp_forms_and_gradients(rng):
    real, fake = batches(rng)
    critic = linear_critic(W)
    norm = np.linalg.norm(W)
    v = norm - 1.5
    forms = {"one_sided": v**2, "two_sided": v**2, "absolute_and_square": v + v**2}
    for form, expected in forms.items():
        penalty = AdversarialLipschitzPenalty(weight=1.0, target=1.5, form=form)
        np.testing.assert_allclose(float(penalty(critic, real, fake)), expected, rtol=1e-4)
    below = linear_critic(SMALL_W)
    assert float(AdversarialLipschitzPenalty(target=1.0)(below, real, fake)) == 0.0
    two_sided = float(AdversarialLipschitzPenalty(weight=1.0, form="two_sided")(below, real, fake))
    np.testing.assert_allclose(two_sided, (np.linalg.norm(SMALL_W) - 1) ** 2, rtol=1e-4)
    # Differentiated through f(x) and f(x + r_adv): d/dw (||w|| - K)^2 = 2 (||w|| - K) w/||w||.
    kernel = critic.layers[0].kernel
    penalty = AdversarialLipschitzPenalty(weight=1.0)
    with tf.GradientTape() as tape:
        value = penalty(critic, real, fake)
    np.testing.assert_allclose(tape.gradient(value, kernel).numpy()[:, 0], 2 * (norm - 1) * W / norm, rtol=1e-3)


def squared_critic(dimension=1):
    """f(x) = ||x||^2: at x = 0 the Lipschitz quotient of a perturbation r is ||r||."""
    inputs = keras.Input((dimension,))
    return keras.Model(inputs, keras.layers.Lambda(lambda x: tf.reduce_sum(x * x, 1, keepdims=True))(inputs))


def test_alp_perturbation_lengths_are_uniform_in_epsilon():
    zeros = np.zeros((2000, 1), "float32")
    penalty = AdversarialLipschitzPenalty(weight=1.0, epsilon=(0.5, 2.0), target=100.0)
    penalty(squared_critic(), zeros, zeros)
    # quotient = |0 - eps^2| / eps = eps ~ U[0.5, 2.0] per sample (real and fake).
    assert float(penalty.quotient_mean.result()) == pytest.approx(1.25, abs=0.03)
    assert 1.95 < float(penalty.quotient_max.result()) <= 2.0


def test_alp_clipping_shortens_the_perturbation():
    zeros = np.zeros((2000, 1), "float32")
    penalty = AdversarialLipschitzPenalty(weight=1.0, epsilon=(0.5, 2.0), target=100.0, clip=(-1.0, 1.0))
    penalty(squared_critic(), zeros, zeros)
    # x + r clipped to [-1, 1]: the pair distance is min(eps, 1), and so is the quotient.
    expected_mean = (0.5 * 0.75 + 1.0 * 1.0) / 1.5  # E[min(eps, 1)] for eps ~ U[0.5, 2]
    assert float(penalty.quotient_mean.result()) == pytest.approx(expected_mean, abs=0.02)
    assert float(penalty.quotient_max.result()) == pytest.approx(1.0, abs=1e-6)


def test_weight_clipping_clips_after_update():
    critic = linear_critic([3.0, -0.001, 0.5], b=-2.0)
    penalty = WeightClipping(0.01)
    assert float(penalty(critic, np.zeros((2, 3), "float32"), np.zeros((2, 3), "float32"))) == 0.0
    penalty.after_critic_update(critic)
    np.testing.assert_allclose(critic.layers[0].kernel.numpy()[:, 0], [0.01, -0.001, 0.01])
    np.testing.assert_allclose(critic.layers[0].bias.numpy(), [-0.01])


ALL = [
    GradientPenalty(3.0, sampling="real_perturbation", noise_std=0.2, norm=1, interval=2, seed=5),
    LipschitzPenalty(7.0, norm="inf"),
    MaxGradientPenalty(2.0, one_sided=True, buffer_size=8),
    MaxGradientAugmentedLagrangian(rho=4.0, multiplier_lr=0.01, buffer_size=4),
    AdversarialLipschitzPenalty(5.0, xi=2.0, epsilon=(0.2, 3.0), power_iterations=2, target=1.5,
                                form="absolute_and_square", clip=(-1, 1)),
    WeightClipping(0.05),
]


@pytest.mark.parametrize("penalty", ALL, ids=lambda p: type(p).__name__)
def test_config_roundtrip(penalty):
    config = keras.saving.serialize_keras_object(penalty)
    restored = keras.saving.deserialize_keras_object(config)
    assert type(restored) is type(penalty)
    assert restored.get_config() == penalty.get_config()
    # Every constructor argument (of the class and its bases) is in the config
    # and restored as an attribute with the non-default value given above.
    arguments = set()
    for cls in type(penalty).__mro__:
        if cls.__module__.startswith("tflip"):
            arguments |= set(inspect.signature(cls.__init__).parameters) - {"self", "kwargs"}
    arguments -= {"weight", "one_sided"} if isinstance(penalty, MaxGradientAugmentedLagrangian) else set()
    assert arguments <= set(penalty.get_config())
    for name in arguments:
        assert getattr(restored, name) == getattr(penalty, name), name


def test_get_by_name():
    assert isinstance(penalties.get("lp"), LipschitzPenalty)
    assert isinstance(penalties.get("MaxGradientAugmentedLagrangian"), MaxGradientAugmentedLagrangian)
    assert penalties.get(None) is None
    with pytest.raises(ValueError, match="`penalty`"):
        penalties.get("wgan-gp-typo")


@pytest.mark.parametrize(
    "make, argument",
    [
        (lambda: GradientPenalty(-1.0), "weight"),
        (lambda: LipschitzPenalty(sampling="everywhere"), "sampling"),
        (lambda: LipschitzPenalty(noise_std=-0.1), "noise_std"),
        (lambda: GradientPenalty(norm=0.5), "norm"),
        (lambda: GradientPenalty(norm="l2"), "norm"),
        (lambda: GradientPenalty(interval=0), "interval"),
        (lambda: GradientPenalty(seed=1.5), "seed"),
        (lambda: MaxGradientPenalty(buffer_size=-1), "buffer_size"),
        (lambda: MaxGradientAugmentedLagrangian(rho=-1.0), "rho"),
        (lambda: MaxGradientAugmentedLagrangian(multiplier_lr=0.0), "multiplier_lr"),
        (lambda: MaxGradientAugmentedLagrangian(interval=2), "interval"),
        (lambda: MaxGradientAugmentedLagrangian(weight=2.0), "weight"),
        (lambda: MaxGradientAugmentedLagrangian(one_sided=True), "one_sided"),
        (lambda: AdversarialLipschitzPenalty(weight=-2.0), "weight"),
        (lambda: AdversarialLipschitzPenalty(xi=0.0), "xi"),
        (lambda: AdversarialLipschitzPenalty(epsilon=(1.0, 0.5)), "epsilon"),
        (lambda: AdversarialLipschitzPenalty(epsilon=(0.0, 1.0)), "epsilon"),
        (lambda: AdversarialLipschitzPenalty(epsilon=3.0), "epsilon"),
        (lambda: AdversarialLipschitzPenalty(power_iterations=-1), "power_iterations"),
        (lambda: AdversarialLipschitzPenalty(target=-1.0), "target"),
        (lambda: AdversarialLipschitzPenalty(form="square"), "form"),
        (lambda: AdversarialLipschitzPenalty(clip=(1.0, -1.0)), "clip"),
        (lambda: WeightClipping(0.0), "clip"),
    ],
)
def test_bad_arguments_raise_value_error_naming_the_argument(make, argument):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        make()


def test_critic_with_several_outputs_is_rejected(rng):
    critic = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    real, fake = batches(rng)
    with pytest.raises(ValueError, match="one value per sample"):
        GradientPenalty()(critic, real, fake)


def test_alp_reuses_precomputed_values(rng):
    real, fake = batches(rng)
    critic = linear_critic(W)
    values = (tf.reshape(critic(real), [-1]), tf.reshape(critic(fake), [-1]))
    seed = tf.constant([1, 2], tf.int64)
    with_values = AdversarialLipschitzPenalty(weight=1.0, target=0.5)(critic, real, fake, seed=seed, values=values)
    without = AdversarialLipschitzPenalty(weight=1.0, target=0.5)(critic, real, fake, seed=seed)
    np.testing.assert_allclose(float(with_values), float(without), rtol=1e-6)
    np.testing.assert_allclose(float(without), (np.linalg.norm(W) - 0.5) ** 2, rtol=1e-4)
