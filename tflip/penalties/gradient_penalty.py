"""Gradient penalties on sampled points: GP (two-sided) and LP (one-sided)."""

import keras
import tensorflow as tf

from tflip._replica import safe_mean
from tflip.penalties.base import GradientNormPenalty


@keras.saving.register_keras_serializable(package="tflip")
class GradientPenalty(GradientNormPenalty):
    """Two-sided gradient penalty of WGAN-GP (Gulrajani et al. 2017).

    `weight * mean((||grad f(x_hat)||_* - 1)^2)` over points `x_hat`, by
    default interpolates `a * real + (1 - a) * fake` with `a ~ U[0, 1]` drawn
    per sample (uniform, as in the paper: the keras.io WGAN-GP example draws
    `a` from a normal distribution, which samples outside the segment).

    Args:
        weight: lambda, 10 in the paper.
        sampling: see `GradientNormPenalty`.
        noise_std: see `GradientNormPenalty`.
        norm: see `GradientNormPenalty`.
        interval: see `GradientNormPenalty`.
        seed: see `GradientNormPenalty`.

    Example:

        >>> penalty = GradientPenalty(weight=10.0)
        >>> # critic loss = mean f(fake) - mean f(real) + penalty(critic, real, fake)
    """

    def penalty_from_norms(self, norms):
        return safe_mean(tf.square(norms - 1.0))


@keras.saving.register_keras_serializable(package="tflip")
class LipschitzPenalty(GradientNormPenalty):
    """One-sided Lipschitz penalty of WGAN-LP (Petzka et al. 2018, eq. 8).

    `weight * mean(max(0, ||grad f(x_hat)||_* - 1)^2)`: only gradients larger
    than 1 are penalized, which is what the Lipschitz constraint asks for, and
    makes training far less sensitive to `weight` than GP (Petzka section 6).

    Args:
        weight: lambda (Petzka uses 5 to 10 on toy data; the paper shows that
            LP tolerates large values such as 100).
        sampling: `"interpolates"` (default), `"real_perturbation"` or
            `"real_fake_perturbation"` (Petzka appendix D.4).
        noise_std: see `GradientNormPenalty`.
        norm: see `GradientNormPenalty`.
        interval: see `GradientNormPenalty`.
        seed: see `GradientNormPenalty`.

    Example:

        >>> penalty = LipschitzPenalty(weight=5.0, sampling="real_perturbation")
    """

    def penalty_from_norms(self, norms):
        return safe_mean(tf.square(tf.nn.relu(norms - 1.0)))


GP = GradientPenalty
LP = LipschitzPenalty
