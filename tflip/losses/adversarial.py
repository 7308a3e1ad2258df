"""Adversarial losses of GAN critics and generators, on per-sample critic values.

Each critic loss takes the critic's float32 values on real and fake samples
and returns the batch mean to minimize; each generator loss takes the values
on fake samples.

- `"wasserstein"`: critic `E f(fake) - E f(real)`, generator `-E f(fake)`
  (Arjovsky et al. 2017).
- `"hinge"`: critic `E relu(1 - f(real)) + E relu(1 + f(fake))`, generator
  `-E f(fake)` (Miyato et al. 2018; the Sargent thesis, section 2).
- `"nonsaturating"`: critic `E softplus(-f(real)) + E softplus(f(fake))`
  (the logistic loss with f as logit), generator `E softplus(-f(fake))`
  (Goodfellow et al. 2014; Zhou et al. show Lipschitz regularization helps
  it too).
"""

import tensorflow as tf

from tflip import _validation
from tflip._replica import safe_mean


def wasserstein_critic_loss(real_values, fake_values):
    return safe_mean(fake_values) - safe_mean(real_values)


def wasserstein_generator_loss(fake_values):
    return -safe_mean(fake_values)


def hinge_critic_loss(real_values, fake_values):
    return safe_mean(tf.nn.relu(1.0 - real_values)) + safe_mean(tf.nn.relu(1.0 + fake_values))


def nonsaturating_critic_loss(real_values, fake_values):
    return safe_mean(tf.nn.softplus(-real_values)) + safe_mean(tf.nn.softplus(fake_values))


def nonsaturating_generator_loss(fake_values):
    return safe_mean(tf.nn.softplus(-fake_values))


GAN_LOSSES = {
    "wasserstein": (wasserstein_critic_loss, wasserstein_generator_loss),
    "hinge": (hinge_critic_loss, wasserstein_generator_loss),
    "nonsaturating": (nonsaturating_critic_loss, nonsaturating_generator_loss),
}


def get_gan_loss(name):
    """Returns `(critic_loss, generator_loss)` for a loss name in `GAN_LOSSES`."""
    return GAN_LOSSES[_validation.one_of("loss", name, GAN_LOSSES)]
