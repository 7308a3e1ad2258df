"""Zero-centered gradient penalties R1 and R2 (Mescheder et al. 2018) with lazy regularization."""

import keras
import tensorflow as tf

from tflip import _validation
from tflip._replica import finite_max, global_statistics, safe_mean
from tflip.gradients import input_gradients
from tflip.penalties.base import Penalty, add_lazy_counter, apply_lazily, warn_if_batch_coupled

_SAMPLINGS = ("real", "fake", "real_fake")


@keras.saving.register_keras_serializable(package="tflip")
class ZeroCenteredGradientPenalty(Penalty):
    """Zero-centered gradient penalty on data and/or generated samples (R1, R2, R1 + R2).

    `weight / 2 * E ||grad f(x)||^2` over real samples (R1, Mescheder et al.
    2018, "Which Training Methods for GANs do actually Converge?", eq. 9),
    generated samples (R2, eq. 10) or both (`weight / 2 * (R1 + R2)`, the
    regularization of R3GAN, Huang et al. 2024, "The GAN is dead; long live
    the GAN!"). Unlike the Lipschitz penalties (GP, LP), which push gradient
    norms towards 1 between the distributions, these push the critic's
    gradient to 0 on the samples themselves: near a Nash equilibrium they
    make (non-Wasserstein) GAN training locally convergent (Mescheder et al.,
    theorem 4.1). They do not make the critic 1-Lipschitz, so its values are
    no Wasserstein distance estimate.

    With `interval` N > 1 the penalty is applied lazily (Karras et al. 2020,
    StyleGAN2, section 3.1 and appendix B: N = 16): evaluated on the 1st,
    (N+1)-th, ... critic step, multiplied by N, and 0 on the other steps,
    which compute no input gradients. The model's `penalty` log is this
    applied value (its mean over steps is about the mean of the penalty);
    the diagnostics `gradient_norm_mean` and `gradient_norm_max` (the
    Euclidean norms of the input gradients at the penalized samples, the
    maximum over the global batch) are updated on the penalized steps only.

    Args:
        weight: gamma (>= 0); the penalty is `gamma / 2` times the mean
            squared gradient norm. Mescheder et al. and StyleGAN2 use 10 on
            1024x1024 faces; small images and toy data need smaller values
            (R3GAN also decays gamma during training).
        sampling: where the gradient is penalized: `"real"` (R1), `"fake"`
            (R2) or `"real_fake"` (default, R1 + R2 with one gamma, as R3GAN).
        interval: lazy regularization, apply the penalty every `interval`-th
            critic step scaled by `interval` (positive int; 1, the default,
            applies it at every step). The same word and mechanism as
            `GradientNormPenalty`'s `interval`.
        seed: see `Penalty` (the penalty draws no random numbers).

    Example:

        >>> penalty = ZeroCenteredGradientPenalty(weight=1.0)  # R1 + R2, R3GAN
        >>> gan = WGAN(generator, critic, latent_dim=64, loss="relativistic_pairing", penalty=penalty)
    """

    def __init__(self, weight=10.0, sampling="real_fake", interval=1, seed=0, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.weight = _validation.non_negative_number("weight", weight)
        self.sampling = _validation.one_of("sampling", sampling, _SAMPLINGS)
        self.interval = _validation.positive_int("interval", interval)
        self.gradient_norm_mean = keras.metrics.Mean(name="gradient_norm_mean")
        self.gradient_norm_max = keras.metrics.Mean(name="gradient_norm_max")

    def build(self, input_shape):
        super().build(input_shape)
        self.calls = add_lazy_counter(self, self.interval)

    def compute(self, critic, real, fake, stream, values=None):
        penalty, maximum, applied = apply_lazily(
            self.calls, self.interval, lambda: self.evaluate(critic, real, fake), extras=1)
        # The maximum over replicas is taken outside the lazy branch (no
        # collectives inside a tf.cond of a replica function); a skipped
        # step adds nothing to the metric (weight 0).
        global_maximum = global_statistics(maxima=[maximum])[1][0]
        self.gradient_norm_max.update_state(global_maximum, sample_weight=applied)
        return penalty

    def evaluate(self, critic, real, fake):
        """`(weighted penalty, maximum gradient norm on this replica)`, evaluated now (no lazy skipping).

        Also updates `gradient_norm_mean` with the penalized samples' gradient norms.
        """
        warn_if_batch_coupled(critic, type(self).__name__)
        parts = {"real": [real], "fake": [fake], "real_fake": [real, fake]}[self.sampling]
        parts = [tf.cast(part, "float32") for part in parts]
        # One gradient pass over all penalized samples: per-sample gradients
        # of the batch sum, exact for a critic without batch coupling.
        gradients = input_gradients(critic, tf.concat(parts, 0) if len(parts) > 1 else parts[0])
        flat = tf.reshape(gradients, [tf.shape(gradients)[0], -1])
        squared_norms = tf.reduce_sum(tf.square(flat), axis=1)
        # Each part's own mean: R1 + R2 is the sum of two expectations, also
        # when a replica's real and fake shares differ in size.
        sizes = [tf.shape(part)[0] for part in parts]
        penalty = tf.add_n([safe_mean(piece) for piece in tf.split(squared_norms, sizes)])
        norms = tf.sqrt(tf.stop_gradient(squared_norms))
        self.gradient_norm_mean.update_state(norms)
        return 0.5 * self.weight * penalty, finite_max(norms)

    def get_config(self):
        config = super().get_config()
        config.update(weight=self.weight, sampling=self.sampling, interval=self.interval)
        return config


@keras.saving.register_keras_serializable(package="tflip")
class R1Penalty(ZeroCenteredGradientPenalty):
    """R1: `gamma / 2 * E_real ||grad f(x)||^2` (Mescheder et al. 2018, eq. 9).

    The zero-centered gradient penalty on real samples, the regularizer of
    StyleGAN/StyleGAN2 (applied lazily there, `interval=16`) and half of
    R3GAN's. See `ZeroCenteredGradientPenalty` for the lazy option and the
    logged diagnostics.

    Args:
        weight: gamma (>= 0).
        interval: lazy regularization interval (positive int, default 1).
        seed: see `Penalty`.

    Example:

        >>> penalty = R1Penalty(weight=10.0, interval=16)  # StyleGAN2's lazy R1
    """

    def __init__(self, weight=10.0, interval=1, seed=0, **kwargs):
        super().__init__(weight=weight, sampling="real", interval=interval, seed=seed, **kwargs)

    def get_config(self):
        config = super().get_config()
        del config["sampling"]
        return config


@keras.saving.register_keras_serializable(package="tflip")
class R2Penalty(ZeroCenteredGradientPenalty):
    """R2: `gamma / 2 * E_fake ||grad f(x)||^2` (Mescheder et al. 2018, eq. 10).

    The zero-centered gradient penalty on generated samples. R3GAN (Huang et
    al. 2024, section 2) found R1 alone insufficient to keep its relativistic
    GAN stable and regularizes both sides; `ZeroCenteredGradientPenalty()`
    applies R1 + R2 with one gamma.

    Args:
        weight: gamma (>= 0).
        interval: lazy regularization interval (positive int, default 1).
        seed: see `Penalty`.

    Example:

        >>> penalty = R2Penalty(weight=1.0)
    """

    def __init__(self, weight=10.0, interval=1, seed=0, **kwargs):
        super().__init__(weight=weight, sampling="fake", interval=interval, seed=seed, **kwargs)

    def get_config(self):
        config = super().get_config()
        del config["sampling"]
        return config
