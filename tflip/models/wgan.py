"""The `WGAN` Keras model: critic and generator trained by `fit` with a penalty."""

import keras
import numpy as np
import tensorflow as tf

from tflip import _validation, penalties
from tflip._random import SeedCounter
from tflip._replica import safe_mean
from tflip.gradients import critic_values
from tflip.lipschitz.spectra import linear_layers
from tflip.losses.adversarial import generator_loss_needs_real_values, get_gan_loss
from tflip.models.critic_step import (
    BuildOnFitMixin,
    CriticMetrics,
    check_finite_samples,
    critic_update,
    keras_compile_arguments,
    model_input_shape,
    model_output_shape,
    optimizer_loss,
    shapes_match,
    step_logs,
    warn_if_check_compiled_away,
)
from tflip.models.generator_ema import clone_generator, ema_settings, step_decay, update_average, variable_pairs
from tflip.ops.spectra import rank_collapse, singular_values, weight_matrix


def default_optimizer():
    """Adam(1e-4, beta_1=0.5, beta_2=0.9): Gulrajani et al.'s toy and image setting."""
    return keras.optimizers.Adam(1e-4, beta_1=0.5, beta_2=0.9)


def prepare_optimizer(optimizer, name):
    """Resolves an optimizer argument and wraps it for mixed_float16 loss scaling.

    `compile()` only wraps `self.optimizer`, so models with their own
    optimizers wrap them here.
    """
    try:
        optimizer = default_optimizer() if optimizer is None else keras.optimizers.get(optimizer)
    except ValueError as error:
        raise ValueError(f"`{name}` must be a Keras optimizer or its name: {error}") from None
    if not isinstance(optimizer, keras.optimizers.Optimizer):
        raise ValueError(f"`{name}` must be a Keras optimizer or its name, got {optimizer!r}.")
    if (
        keras.mixed_precision.global_policy().name == "mixed_float16"
        and not isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
    ):
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer, name=f"{name}_loss_scale")
    return optimizer


def unpack_real(data):
    """The real samples of a `fit` batch: `x`, `(x,)` or `(x, y[, w])` (labels ignored)."""
    x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
    return x


def critic_batches(real, n_critic):
    """Splits a batch into `n_critic` interleaved critic batches of equal size.

    Batch i holds rows i, i + n, i + 2n, ... so that the split commutes with
    the contiguous per-replica split of a distribution strategy (each critic
    step sees the same samples on one device or several). A batch smaller
    than `n_critic` is reused cyclically; leftover rows are dropped.
    """
    size = tf.shape(real)[0]
    # An empty share (a replica's part of a tiny final batch) stays empty.
    rows = tf.where(size > 0, tf.maximum(size // n_critic, 1), 0)
    index = (tf.range(rows)[:, None] * n_critic + tf.range(n_critic)[None, :]) % tf.maximum(size, 1)
    return [tf.gather(real, index[:, i]) for i in range(n_critic)]


def penalized_kernels(model):
    """The effective kernels of the model's trainable linear layers, differentiable, in float32.

    A layer with a constrained kernel (a tflip layer with `effective_kernel`)
    contributes the kernel it applies, `effective_kernel(training=False)`:
    the uncached computation, differentiable with respect to the raw
    weights and free of side effects (`training=True` would advance a
    spectral-normalized layer's power iteration a second time per step;
    after the forward pass of the step the stored vector is the one that
    step used, so both give the same kernel there). Other layers contribute
    their kernel variable. Layers whose kernel is not trainable (frozen) are
    left out: they cannot respond to the penalty.
    """
    kernels = []
    for layer in linear_layers(model):
        if not (layer.trainable and layer.kernel.trainable):
            continue
        effective = getattr(layer, "effective_kernel", None)
        kernels.append(effective(training=False) if effective is not None else tf.cast(layer.kernel, "float32"))
    return kernels


def rank_collapses(model):
    """r(W) of each kernel of `penalized_kernels(model)` (reshaped to a matrix), differentiable.

    r(W) = sum_i sigma_i / (k sigma_max) (`tflip.ops.spectra.rank_collapse`),
    through an SVD in float32 (Sargent section 4.2.2).
    """
    return [rank_collapse(singular_values(weight_matrix(kernel))) for kernel in penalized_kernels(model)]


def mean_rank_collapse(model):
    """Mean r(W) over `penalized_kernels(model)`; 0 without kernels."""
    values = rank_collapses(model)
    return tf.add_n(values) / len(values) if values else tf.constant(0.0)


def generator_gradients(generator, critic, optimizer, generator_loss_fn, latent, rank_penalty=0.0, real=None):
    """Gradients of one generator step, its unscaled loss and mean r(W) (reads weights only).

    With `rank_penalty` > 0 the loss includes `-rank_penalty * sum_i r(W_i)`
    over the same kernels whose mean is returned (`penalized_kernels`: the
    effective kernels of the trainable linear layers; Sargent section 4.2.2).
    `real` (a real batch paired row by row with the latents) is given for
    losses that compare fake and real critic values (relativistic pairing).
    """
    variables = generator.trainable_variables
    real_values = None if real is None else tf.stop_gradient(critic_values(critic, real))
    with tf.GradientTape() as tape:
        fake_values = critic_values(critic, generator(latent, training=True))
        loss = generator_loss_fn(fake_values, real_values)
        rank = tf.constant(0.0)
        if rank_penalty:
            # After the forward pass, so that the kernels are those the step used.
            values = rank_collapses(generator)
            if values:
                total = tf.add_n(values)
                rank = total / len(values)
                loss = loss - rank_penalty * total
        scaled = optimizer_loss(optimizer, loss)
    return tape.gradient(scaled, variables), loss, rank


@keras.saving.register_keras_serializable(package="tflip")
class WGAN(BuildOnFitMixin, keras.Model):
    """A Wasserstein GAN trained with `fit`: `n_critic` critic steps per generator step.

    Each `train_step` receives one batch of real samples and splits it into
    `n_critic` interleaved critic batches, so every critic update sees fresh
    real data (Gulrajani et al., Petzka et al.): pass `batch_size = n_critic *
    critic_batch_size` to `fit` (or batch the dataset so). Each critic update
    draws fresh latent vectors, minimizes the critic loss plus
    `penalty(critic, real, fake)`, and runs the penalty's post-update hook;
    then the generator takes one step on a fresh latent batch of the critic
    batch size (or `generator_batch_size`).

    Logged metrics: `loss`, the quantity to monitor: the critic loss
    including the penalty, averaged over the critic updates (the same value
    as `critic_loss`, under the name Keras' callbacks read by default:
    `TerminateOnNaN`, `EarlyStopping`, `ReduceLROnPlateau`,
    `ModelCheckpoint`); `critic_loss`, `generator_loss`, `wasserstein`
    (`mean f(real) - mean f(fake)` on the critic batches; the negative
    Wasserstein critic loss), `penalty`, and the penalty's diagnostics
    (gradient-norm mean and max on the penalty points, ALP's violation rate,
    MaxAL's multiplier, ...; "max" diagnostics are epoch means of per-step
    maxima). `evaluate` / validation data log `loss` (`val_loss`),
    `critic_loss` and `wasserstein` on held-out real samples; there `loss` and
    `critic_loss` are the critic loss alone (no penalty: it needs input
    gradients and updates the penalty's state). `model.optimizer` is the
    critic's optimizer, so `ReduceLROnPlateau` scales the critic's learning
    rate (the one `loss` responds to); the generator's is left alone.

    Under a distribution strategy, use global batches divisible by the number
    of replicas (and per-replica batches divisible by `n_critic`) for the
    single-device equivalence; a smaller final batch trains without NaN (an
    empty replica share contributes nothing) but is weighted approximately.

    Distribution: under `MirroredStrategy`, `MultiWorkerMirroredStrategy` or
    TPU strategies, create and compile the model inside `strategy.scope()`.
    Losses are scaled by the number of replicas, random draws (latent
    vectors, interpolation coefficients) are drawn for the global batch from a
    saved counter and split by replica, so a distributed run computes the
    single-device updates. Random draws are a function of `seed` and the
    saved counters: a run resumed from a checkpoint continues identically.

    Generator EMA (`ema_decay` or `ema_half_life`): `ema_generator`, a
    non-trainable copy of the generator built from its config, holds an
    exponential moving average of the generator's trainable weights, updated
    after each generator step, and a copy of its non-trainable state
    (batch-norm statistics, power-iteration vectors); training continues on
    the raw weights. `generate`, `ExactWasserstein` and `SampleGrid` sample
    from it by default when it exists (`use_ema=False` for the raw
    generator); `call`, the critic steps and `evaluate` use the raw
    generator. It is saved with the model and resumed from checkpoints. See
    `tflip.models.generator_ema` for why Keras' optimizer EMA is not used.

    Args:
        generator: a Keras model mapping `(batch, latent_dim)` latent vectors
            to samples.
        critic: a Keras model mapping samples to one value per sample.
        latent_dim: size of the latent vectors (standard normal).
        penalty: a `tflip.penalties.Penalty`, its name (`"gp"`, `"lp"`,
            `"alp"`, `"maxgp"`, `"maxal"`, `"clip"`) or `None` (for critics
            that are Lipschitz by construction).
        n_critic: critic updates per generator update (5).
        loss: `"wasserstein"` (default), `"hinge"`, `"nonsaturating"` or
            `"relativistic_pairing"` (RpGAN, Jolicoeur-Martineau 2019; the
            generator step pairs its samples with the last critic batch).
        generator_batch_size: latent batch of the generator step per replica;
            default: the critic batch size.
        seed: seed of the latent draws.
        rank_penalty: lambda >= 0 of the generator r(W) penalty of Sargent
            section 4.2.2: `-lambda * sum_i r(W_i)` over the effective
            kernels of the generator's trainable linear layers is added to
            the generator loss (logged as the mean r(W),
            `generator_rank_collapse`; `generator_loss` includes the term). The thesis found it harmful (it
            collapsed the spectra it meant to spread, section 5.5.2); it is
            here for comparisons. Default 0 (off).
        check_finite: if True (default), each train step first checks that
            the real batch is finite and raises
            `tf.errors.InvalidArgumentError` ("real samples contain NaN or
            Inf", with the first such row and the step) before any update,
            so the weights stay finite. One reduction over the batch; False
            skips it. Non-finite *losses* (a diverging run) are not an
            error: they are logged in `loss`, which `TerminateOnNaN` watches.
        ema_decay: beta in [0, 1) of an exponential moving average of the
            generator's weights, `G_ema <- beta * G_ema + (1 - beta) * G`
            after each generator step (Yazici et al. 2019; PyTorch-StudioGAN
            uses 0.9999). Default None: no average.
        ema_half_life: the same average specified as a half-life in
            generated images (Karras et al. 2020, StyleGAN2, appendix B:
            10k images): beta = 0.5 ** (generator batch / ema_half_life),
            with the global generator batch of each step. At most one of
            `ema_decay` and `ema_half_life`.
        ema_start: generator steps during which the average copies the raw
            weights (beta = 0) before averaging begins (StudioGAN's
            `g_ema_start`); 0 (default) averages from the first step.
        **kwargs: passed to `keras.Model` (`name`, ...).

    Example:

        >>> import keras, tflip
        >>> generator = keras.Sequential([keras.Input((2,)), keras.layers.Dense(64, "relu"),
        ...                               keras.layers.Dense(2)])
        >>> critic = keras.Sequential([keras.Input((2,)), keras.layers.Dense(64, "relu"),
        ...                            keras.layers.Dense(1)])
        >>> gan = tflip.models.WGAN(generator, critic, latent_dim=2,
        ...                         penalty=tflip.penalties.LipschitzPenalty(10.0))
        >>> gan.compile()  # Adam(1e-4, 0.5, 0.9) for both by default
        >>> history = gan.fit(tflip.datasets.eight_gaussians(5120), batch_size=5 * 256,
        ...                   epochs=1, verbose=0)
    """

    def __init__(
        self,
        generator,
        critic,
        latent_dim,
        penalty=None,
        n_critic=5,
        loss="wasserstein",
        generator_batch_size=None,
        seed=0,
        rank_penalty=0.0,
        check_finite=True,
        ema_decay=None,
        ema_half_life=None,
        ema_start=0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        for name, value in (("generator", generator), ("critic", critic)):
            if not isinstance(value, keras.Model):
                raise ValueError(f"`{name}` must be a keras.Model, got {type(value).__name__}.")
        self.generator = generator
        self.critic = critic
        self.latent_dim = _validation.positive_int("latent_dim", latent_dim)
        self.penalty = penalties.get(penalty)
        self.n_critic = _validation.positive_int("n_critic", n_critic)
        self.loss_name = loss
        self.critic_loss_fn, self.generator_loss_fn = get_gan_loss(loss)
        self.generator_batch_size = (
            None if generator_batch_size is None
            else _validation.positive_int("generator_batch_size", generator_batch_size)
        )
        self.generator_reads_real = generator_loss_needs_real_values(loss)
        if self.generator_reads_real and self.generator_batch_size is not None:
            raise ValueError(
                f"`generator_batch_size` must be None with loss={loss!r}: the relativistic generator loss "
                "pairs each generated sample with a real one of the critic batch."
            )
        self.seed = _validation.random_seed("seed", seed)
        self.rank_penalty = _validation.non_negative_number("rank_penalty", rank_penalty)
        self.check_finite = _validation.boolean("check_finite", check_finite)
        self.ema_decay, self.ema_half_life, self.ema_start = ema_settings(ema_decay, ema_half_life, ema_start)
        self.ema_generator = None
        self.critic_metrics = CriticMetrics()
        self.generator_loss_tracker = keras.metrics.Mean(name="generator_loss")
        self.rank_tracker = (
            keras.metrics.Mean(name="generator_rank_collapse") if self.rank_penalty else None
        )
        self.critic_optimizer = None
        self.generator_optimizer = None
        if critic.built and getattr(critic, "inputs", None):
            self.build(tuple(critic.inputs[0].shape))

    def build(self, input_shape):
        """Builds generator, critic, penalty state and random counters.

        Checks first that `latent_dim` fits the generator's input, the
        generator's output the critic's input and `input_shape` both, as far
        as the models declare their shapes; nothing is built if not.

        Args:
            input_shape: shape of a batch of real samples, `(batch, ...)`.

        Raises:
            ValueError: naming `latent_dim`, `generator` or `critic` and the
                shapes that do not match.
        """
        input_shape = tuple(input_shape)
        generator_input = model_input_shape(self.generator)
        if generator_input is not None and not shapes_match(generator_input, (None, self.latent_dim)):
            raise ValueError(
                f"`latent_dim`={self.latent_dim} does not match the `generator`'s input shape "
                f"{generator_input}: the WGAN feeds it latent vectors of shape (batch, {self.latent_dim})."
            )
        if not self.generator.built:
            self.generator.build((None, self.latent_dim))
        critic_input = model_input_shape(self.critic)
        generated = model_output_shape(self.generator, (None, self.latent_dim))
        if generated is not None and critic_input is not None and not shapes_match(generated, critic_input):
            raise ValueError(
                f"The `generator`'s output shape {generated} does not match the `critic`'s input shape "
                f"{critic_input} (with `latent_dim`={self.latent_dim})."
            )
        self._sample_shape = critic_input or input_shape
        self.check_sample_shape(input_shape, "`input_shape` of `build`")
        if generated is not None and not shapes_match(generated, input_shape):
            raise ValueError(
                f"The `generator`'s output shape {generated} does not match the shape of the real samples "
                f"{input_shape} that the `critic` receives."
            )
        if not self.critic.built:
            self.critic.build(input_shape)
        if self.penalty is not None and not self.penalty.built:
            self.penalty.build(input_shape)
        self.seed_counter = SeedCounter(self, self.seed, name="step_counter")
        # Evaluation has its own counter so validation never shifts training draws.
        self.eval_seed_counter = SeedCounter(self, self.seed + 1, name="eval_step_counter")
        if self.uses_ema:
            self.ema_generator = clone_generator(self.generator, self.latent_dim)
        self.built = True
        self._build_optimizers()

    @property
    def uses_ema(self):
        """Whether the model keeps an exponential moving average of the generator (`ema_generator`)."""
        return self.ema_decay is not None or self.ema_half_life is not None

    def sampling_generator(self, use_ema=None):
        """The generator to sample from: `ema_generator` or the raw `generator`.

        Args:
            use_ema: True: the moving average (an error without one); False:
                the raw generator; None (default): the average if the model
                keeps one, else the raw generator.

        Raises:
            ValueError: naming `use_ema` when True and the model keeps no
                average.
        """
        if use_ema is not None:
            _validation.boolean("use_ema", use_ema)
        if use_ema and not self.uses_ema:
            raise ValueError(
                "`use_ema`=True, but this WGAN keeps no moving average of the generator: pass `ema_decay` or "
                "`ema_half_life` to WGAN."
            )
        if use_ema is False or not self.uses_ema:
            return self.generator
        if self.ema_generator is None:
            raise ValueError("The WGAN is not built yet: its `ema_generator` exists after `build` or `fit`.")
        return self.ema_generator

    def compile(self, critic_optimizer=None, generator_optimizer=None, **kwargs):
        """Configures the two optimizers.

        Args:
            critic_optimizer: optimizer (or name) of the critic; default
                `Adam(1e-4, beta_1=0.5, beta_2=0.9)`.
            generator_optimizer: optimizer (or name) of the generator; same
                default.
            **kwargs: `run_eagerly`, `steps_per_execution` and `jit_compile` of
                `keras.Model.compile`, with Keras' meaning (`jit_compile=True`
                compiles the whole `train_step` with XLA), but `jit_compile`
                defaults to False: see
                `tflip.models.critic_step.keras_compile_arguments`.
                `steps_per_execution > 1` and XLA do not work under
                MirroredStrategy (Keras issue 19246).
        """
        self._compile_arguments = keras_compile_arguments(kwargs, "a WGAN has no Keras loss or metrics")
        self.critic_optimizer = prepare_optimizer(critic_optimizer, "critic_optimizer")
        self.generator_optimizer = prepare_optimizer(generator_optimizer, "generator_optimizer")
        # `self.optimizer` is the critic's, for callbacks that read `model.optimizer`.
        super().compile(optimizer=self.critic_optimizer, **self._compile_arguments)
        warn_if_check_compiled_away(self)
        self._build_optimizers()

    def _build_optimizers(self):
        # Built on their own variables now (inside the strategy scope the model
        # was created in): Adam's slots must exist before a distributed step.
        if not self.built:
            return
        for optimizer, model in (
            (self.critic_optimizer, self.critic),
            (self.generator_optimizer, self.generator),
        ):
            if optimizer is not None and not optimizer.built:
                optimizer.build(model.trainable_variables)

    @property
    def metrics(self):
        tracked = self.critic_metrics.as_list() + [self.generator_loss_tracker]
        if self.rank_tracker is not None:
            tracked.append(self.rank_tracker)
        if self.penalty is not None:
            tracked += self.penalty.metrics
        return tracked

    def sample_latent(self, batch_size, stream):
        """Standard normal latent vectors `(batch_size, latent_dim)` (per replica) from a `RandomStream`."""
        return stream.normal([batch_size, self.latent_dim])

    def train_step(self, data):
        real = unpack_real(data)
        if self.critic_optimizer is None:
            raise ValueError("Call `compile()` on the WGAN before `fit`.")
        if not self.check_finite:
            return self._train_on(real)
        # The generator's optimizer steps once per train step.
        real = check_finite_samples(real, self.generator_optimizer.iterations, "real samples")
        # Every op of the step waits for the check, counters included: a
        # failing step changes no variable.
        with tf.control_dependencies([real]):
            return self._train_on(real)

    def _train_on(self, real):
        # One stream per step: every draw of the step derives from one counter value.
        stream = self.seed_counter.stream()
        batches = critic_batches(real, self.n_critic)
        for real_batch in batches:
            fake = self.generator(self.sample_latent(tf.shape(real_batch)[0], stream), training=True)
            critic_update(
                self.critic, self.critic_optimizer, self.penalty, self.critic_loss_fn,
                real_batch, fake, self.critic_metrics, seed=stream.next_seed(),
            )
        # The relativistic loss pairs the generator batch with the last critic batch (this replica's share).
        paired_real = batches[-1] if self.generator_reads_real else None
        generator_batch = (
            tf.shape(paired_real)[0] if paired_real is not None
            else self.generator_batch_size or tf.shape(batches[0])[0]
        )
        latent = self.sample_latent(generator_batch, stream)
        gradients, generator_loss, rank = generator_gradients(
            self.generator, self.critic, self.generator_optimizer, self.generator_loss_fn, latent,
            self.rank_penalty, real=paired_real,
        )
        self.generator_optimizer.apply(gradients, self.generator.trainable_variables)
        if self.ema_generator is not None:
            # Reads the weights the step just wrote; `iterations` counts this step.
            beta = step_decay(self.ema_decay, self.ema_half_life, self.ema_start,
                              self.generator_optimizer.iterations, generator_batch)
            update_average(variable_pairs(self.ema_generator, self.generator), beta)
        self.generator_loss_tracker.update_state(generator_loss)
        if self.rank_tracker is not None:
            self.rank_tracker.update_state(rank)
        return step_logs(self.metrics, self.distribute_strategy, loss=self.critic_metrics.critic_loss)

    def test_step(self, data):
        real = unpack_real(data)
        fake = self.generator(self.sample_latent(tf.shape(real)[0], self.eval_seed_counter.stream()), training=False)
        real_values = critic_values(self.critic, real, training=False)
        fake_values = critic_values(self.critic, fake, training=False)
        metrics = self.critic_metrics
        metrics.critic_loss.update_state(self.critic_loss_fn(real_values, fake_values))
        metrics.wasserstein.update_state(safe_mean(real_values) - safe_mean(fake_values))
        return step_logs([metrics.critic_loss, metrics.wasserstein], self.distribute_strategy,
                         loss=metrics.critic_loss)

    def call(self, latent, training=False):
        """Generates samples from latent vectors."""
        return self.generator(latent, training=training)

    def generate(self, n, seed=None, batch_size=1024, use_ema=None):
        """Returns `n` generated samples as a numpy array.

        Args:
            n: number of samples.
            seed: seed of the latent draws (default: fresh randomness).
            batch_size: generator batch size.
            use_ema: sample from the moving average of the generator (True),
                the raw generator (False), or (None, default) the average if
                the model keeps one: see `sampling_generator`.
        """
        n = _validation.positive_int("n", n)
        generator = self.sampling_generator(use_ema)
        rng = np.random.default_rng(seed)
        latent = rng.standard_normal((n, self.latent_dim)).astype("float32")
        return np.asarray(generator.predict(latent, batch_size=batch_size, verbose=0), dtype="float32")

    def get_config(self):
        config = super().get_config()
        config.update(
            generator=keras.saving.serialize_keras_object(self.generator),
            critic=keras.saving.serialize_keras_object(self.critic),
            latent_dim=self.latent_dim,
            penalty=keras.saving.serialize_keras_object(self.penalty),
            n_critic=self.n_critic,
            loss=self.loss_name,
            generator_batch_size=self.generator_batch_size,
            seed=self.seed,
            rank_penalty=self.rank_penalty,
            check_finite=self.check_finite,
            ema_decay=self.ema_decay,
            ema_half_life=self.ema_half_life,
            ema_start=self.ema_start,
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("generator", "critic", "penalty"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)

    def get_compile_config(self):
        if self.critic_optimizer is None:
            return None
        return {
            "critic_optimizer": keras.saving.serialize_keras_object(self.critic_optimizer),
            "generator_optimizer": keras.saving.serialize_keras_object(self.generator_optimizer),
            **self._compile_arguments,
        }

    def compile_from_config(self, config):
        config = dict(config)
        for key in ("critic_optimizer", "generator_optimizer"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        self.compile(**config)
