"""WGAN: training quality against the exact W1, distribution, saving, resuming."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import tflip
from tests.layer_checks import mirrored_strategy
from tests.models.helpers import adam, mlp, toy_gan
from tflip.datasets import eight_gaussians
from tflip.metrics import wasserstein1_exact
from tflip.models import WGAN
from tflip.models.wgan import critic_batches

DATA = eight_gaussians(64 * 6, seed=0)


def weights(model):
    return [np.asarray(w) for w in model.weights]


def max_difference(a, b):
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b))


def test_critic_batches_interleave_and_cover_the_batch():
    real = tf.range(12)[:, None]
    batches = critic_batches(real, 3)
    np.testing.assert_array_equal(np.concatenate([b.numpy()[:, 0] for b in batches]),
                                  [0, 3, 6, 9, 1, 4, 7, 10, 2, 5, 8, 11])
    # A batch smaller than n_critic is reused cyclically rather than emptied.
    small = critic_batches(tf.range(2)[:, None], 5)
    assert [int(b[0, 0]) for b in small] == [0, 1, 0, 1, 0]


def test_wgan_lp_halves_the_exact_w1_on_eight_gaussians():
    keras.utils.set_random_seed(1)
    gan = WGAN(mlp(2, 2, width=128), mlp(2, 1, width=128, seed=7), latent_dim=2,
               penalty=tflip.penalties.LipschitzPenalty(10.0), n_critic=5)
    gan.compile(keras.optimizers.Adam(1e-3, 0.5, 0.9), keras.optimizers.Adam(1e-3, 0.5, 0.9))
    held_out = eight_gaussians(500, seed=2)
    before = wasserstein1_exact(gan.generate(500, seed=3), held_out)
    monitor = tflip.callbacks.ExactWasserstein(held_out, every_n_epochs=1, seed=3)
    history = gan.fit(eight_gaussians(5 * 256 * 40, seed=0), batch_size=5 * 256, epochs=3, verbose=0,
                      callbacks=[monitor])
    after = wasserstein1_exact(gan.generate(500, seed=3), held_out)
    assert after < 0.5 * before, (before, after)
    assert history.history["w1_exact"][-1] == pytest.approx(after)
    assert [epoch for epoch, _ in monitor.values] == [0, 1, 2]
    for key in ("critic_loss", "generator_loss", "wasserstein", "penalty", "gradient_norm_mean", "gradient_norm_max"):
        assert np.isfinite(history.history[key][-1]), key


@pytest.mark.parametrize(
    "penalty, optimizer",
    # Every penalty with -m slow; by default one of each kind of state (none, a random draw, a multiplier).
    [("gp", "adam"), ("alp", "sgd"), ("maxal", "sgd")]
    + [pytest.param(*case, marks=pytest.mark.slow)
       for case in [("gp", "sgd"), ("lp", "sgd"), ("maxgp", "sgd"), ("clip", "sgd"), (None, "sgd")]],
)
def test_mirrored_training_equals_single_device(penalty, optimizer):
    # SGD updates are linear in the gradients, so the only single/mirrored
    # difference left is the summation order over replicas (~1e-7). Adam's
    # first steps are ~lr * sign(g): with weight clipping's tiny gradients a
    # rounding-level change of g can move a weight by up to 2 lr.
    def make_optimizer():
        return adam() if optimizer == "adam" else keras.optimizers.SGD(0.01)

    def run(strategy):
        with strategy.scope():
            gan = toy_gan(penalty)
            gan.compile(make_optimizer(), make_optimizer())
        history = gan.fit(DATA, batch_size=64, epochs=1, verbose=0, shuffle=False)
        return weights(gan), history.history

    single, single_logs = run(tf.distribute.get_strategy())
    mirrored, mirrored_logs = run(mirrored_strategy())
    assert all(np.isfinite(w).all() for w in single)
    assert max_difference(single, mirrored) < 1e-5
    assert single_logs.keys() == mirrored_logs.keys()
    for key in single_logs:
        np.testing.assert_allclose(mirrored_logs[key], single_logs[key], rtol=1e-4, atol=1e-6, err_msg=key)


@pytest.mark.parametrize("penalty", ["maxgp", "alp"])
def test_mirrored_final_batch_smaller_than_replicas_stays_finite(penalty):
    # 64 * 3 + 1 samples: the last global batch has one row, so one replica gets none.
    with mirrored_strategy().scope():
        gan = toy_gan(penalty)
        gan.compile(keras.optimizers.SGD(0.01), keras.optimizers.SGD(0.01))
    logs = gan.fit(DATA[: 64 * 3 + 1], batch_size=64, epochs=1, verbose=0, shuffle=False).history
    assert all(np.isfinite(w).all() for w in weights(gan))
    assert all(np.isfinite(v[-1]) for v in logs.values())


def test_logs_include_penalty_diagnostics():
    gan = toy_gan(tflip.penalties.AdversarialLipschitzPenalty(weight=10.0, epsilon=(0.01, 0.1)))
    gan.compile(adam(), adam())
    logs = gan.fit(DATA, batch_size=64, epochs=1, verbose=0).history
    assert {"violation_rate", "violations", "lipschitz_quotient_mean", "lipschitz_quotient_max"} <= logs.keys()
    gan = toy_gan(tflip.penalties.MaxGradientAugmentedLagrangian(multiplier_lr=0.1))
    gan.compile(adam(), adam())
    logs = gan.fit(DATA, batch_size=64, epochs=1, verbose=0).history
    # After 6 steps x 2 critic updates from lambda = 0: lambda = lr * sum of the 12 constraints.
    assert logs["multiplier"][-1] == pytest.approx(float(gan.penalty.multiplier))
    assert float(gan.penalty.multiplier) == pytest.approx(0.1 * 12 * logs["constraint"][-1], rel=1e-4)
    assert float(gan.penalty.multiplier) != 0.0


@pytest.mark.parametrize("loss", ["hinge", "nonsaturating"])
def test_other_losses_train(loss):
    gan = toy_gan("lp", loss=loss)
    gan.compile(adam(), adam())
    logs = gan.fit(DATA, batch_size=64, epochs=1, verbose=0).history
    assert all(np.isfinite(v[-1]) for v in logs.values())


def test_hinge_and_nonsaturating_losses_closed_form():
    from tflip.losses import get_gan_loss

    real = tf.constant([2.0, 0.5, -1.0])
    fake = tf.constant([-2.0, 0.0, 1.0])
    critic_loss, generator_loss = get_gan_loss("hinge")
    assert float(critic_loss(real, fake)) == pytest.approx((0 + 0.5 + 2) / 3 + (0 + 1 + 2) / 3)
    assert float(generator_loss(fake)) == pytest.approx(1 / 3)
    critic_loss, generator_loss = get_gan_loss("nonsaturating")
    softplus = lambda v: np.log1p(np.exp(v))  # noqa: E731
    expected = np.mean(softplus(-real.numpy())) + np.mean(softplus(fake.numpy()))
    assert float(critic_loss(real, fake)) == pytest.approx(expected, rel=1e-6)
    assert float(generator_loss(fake)) == pytest.approx(np.mean(softplus(-fake.numpy())), rel=1e-6)


def latent_free_generator():
    """A generator whose output does not depend on the latent vectors (a frozen zero first kernel).

    XLA's random kernels draw other numbers than TensorFlow's for the same
    seed; with this generator and penalties without random draws, a compiled
    step must compute what an eager one computes.
    """
    return keras.Sequential([
        keras.Input((2,)),
        keras.layers.Dense(8, "relu", trainable=False, kernel_initializer="zeros", bias_initializer="ones"),
        keras.layers.Dense(32, "relu", kernel_initializer=keras.initializers.GlorotUniform(1)),
        keras.layers.Dense(2, kernel_initializer=keras.initializers.GlorotUniform(2)),
    ])


@pytest.mark.parametrize(
    "penalty",
    [
        lambda: tflip.penalties.GradientPenalty(10.0, sampling="real_perturbation", noise_std=0.0),
        lambda: tflip.penalties.MaxGradientAugmentedLagrangian(
            multiplier_lr=0.1, sampling="real_perturbation", noise_std=0.0),
        lambda: tflip.penalties.LipschitzPenalty(10.0, sampling="real_perturbation", noise_std=0.0, interval=2),
        lambda: tflip.penalties.MaxGradientPenalty(10.0, sampling="real_perturbation", noise_std=0.0, buffer_size=8),
    ],
)
def test_jit_compile_compiles_the_whole_step_and_matches_eager(penalty):
    # n_critic dependent critic updates, then the generator update reading the
    # new critic, all in one XLA computation: every read must see the
    # previous write (a stale read moves the weights by ~1e-3 here).
    results = []
    for mode in ("eager", "xla"):
        gan = WGAN(latent_free_generator(), mlp(2, 1, seed=10), latent_dim=2, penalty=penalty(), n_critic=2,
                   check_finite=False)
        gan.compile(keras.optimizers.SGD(0.01), keras.optimizers.SGD(0.01),
                    run_eagerly=mode == "eager", jit_compile=mode == "xla")
        assert gan.jit_compile is (mode == "xla")
        history = gan.fit(DATA[: 64 * 3], batch_size=64, epochs=1, verbose=0, shuffle=False).history
        results.append((weights(gan), history))
    assert max_difference(results[0][0], results[1][0]) < 1e-6
    for key, value in results[0][1].items():
        assert results[1][1][key][0] == pytest.approx(value[0], rel=1e-5, abs=1e-6), key


def test_jit_compile_with_random_penalty_trains():
    gan = toy_gan("alp")
    with pytest.warns(UserWarning, match="check_finite"):
        gan.compile(adam(), adam(), jit_compile=True)
    logs = gan.fit(DATA, batch_size=64, epochs=1, verbose=0).history
    assert all(np.isfinite(v[-1]) for v in logs.values())
    assert gan.get_compile_config()["jit_compile"] is True
    default = toy_gan("alp")
    default.compile(adam(), adam())
    assert default.jit_compile is False and default.get_compile_config()["jit_compile"] is False


def test_mixed_precision_wraps_both_optimizers_and_trains():
    keras.mixed_precision.set_global_policy("mixed_float16")
    gan = toy_gan("lp")
    gan.compile(adam(), adam())
    assert isinstance(gan.critic_optimizer, keras.optimizers.LossScaleOptimizer)
    assert isinstance(gan.generator_optimizer, keras.optimizers.LossScaleOptimizer)
    logs = gan.fit(DATA, batch_size=64, epochs=1, verbose=0).history
    assert all(np.isfinite(v[-1]) for v in logs.values())
    assert all(np.isfinite(w).all() for w in weights(gan))


def test_evaluate_and_generate():
    gan = toy_gan("lp")
    gan.compile(adam(), adam())
    history = gan.fit(DATA, batch_size=64, epochs=1, verbose=0, validation_data=eight_gaussians(128, seed=5))
    assert "val_wasserstein" in history.history
    result = gan.evaluate(eight_gaussians(128, seed=5), batch_size=64, verbose=0, return_dict=True)
    assert set(result) == {"loss", "critic_loss", "wasserstein"}
    # Evaluation draws its own latents: it does not shift the training draws.
    assert int(gan.seed_counter.counter) == 6
    samples = gan.generate(10, seed=0)
    assert samples.shape == (10, 2) and samples.dtype == np.float32
    np.testing.assert_array_equal(samples, gan.generate(10, seed=0))


def test_save_load_restores_models_penalty_state_and_optimizers(tmp_path):
    gan = toy_gan(tflip.penalties.MaxGradientAugmentedLagrangian(rho=5.0, multiplier_lr=0.05))
    gan.compile(adam(), keras.optimizers.RMSprop(1e-3))
    gan.fit(DATA, batch_size=64, epochs=1, verbose=0, shuffle=False)
    path = str(tmp_path / "gan.keras")
    gan.save(path)
    restored = keras.models.load_model(path)
    assert isinstance(restored, WGAN) and isinstance(restored.generator_optimizer, keras.optimizers.RMSprop)
    assert float(restored.penalty.multiplier) == float(gan.penalty.multiplier) != 0.0
    assert max_difference(weights(gan), weights(restored)) == 0.0
    assert int(restored.critic_optimizer.iterations) == int(gan.critic_optimizer.iterations) == 12
    for a, b in zip(gan.critic_optimizer.variables, restored.critic_optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # Training continues identically from the restored state.
    gan.fit(DATA, batch_size=64, epochs=1, verbose=0, shuffle=False)
    restored.fit(DATA, batch_size=64, epochs=1, verbose=0, shuffle=False)
    assert max_difference(weights(gan), weights(restored)) < 1e-6


RESUME_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys, json
    sys.path.insert(0, {root!r})
    import keras, numpy as np, tensorflow as tf
    tf.config.experimental.enable_op_determinism()
    import tflip
    from tests.models.helpers import adam, toy_gan

    backup, kill_at, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    keras.utils.set_random_seed(0)
    # With a generator EMA, whose average must resume too.
    gan = toy_gan("alp", ema_half_life=100.0)
    gan.compile(adam(), adam())
    data = tflip.datasets.eight_gaussians(64 * 4, seed=0)

    class Kill(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

    callbacks = [keras.callbacks.BackupAndRestore(backup)] if backup != "-" else []
    gan.fit(data, batch_size=64, epochs=5, verbose=0, shuffle=False, callbacks=callbacks + [Kill()])
    assert {{id(w) for w in gan.ema_generator.weights}} <= {{id(w) for w in gan.weights}}
    np.savez(out, *[np.asarray(w) for w in gan.weights])
    """
)


def test_resume_after_kill_matches_uninterrupted_run(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    script = tmp_path / "train.py"
    script.write_text(RESUME_SCRIPT.format(root=root))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")

    def run(*args):
        return subprocess.run([sys.executable, str(script), *args], env=env, timeout=240, capture_output=True)

    reference = run("-", "-1", str(tmp_path / "reference.npz"))
    assert reference.returncode == 0, reference.stderr.decode()[-2000:]
    backup = str(tmp_path / "backup")
    killed = run(backup, "3", str(tmp_path / "never.npz"))
    assert killed.returncode == -signal.SIGKILL
    assert not (tmp_path / "never.npz").exists()
    resumed = run(backup, "-1", str(tmp_path / "resumed.npz"))
    assert resumed.returncode == 0, resumed.stderr.decode()[-2000:]
    expected = np.load(tmp_path / "reference.npz")
    actual = np.load(tmp_path / "resumed.npz")
    assert len(expected.files) == len(actual.files) > 0
    for key in expected.files:
        np.testing.assert_allclose(actual[key], expected[key], atol=1e-6, err_msg=key)


@pytest.mark.parametrize(
    "make, argument",
    [
        (lambda: WGAN(mlp(2, 2), mlp(2, 1), latent_dim=0), "latent_dim"),
        (lambda: WGAN(mlp(2, 2), mlp(2, 1), latent_dim=2, n_critic=0), "n_critic"),
        (lambda: WGAN(mlp(2, 2), mlp(2, 1), latent_dim=2, loss="least_squares"), "loss"),
        (lambda: WGAN(mlp(2, 2), mlp(2, 1), latent_dim=2, penalty="gradient"), "penalty"),
        (lambda: WGAN(mlp(2, 2), mlp(2, 1), latent_dim=2, generator_batch_size=0), "generator_batch_size"),
        (lambda: WGAN(mlp(2, 2), mlp(2, 1), latent_dim=2, seed="a"), "seed"),
        (lambda: WGAN(keras.layers.Dense(2), mlp(2, 1), latent_dim=2), "generator"),
        (lambda: WGAN(mlp(2, 2), mlp(2, 1), latent_dim=2).compile(critic_optimizer=3), "critic_optimizer"),
        (lambda: WGAN(mlp(2, 2), mlp(2, 1), latent_dim=2).compile(loss="mse"), "loss"),
    ],
)
def test_bad_arguments(make, argument):
    with pytest.raises(ValueError, match=argument):
        make()


def test_fit_before_compile_is_a_clear_error():
    gan = toy_gan("lp")
    with pytest.raises((ValueError, RuntimeError), match="compile"):
        gan.fit(DATA, batch_size=64, epochs=1, verbose=0)


def test_config_roundtrip():
    gan = WGAN(mlp(2, 2), mlp(2, 1), latent_dim=2, penalty="alp", loss="hinge", generator_batch_size=16, seed=4)
    config = json.loads(json.dumps(gan.get_config()))  # as stored in a .keras file
    restored = WGAN.from_config(config)
    assert json.loads(json.dumps(restored.get_config())) == config
    assert isinstance(restored.penalty, tflip.penalties.AdversarialLipschitzPenalty)
    assert (restored.loss_name, restored.generator_batch_size, restored.seed) == ("hinge", 16, 4)


ORDERING_SCRIPT = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, {root!r})
    import tensorflow as tf
    tf.config.threading.set_inter_op_parallelism_threads(1)

    def settings():
        return json.dumps([tf.config.optimizer.get_experimental_options(), tf.config.optimizer.get_jit(),
                           tf.config.threading.get_inter_op_parallelism_threads()], sort_keys=True)

    seen = [settings()]
    import keras, numpy as np, tflip
    from tests.models.helpers import toy_gan
    seen.append(settings())

    class Settings(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(settings())

    data = tflip.datasets.eight_gaussians(64 * 3, seed=0)
    results = []
    for eager in (True, False):
        gan = toy_gan(tflip.penalties.AdversarialLipschitzPenalty(weight=0.0), n_critic=2)
        gan.compile(keras.optimizers.SGD(0.01), keras.optimizers.SGD(0.01), run_eagerly=eager)
        gan.fit(data, batch_size=64, epochs=1, verbose=0, shuffle=False, callbacks=[Settings()])
        results.append([np.asarray(w) for w in gan.weights])
    seen.append(settings())
    print(len(set(seen)), max(float(np.max(np.abs(a - b))) for a, b in zip(*results)))
    """
)


def test_graph_step_applies_critic_updates_in_order(tmp_path):
    # Each critic update must read the weights the previous one wrote. This
    # configuration (one inter-op thread, ALP, two critic updates per step)
    # once differed between graph and eager execution by ~1e-5; a fully stale
    # read of the second update moves the critic by ~2e-3. tflip changes no
    # process-wide TensorFlow setting (Grappler options, XLA, threads) at
    # import or during `fit` to get this right.
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    script = tmp_path / "ordering.py"
    script.write_text(ORDERING_SCRIPT.format(root=root))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, timeout=240,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    distinct_settings, difference = result.stdout.decode().split()[-2:]
    assert int(distinct_settings) == 1
    assert float(difference) < 1e-6


@pytest.mark.parametrize("kind", ["numpy", "dataset"])
def test_models_without_input_layers_are_built_by_fit(kind, tmp_path):
    generator = keras.Sequential([keras.layers.Dense(16, "relu"), keras.layers.Dense(2)])
    critic = keras.Sequential([keras.layers.Dense(16, "relu"), keras.layers.Dense(1)])
    gan = WGAN(generator, critic, latent_dim=2, penalty="maxal", n_critic=2)
    assert not gan.built
    gan.compile(adam(), adam())
    x = DATA if kind == "numpy" else tf.data.Dataset.from_tensor_slices(DATA).batch(64)
    gan.fit(x, batch_size=64 if kind == "numpy" else None, epochs=1, verbose=0)
    assert gan.built and gan.critic_optimizer.built and gan.penalty.built
    path = str(tmp_path / "gan.keras")
    gan.save(path)
    restored = keras.models.load_model(path)
    assert max_difference(weights(gan), weights(restored)) == 0.0
