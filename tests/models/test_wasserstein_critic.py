"""WassersteinCritic: W1 estimates against exact optimal-transport values."""

import keras
import numpy as np
import pytest

import tflip
from tflip.datasets import three_cones
from tflip.layers import BjorckDense, GroupSort
from tflip.metrics import wasserstein1_exact
from tflip.models import WassersteinCritic


def bjorck_groupsort_critic(dimension, width=64, depth=3, group_size=8):
    layers = [keras.Input((dimension,))]
    for _ in range(depth):
        layers += [BjorckDense(width), GroupSort(group_size)]
    return keras.Sequential(layers + [BjorckDense(1)])


@pytest.mark.slow
def test_bjorck_groupsort_critic_estimates_three_cones_w1_within_five_percent():
    keras.utils.set_random_seed(0)
    estimator = WassersteinCritic(bjorck_groupsort_critic(2))
    epochs, steps = 8, 100
    schedule = keras.optimizers.schedules.CosineDecay(0.01, epochs * steps, alpha=0.05)
    estimator.compile(keras.optimizers.Adam(schedule))
    p, q = three_cones(256 * steps, seed=0)
    estimator.fit(p, q, batch_size=256, epochs=epochs, verbose=0)
    p_test, q_test = three_cones(2000, seed=1)
    estimate = estimator.evaluate(p_test, q_test, batch_size=2000, verbose=0, return_dict=True)["wasserstein"]
    # W1(P, Q) = 1 (Anil et al.). On the test samples, a 1-Lipschitz critic's
    # dual objective cannot exceed the exact W1 between them (duality).
    exact = wasserstein1_exact(p_test, q_test)
    assert abs(exact - 1.0) < 0.01
    assert estimate >= 0.95 * exact
    assert estimate <= exact + 1e-3


def test_linear_critic_recovers_a_shift_exactly():
    # P = N(0, I), Q = P + s: W1 = ||s||, attained by the linear critic f(x) = -s.x/||s||.
    rng = np.random.default_rng(0)
    p = rng.normal(size=(4096, 3)).astype("float32")
    shift = np.array([0.6, -0.8, 0.0], "float32")
    estimator = WassersteinCritic(keras.Sequential([keras.Input((3,)), BjorckDense(1)]))
    estimator.compile(keras.optimizers.Adam(0.05))
    estimator.fit(p, p + shift, batch_size=128, epochs=6, verbose=0)
    kernel = estimator.critic.layers[0].effective_kernel(training=False).numpy()[:, 0]
    np.testing.assert_allclose(kernel, -shift / np.linalg.norm(shift), atol=1e-3)
    estimate = estimator.evaluate(p, p + shift, batch_size=4096, verbose=0, return_dict=True)["wasserstein"]
    assert estimate == pytest.approx(1.0, abs=2e-3)


@pytest.mark.parametrize("penalty", ["lp", "maxgp", "alp"])
def test_penalized_critic_estimates_a_shift(penalty):
    rng = np.random.default_rng(1)
    p = rng.normal(size=(4096, 2)).astype("float32")
    shift = np.array([2.0, 0.0], "float32")
    critic = keras.Sequential([keras.Input((2,)), keras.layers.Dense(64, "relu"), keras.layers.Dense(1)])
    estimator = WassersteinCritic(critic, penalty=penalty)
    estimator.compile(keras.optimizers.Adam(1e-2))
    history = estimator.fit(p, p + shift, batch_size=256, epochs=4, verbose=0)
    # W1 = 2; a penalized critic is only approximately 1-Lipschitz.
    assert history.history["wasserstein"][-1] == pytest.approx(2.0, rel=0.1)


def test_save_load_and_errors(tmp_path):
    estimator = WassersteinCritic(bjorck_groupsort_critic(2, width=8, depth=1, group_size=2), penalty="maxal")
    estimator.compile(keras.optimizers.Adam(1e-3))
    p, q = three_cones(256, seed=0)
    estimator.fit(p, q, batch_size=64, epochs=1, verbose=0)
    path = str(tmp_path / "critic.keras")
    estimator.save(path)
    restored = keras.models.load_model(path)
    np.testing.assert_allclose(restored.predict(p, verbose=0), estimator.predict(p, verbose=0), atol=1e-6)
    assert float(restored.penalty.multiplier) == float(estimator.penalty.multiplier)
    assert int(restored.optimizer.iterations) == int(estimator.optimizer.iterations) == 4
    for a, b in zip(restored.optimizer.variables, estimator.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(ValueError, match="pairs"):
        estimator.fit(p, batch_size=64, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="`critic`"):
        WassersteinCritic(keras.layers.Dense(1))
    with pytest.raises(ValueError, match="compile arguments"):
        estimator.compile("adam", loss="mse")
    assert isinstance(tflip.models.WassersteinCritic.from_config(estimator.get_config()), WassersteinCritic)


def test_augmented_lagrangian_multiplier_converges_to_w1():
    # Zhou et al. figure 4b: with the Wasserstein loss the MaxAL multiplier
    # converges to W1 (here the shift length 2) while the max gradient norm -> 1.
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    p = rng.normal(size=(256 * 100, 2)).astype("float32")
    critic = keras.Sequential([keras.Input((2,)), keras.layers.Dense(64, "relu"), keras.layers.Dense(64, "relu"),
                               keras.layers.Dense(1)])
    penalty = tflip.penalties.MaxGradientAugmentedLagrangian(rho=10.0, multiplier_lr=0.3)
    estimator = WassersteinCritic(critic, penalty=penalty)
    estimator.compile(keras.optimizers.Adam(1e-3, 0.5, 0.9))
    history = estimator.fit(p, p + np.array([2.0, 0.0], "float32"), batch_size=256, epochs=6, verbose=0).history
    assert float(penalty.multiplier) == pytest.approx(2.0, abs=0.05)
    assert history["multiplier"][-1] == pytest.approx(float(penalty.multiplier))
    assert history["gradient_norm_max"][-1] == pytest.approx(1.0, abs=0.01)
    assert history["wasserstein"][-1] == pytest.approx(2.0, abs=0.05)
