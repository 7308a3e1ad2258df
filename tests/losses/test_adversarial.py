"""The relativistic pairing (RpGAN) losses against hand-computed values."""

import numpy as np
import pytest
import tensorflow as tf

from tflip.losses import (
    GAN_LOSSES,
    generator_loss_needs_real_values,
    get_gan_loss,
    relativistic_pairing_critic_loss,
    relativistic_pairing_generator_loss,
)

REAL = np.array([2.0, 0.5, -1.0], "float32")
FAKE = np.array([-2.0, 0.5, 1.0], "float32")


def softplus(v):
    return np.log1p(np.exp(np.asarray(v, "float64")))


def test_relativistic_pairing_losses_on_hand_computed_pairs():
    # Pairs (real_i, fake_i): fake - real = (-4, 0, 2).
    critic = (softplus(-4.0) + np.log(2.0) + softplus(2.0)) / 3
    generator = (softplus(4.0) + np.log(2.0) + softplus(-2.0)) / 3
    critic_loss, generator_loss = get_gan_loss("relativistic_pairing")
    assert critic_loss is relativistic_pairing_critic_loss and generator_loss is relativistic_pairing_generator_loss
    assert float(critic_loss(REAL, FAKE)) == pytest.approx(critic, rel=1e-6)
    assert float(generator_loss(FAKE, real_values=REAL)) == pytest.approx(generator, rel=1e-6)
    # Shifting every value by a constant changes nothing: only differences count.
    assert float(critic_loss(REAL + 7.0, FAKE + 7.0)) == pytest.approx(critic, rel=1e-6)
    # (batch, 1) critic outputs are per-sample values too.
    assert float(critic_loss(REAL[:, None], FAKE[:, None])) == pytest.approx(critic, rel=1e-6)


def test_critic_loss_gradients_match_the_sigmoid_of_the_differences():
    real, fake = tf.constant(REAL), tf.constant(FAKE)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([real, fake])
        critic = relativistic_pairing_critic_loss(real, fake)
        generator = relativistic_pairing_generator_loss(fake, real)
    sigmoid = 1.0 / (1.0 + np.exp(-(FAKE.astype("float64") - REAL)))
    np.testing.assert_allclose(tape.gradient(critic, fake).numpy(), sigmoid / 3, rtol=1e-6)
    np.testing.assert_allclose(tape.gradient(critic, real).numpy(), -sigmoid / 3, rtol=1e-6)
    # The generator's loss moves the fake values only: the real ones are constants to it.
    np.testing.assert_allclose(tape.gradient(generator, fake).numpy(), -(1.0 - sigmoid) / 3, rtol=1e-6)
    assert tape.gradient(generator, real) is None


def test_only_the_relativistic_generator_loss_needs_real_values():
    assert [name for name in GAN_LOSSES if generator_loss_needs_real_values(name)] == ["relativistic_pairing"]
    # The others accept and ignore them, so a step may always pass real_values.
    for name in ("wasserstein", "hinge", "nonsaturating"):
        _, generator_loss = get_gan_loss(name)
        assert float(generator_loss(FAKE, real_values=REAL)) == float(generator_loss(FAKE))
    with pytest.raises(ValueError, match="`real_values`"):
        relativistic_pairing_generator_loss(FAKE)
    with pytest.raises(ValueError, match="`loss`"):
        generator_loss_needs_real_values("relativistic")


def test_unpaired_batches_are_rejected():
    with pytest.raises(ValueError, match="`fake_values` and `real_values` must have the same size, got 2 and 3"):
        relativistic_pairing_critic_loss(REAL, FAKE[:2])
    with pytest.raises(ValueError, match="same size"):
        relativistic_pairing_generator_loss(FAKE, REAL[:2])

    @tf.function(input_signature=[tf.TensorSpec([None]), tf.TensorSpec([None])])
    def dynamic(real, fake):
        return relativistic_pairing_critic_loss(real, fake)

    assert float(dynamic(REAL, FAKE)) == pytest.approx(float(relativistic_pairing_critic_loss(REAL, FAKE)))
    with pytest.raises(tf.errors.InvalidArgumentError, match="differ in size"):
        dynamic(REAL, FAKE[:2])
