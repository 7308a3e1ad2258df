"""Adversarial losses of GAN critics and generators, on per-sample critic values.

Each critic loss takes the critic's float32 values on real and fake samples
and returns the batch mean to minimize; each generator loss takes the values
on fake samples, and the values on real samples as `real_values` (the
relativistic loss needs them; the others ignore them, see
`generator_loss_needs_real_values`).

- `"wasserstein"`: critic `E f(fake) - E f(real)`, generator `-E f(fake)`
  (Arjovsky et al. 2017).
- `"hinge"`: critic `E relu(1 - f(real)) + E relu(1 + f(fake))`, generator
  `-E f(fake)` (Miyato et al. 2018; the Sargent thesis, section 2).
- `"nonsaturating"`: critic `E softplus(-f(real)) + E softplus(f(fake))`
  (the logistic loss with f as logit), generator `E softplus(-f(fake))`
  (Goodfellow et al. 2014; Zhou et al. show Lipschitz regularization helps
  it too).
- `"relativistic_pairing"`: critic `E softplus(f(fake) - f(real))`,
  generator `E softplus(f(real) - f(fake))` over pairs (real_i, fake_i) of
  the batch (RpGAN, Jolicoeur-Martineau 2019; the loss of R3GAN, Huang et
  al. 2024, trained with R1 + R2: `tflip.penalties.ZeroCenteredGradientPenalty`).
"""

import tensorflow as tf

from tflip import _validation
from tflip._replica import safe_mean


def wasserstein_critic_loss(real_values, fake_values):
    return safe_mean(fake_values) - safe_mean(real_values)


def wasserstein_generator_loss(fake_values, real_values=None):
    del real_values
    return -safe_mean(fake_values)


def hinge_critic_loss(real_values, fake_values):
    return safe_mean(tf.nn.relu(1.0 - real_values)) + safe_mean(tf.nn.relu(1.0 + fake_values))


def nonsaturating_critic_loss(real_values, fake_values):
    return safe_mean(tf.nn.softplus(-real_values)) + safe_mean(tf.nn.softplus(fake_values))


def nonsaturating_generator_loss(fake_values, real_values=None):
    del real_values
    return safe_mean(tf.nn.softplus(-fake_values))


def _paired_differences(minuend, subtrahend, minuend_name, subtrahend_name):
    """`minuend - subtrahend` row by row, for two batches of per-sample values of one size."""
    minuend = tf.reshape(minuend, [-1])
    subtrahend = tf.reshape(subtrahend, [-1])
    sizes = minuend.shape[0], subtrahend.shape[0]
    if None not in sizes and sizes[0] != sizes[1]:
        raise ValueError(
            f"The relativistic pairing loss pairs the i-th fake with the i-th real sample: `{minuend_name}` "
            f"and `{subtrahend_name}` must have the same size, got {sizes[0]} and {sizes[1]}."
        )
    if None in sizes:
        check = tf.debugging.assert_equal(
            tf.size(minuend), tf.size(subtrahend),
            message=f"relativistic pairing loss: `{minuend_name}` and `{subtrahend_name}` differ in size",
        )
        with tf.control_dependencies([check]):
            return minuend - subtrahend
    return minuend - subtrahend


def relativistic_pairing_critic_loss(real_values, fake_values):
    """RpGAN critic loss `mean_i softplus(f(fake_i) - f(real_i))`.

    The relativistic pairing GAN of Jolicoeur-Martineau 2019 ("The
    relativistic discriminator: a key element missing from standard GAN",
    section 4, the relativistic standard GAN: -log sigmoid(f(real) - f(fake))
    = softplus(f(fake) - f(real))), the objective R3GAN trains (Huang et al.
    2024, "The GAN is dead; long live the GAN!", section 2): the critic is rewarded for
    rating each real sample above the fake sample it is paired with (same
    row), rather than for rating each sample on an absolute scale.

    Args:
        real_values: per-sample critic values on real samples, shape (n,).
        fake_values: per-sample critic values on fake samples, shape (n,).

    Returns:
        float32 scalar, the mean over the n pairs.

    Raises:
        ValueError: if the two batches differ in (static) size.
    """
    return safe_mean(tf.nn.softplus(_paired_differences(fake_values, real_values, "fake_values", "real_values")))


def relativistic_pairing_generator_loss(fake_values, real_values=None):
    """RpGAN generator loss `mean_i softplus(f(real_i) - f(fake_i))`.

    The generator's side of `relativistic_pairing_critic_loss`
    (Jolicoeur-Martineau 2019, section 4; R3GAN section 2): the roles of
    real and fake swapped. It needs the critic's values on a real batch of the same size
    as the fake batch; no gradient flows into them (they do not depend on
    the generator).

    Args:
        fake_values: per-sample critic values on generated samples, shape (n,).
        real_values: per-sample critic values on real samples, shape (n,).

    Returns:
        float32 scalar, the mean over the n pairs.

    Raises:
        ValueError: if `real_values` is None or the sizes differ.
    """
    if real_values is None:
        raise ValueError(
            "The relativistic pairing generator loss needs `real_values`, the critic's values on a real batch "
            "paired with the fake batch."
        )
    real_values = tf.stop_gradient(real_values)
    return safe_mean(tf.nn.softplus(_paired_differences(real_values, fake_values, "real_values", "fake_values")))


GAN_LOSSES = {
    "wasserstein": (wasserstein_critic_loss, wasserstein_generator_loss),
    "hinge": (hinge_critic_loss, wasserstein_generator_loss),
    "nonsaturating": (nonsaturating_critic_loss, nonsaturating_generator_loss),
    "relativistic_pairing": (relativistic_pairing_critic_loss, relativistic_pairing_generator_loss),
}


def get_gan_loss(name):
    """Returns `(critic_loss, generator_loss)` for a loss name in `GAN_LOSSES`.

    Every generator loss is called as `generator_loss(fake_values,
    real_values=None)`; pass `real_values` (the critic's values on a real
    batch of the fake batch's size) where `generator_loss_needs_real_values`.
    """
    return GAN_LOSSES[_validation.one_of("loss", name, GAN_LOSSES)]


def generator_loss_needs_real_values(name):
    """Whether the generator loss of `name` (a key of `GAN_LOSSES`) reads the critic's values on real samples.

    True for the relativistic loss, which compares each fake sample with a
    real one; a training step computes those values only when needed.
    """
    return GAN_LOSSES[_validation.one_of("loss", name, GAN_LOSSES)][1] is relativistic_pairing_generator_loss
