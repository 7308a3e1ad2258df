"""Keras' standard callbacks on `WGAN` and `WassersteinCritic` with their default monitors.

Most tests use a WGAN whose weights cannot move (SGD with learning rate 0,
or gradients that are exactly 0) and whose generator outputs 0, so that the
logged losses are known in closed form: `loss = f(0) - mean f(real)`.
"""

import csv
import hashlib

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.models.helpers import adam, mlp, toy_gan
from tflip.datasets import eight_gaussians
from tflip.models import WGAN, WassersteinCritic

BATCH = 64
DATA = eight_gaussians(BATCH * 6, seed=0)
VALIDATION = eight_gaussians(BATCH * 2, seed=5)


def weights(model):
    return [np.asarray(w) for w in model.weights]


def zero_output_generator():
    generator = mlp(2, 2)
    last = generator.layers[-1]
    last.kernel.assign(tf.zeros_like(last.kernel))
    last.bias.assign(tf.zeros_like(last.bias))
    return generator


def frozen_gan(critic_lr=0.0, generator_lr=0.0, critic=None, **kwargs):
    """A WGAN with G(z) = 0 whose SGD steps change nothing when the learning rates are 0."""
    critic = critic or mlp(2, 1, seed=10)
    gan = WGAN(zero_output_generator(), critic, latent_dim=2, n_critic=2, **kwargs)
    gan.compile(keras.optimizers.SGD(critic_lr), keras.optimizers.SGD(generator_lr))
    return gan


def expected_loss(gan, real):
    """The Wasserstein critic loss mean f(G(z)) - mean f(real) for G(z) = 0."""
    values = np.asarray(gan.critic(real))[:, 0]
    return float(np.asarray(gan.critic(np.zeros((1, 2), "float32")))[0, 0] - values.mean())


class BatchLosses(keras.callbacks.Callback):
    """Records `(epoch, batch, logs["loss"])` at the end of every train batch."""

    def __init__(self):
        super().__init__()
        self.epoch = 0
        self.seen = []

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        self.seen.append((self.epoch, batch, float(logs["loss"])))


@pytest.mark.parametrize("run_eagerly", [False, True])
def test_loss_is_the_critic_loss_with_penalty_and_val_loss_the_held_out_critic_loss(run_eagerly):
    gan = frozen_gan()
    gan.compile(keras.optimizers.SGD(0.0), keras.optimizers.SGD(0.0), run_eagerly=run_eagerly)
    history = gan.fit(DATA, batch_size=BATCH, epochs=2, verbose=0, shuffle=False,
                      validation_data=VALIDATION, validation_batch_size=BATCH).history
    np.testing.assert_allclose(history["loss"], [expected_loss(gan, DATA)] * 2, rtol=1e-5)
    np.testing.assert_allclose(history["val_loss"], [expected_loss(gan, VALIDATION)] * 2, rtol=1e-5)
    np.testing.assert_array_equal(history["loss"], history["critic_loss"])
    # With a penalty, `loss` includes it: -wasserstein + penalty (epoch means of each update's terms).
    penalized = toy_gan("gp")
    penalized.compile(adam(), adam())
    logs = penalized.fit(DATA, batch_size=BATCH, epochs=1, verbose=0).history
    assert logs["penalty"][0] > 0.1
    np.testing.assert_allclose(logs["loss"], np.subtract(logs["penalty"], logs["wasserstein"]), rtol=1e-5)
    assert logs["loss"] == logs["critic_loss"]


def test_terminate_on_nan_stops_at_the_batch_whose_loss_is_nan():
    data = DATA.copy()
    data[3 * BATCH + 5, 1] = np.nan  # batch 3 of each epoch
    # A linear critic: ReLU maps NaN to 0 on this stack, which would hide the NaN.
    gan = frozen_gan(critic=mlp(2, 1, depth=0), check_finite=False)
    # Up to the bad batch the running epoch mean is the closed-form loss of the rows seen.
    expected = [expected_loss(gan, data[: (batch + 1) * BATCH]) for batch in range(4)]
    record = BatchLosses()
    history = gan.fit(data, batch_size=BATCH, epochs=3, verbose=0, shuffle=False,
                      callbacks=[record, keras.callbacks.TerminateOnNaN()]).history
    assert [(epoch, batch) for epoch, batch, _ in record.seen] == [(0, 0), (0, 1), (0, 2), (0, 3)]
    np.testing.assert_allclose([loss for _, _, loss in record.seen], expected, rtol=1e-5)
    assert np.isnan(expected[3])
    # The update of the bad batch was applied: the critic has NaN weights now.
    assert np.isnan(np.asarray(gan.critic.layers[0].kernel)).any()
    assert len(history["loss"]) == 1


def diverging_gan():
    # A learning rate of 1e12 throws the critic's weights to ~1e12 in one
    # step; the values overflow float32 within a few steps.
    gan = toy_gan(None, n_critic=1)
    gan.compile(keras.optimizers.SGD(1e12), keras.optimizers.SGD(1e12))
    return gan


def test_diverging_losses_run_on_without_terminate_on_nan_and_stop_with_it():
    data = eight_gaussians(BATCH * 20, seed=0)
    gan = diverging_gan()
    record = BatchLosses()
    history = gan.fit(data, batch_size=BATCH, epochs=2, verbose=0, shuffle=False, callbacks=[record]).history
    # Non-finite losses are no error: training runs every batch on NaN weights.
    assert len(record.seen) == 40 and len(history["loss"]) == 2
    assert not np.isfinite(history["loss"][-1])
    assert not all(np.isfinite(w).all() for w in weights(gan.critic))
    first = next(i for i, (_, _, loss) in enumerate(record.seen) if not np.isfinite(loss))
    assert first < 20

    gan = diverging_gan()
    stopped = BatchLosses()
    gan.fit(data, batch_size=BATCH, epochs=2, verbose=0, shuffle=False,
            callbacks=[stopped, keras.callbacks.TerminateOnNaN()])
    # The same run, stopped at the first batch whose loss is not finite.
    assert stopped.seen[:first] == record.seen[:first]
    assert len(stopped.seen) == first + 1 and not np.isfinite(stopped.seen[-1][2])


@pytest.mark.parametrize("monitor", [None, "loss"])
def test_early_stopping_stops_after_patience_epochs_of_a_constant_loss(monitor):
    gan = frozen_gan()
    arguments = {} if monitor is None else {"monitor": monitor}  # default: val_loss
    history = gan.fit(DATA, batch_size=BATCH, epochs=10, verbose=0, shuffle=False,
                      validation_data=VALIDATION if monitor is None else None,
                      callbacks=[keras.callbacks.EarlyStopping(patience=2, **arguments)]).history
    name = monitor or "val_loss"
    np.testing.assert_allclose(history[name], [expected_loss(gan, VALIDATION if monitor is None else DATA)] * 3,
                               rtol=1e-5)


def test_early_stopping_keeps_training_while_the_loss_improves():
    # The critic's loss falls steadily while the critic learns (with the generator frozen).
    gan = frozen_gan(critic_lr=1e-3)
    history = gan.fit(DATA, batch_size=BATCH, epochs=4, verbose=0, shuffle=False,
                      callbacks=[keras.callbacks.EarlyStopping(monitor="loss", patience=0)]).history
    assert len(history["loss"]) == 4 and np.all(np.diff(history["loss"]) < 0)


def test_reduce_lr_on_plateau_scales_the_critic_learning_rate():
    # Real and generated samples all 0 and a critic with a zero first kernel:
    # the loss is exactly 0 and every gradient is exactly 0, whatever the rates.
    gan = frozen_gan(critic_lr=0.1, generator_lr=0.1)
    first = gan.critic.layers[0]
    first.kernel.assign(tf.zeros_like(first.kernel))
    zeros = np.zeros_like(DATA)
    history = gan.fit(zeros, batch_size=BATCH, epochs=3, verbose=0, validation_data=zeros[:BATCH],
                      callbacks=[keras.callbacks.ReduceLROnPlateau(factor=0.5, patience=1)]).history
    assert history["val_loss"] == [0.0, 0.0, 0.0]
    # No improvement after epoch 0: halved at the end of epochs 1 and 2.
    np.testing.assert_allclose(history["learning_rate"], [0.1, 0.1, 0.05])
    np.testing.assert_allclose(float(gan.critic_optimizer.learning_rate), 0.025)
    np.testing.assert_allclose(float(gan.generator_optimizer.learning_rate), 0.1)


def test_model_checkpoint_keeps_the_best_epoch(tmp_path):
    path = str(tmp_path / "best.weights.h5")
    saved = []

    class Inspect(keras.callbacks.Callback):
        """After ModelCheckpoint: did this epoch rewrite the file, and with which weights?"""

        def on_epoch_end(self, epoch, logs=None):
            with open(path, "rb") as file:
                saved.append((hashlib.sha256(file.read()).hexdigest(), weights(self.model)))

    gan = toy_gan("lp")
    gan.compile(keras.optimizers.Adam(3e-3), keras.optimizers.Adam(3e-3))
    history = gan.fit(DATA, batch_size=BATCH, epochs=5, verbose=0, shuffle=False, validation_data=VALIDATION,
                      callbacks=[keras.callbacks.ModelCheckpoint(path, save_best_only=True, save_weights_only=True),
                                 Inspect()]).history
    val_loss = history["val_loss"]
    new_best = [epoch == 0 or value < min(val_loss[:epoch]) for epoch, value in enumerate(val_loss)]
    rewritten = [True] + [saved[i][0] != saved[i - 1][0] for i in range(1, len(saved))]
    assert rewritten == new_best
    best = int(np.argmin(val_loss))
    restored = toy_gan("lp")
    restored.load_weights(path)
    for expected, actual in zip(saved[best][1], weights(restored)):
        np.testing.assert_array_equal(actual, expected)


def test_backup_and_restore_continues_the_logged_losses(tmp_path):
    def run(callbacks, epochs=4):
        keras.utils.set_random_seed(0)
        gan = toy_gan("lp")
        gan.compile(adam(), adam())
        history = gan.fit(DATA, batch_size=BATCH, epochs=epochs, verbose=0, shuffle=False, callbacks=callbacks)
        return gan, history.history

    reference, expected = run([])

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                raise RuntimeError("interrupted")

    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    with pytest.raises(RuntimeError, match="interrupted"):
        run([backup, Interrupt()])
    resumed, history = run([keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))])
    # Epochs 2 and 3 only, with the uninterrupted run's losses.
    np.testing.assert_allclose(history["loss"], expected["loss"][2:], rtol=1e-5)
    for a, b in zip(weights(reference), weights(resumed)):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_csv_logger_writes_the_logged_losses(tmp_path):
    path = tmp_path / "log.csv"
    gan = frozen_gan()
    history = gan.fit(DATA, batch_size=BATCH, epochs=2, verbose=0, shuffle=False,
                      validation_data=VALIDATION, callbacks=[keras.callbacks.CSVLogger(str(path))]).history
    with open(path) as file:
        rows = list(csv.DictReader(file))
    for column in ("loss", "val_loss", "critic_loss", "wasserstein"):
        np.testing.assert_allclose([float(row[column]) for row in rows], history[column], rtol=1e-6)
    np.testing.assert_allclose([float(row["loss"]) for row in rows], [expected_loss(gan, DATA)] * 2, rtol=1e-5)


def test_wasserstein_critic_logs_loss_and_val_loss():
    critic = mlp(2, 1, seed=3)
    estimator = WassersteinCritic(critic)
    estimator.compile(keras.optimizers.SGD(0.0))
    p, q = DATA, DATA + 1.0
    history = estimator.fit(p, q, batch_size=BATCH, epochs=1, verbose=0,
                            validation_data=(VALIDATION, VALIDATION + 1.0)).history

    def critic_loss(p, q):
        return float(np.asarray(critic(q)).mean() - np.asarray(critic(p)).mean())

    np.testing.assert_allclose(history["loss"], [critic_loss(p, q)], rtol=1e-5)
    np.testing.assert_allclose(history["val_loss"], [critic_loss(VALIDATION, VALIDATION + 1.0)], rtol=1e-5)
    np.testing.assert_allclose(history["val_loss"], -np.asarray(history["val_wasserstein"]), rtol=1e-6)

    bad = q.copy()
    bad[BATCH + 1, 0] = np.inf
    estimator = WassersteinCritic(mlp(2, 1, depth=0), check_finite=False)
    estimator.compile(keras.optimizers.SGD(0.0))
    record = BatchLosses()
    estimator.fit(p, bad, batch_size=BATCH, epochs=2, verbose=0, shuffle=False,
                  callbacks=[record, keras.callbacks.TerminateOnNaN()])
    assert [batch for _, batch, _ in record.seen] == [0, 1]
