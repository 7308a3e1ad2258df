"""Losses: adversarial (GAN) losses on critic values, and the multi-class hinge margin loss."""

from tflip.losses.adversarial import (  # noqa: F401
    GAN_LOSSES,
    get_gan_loss,
    hinge_critic_loss,
    nonsaturating_critic_loss,
    nonsaturating_generator_loss,
    wasserstein_critic_loss,
    wasserstein_generator_loss,
)
from tflip.losses.margin import MulticlassHingeMargin, multiclass_hinge_margin  # noqa: F401
