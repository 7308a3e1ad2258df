"""Losses: adversarial (GAN) losses on critic values; classifier losses (hinge margin, HKR, cross-entropies)."""

from tflip.losses.adversarial import (  # noqa: F401
    GAN_LOSSES,
    generator_loss_needs_real_values,
    get_gan_loss,
    hinge_critic_loss,
    nonsaturating_critic_loss,
    nonsaturating_generator_loss,
    relativistic_pairing_critic_loss,
    relativistic_pairing_generator_loss,
    wasserstein_critic_loss,
    wasserstein_generator_loss,
)
from tflip.losses.cross_entropy import (  # noqa: F401
    OffsetCrossEntropy,
    TemperatureCrossEntropy,
    offset_cross_entropy,
    temperature_cross_entropy,
)
from tflip.losses.hkr import MulticlassHKR, multiclass_hkr, multiclass_kantorovich_rubinstein  # noqa: F401
from tflip.losses.margin import MulticlassHingeMargin, multiclass_hinge_margin  # noqa: F401
