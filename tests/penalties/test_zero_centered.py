"""R1 / R2 zero-centered gradient penalties against closed forms, lazily applied.

On a linear critic f(x) = w.x + b the input gradient is w at every sample,
so R1 = R2 = gamma/2 ||w||^2 with gradient gamma w with respect to w; on a
quadratic critic f(x) = 1/2 ||M^T x||^2 the gradient at x is M M^T x.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.layer_checks import mirrored_strategy
from tflip import penalties
from tflip.cli import build_parser
from tflip.models import WassersteinCritic
from tflip.penalties import R1Penalty, R2Penalty, ZeroCenteredGradientPenalty

W = np.array([1.5, -2.0, 0.5], "float32")  # ||w||^2 = 6.5
GAMMA = 3.0


def linear_critic(w=W, b=0.3):
    critic = keras.Sequential([keras.Input((len(w),)), keras.layers.Dense(1)])
    critic.layers[0].set_weights([np.asarray(w, "float32")[:, None], np.array([b], "float32")])
    return critic


def quadratic_critic(m):
    inputs = keras.Input((m.shape[0],))
    projected = keras.layers.Dense(m.shape[1], use_bias=False)(inputs)
    outputs = keras.layers.Lambda(lambda h: 0.5 * keras.ops.sum(keras.ops.square(h), axis=1, keepdims=True))(projected)
    critic = keras.Model(inputs, outputs)
    critic.layers[1].set_weights([m])
    return critic


def batches(rng, n=16, m=12, dimension=3):
    # Real and fake batches of different sizes: each term is its own mean.
    return rng.normal(size=(n, dimension)).astype("float32"), rng.normal(2.0, 1.0, (m, dimension)).astype("float32")


@pytest.mark.parametrize(
    "make, factor",
    [(lambda: R1Penalty(GAMMA), 1.0), (lambda: R2Penalty(GAMMA), 1.0),
     (lambda: ZeroCenteredGradientPenalty(GAMMA), 2.0)],
    ids=["r1", "r2", "r1r2"],
)
def test_linear_critic_value_and_weight_gradient_closed_form(rng, make, factor):
    real, fake = batches(rng)
    critic = linear_critic()
    penalty = make()
    with tf.GradientTape() as tape:
        value = penalty(critic, real, fake)
    kernel, bias = critic.layers[0].kernel, critic.layers[0].bias
    kernel_gradient, bias_gradient = tape.gradient(value, [kernel, bias])
    np.testing.assert_allclose(float(value), factor * GAMMA / 2 * float(W @ W), rtol=1e-6)
    np.testing.assert_allclose(kernel_gradient.numpy()[:, 0], factor * GAMMA * W, rtol=1e-6)
    # The bias does not change the input gradient: no gradient, or an exact zero.
    assert bias_gradient is None or not np.any(bias_gradient.numpy())
    np.testing.assert_allclose(float(penalty.gradient_norm_mean.result()), np.linalg.norm(W), rtol=1e-6)
    np.testing.assert_allclose(float(penalty.gradient_norm_max.result()), np.linalg.norm(W), rtol=1e-6)


def test_quadratic_critic_closed_form_on_each_side(rng):
    m = rng.normal(size=(3, 2)).astype("float32")
    critic = quadratic_critic(m)
    real, fake = batches(rng)
    metric = m.astype("float64") @ m.T.astype("float64")

    def mean_squared_gradient(x):
        gradients = x.astype("float64") @ metric  # rows (M M^T x_i)^T
        return np.mean(np.sum(gradients**2, axis=1)), np.linalg.norm(gradients, axis=1)

    r1, real_norms = mean_squared_gradient(real)
    r2, fake_norms = mean_squared_gradient(fake)
    np.testing.assert_allclose(float(R1Penalty(GAMMA)(critic, real, fake)), GAMMA / 2 * r1, rtol=1e-5)
    np.testing.assert_allclose(float(R2Penalty(GAMMA)(critic, real, fake)), GAMMA / 2 * r2, rtol=1e-5)
    both = ZeroCenteredGradientPenalty(GAMMA)
    np.testing.assert_allclose(float(both(critic, real, fake)), GAMMA / 2 * (r1 + r2), rtol=1e-5)
    norms = np.concatenate([real_norms, fake_norms])
    np.testing.assert_allclose(float(both.gradient_norm_mean.result()), norms.mean(), rtol=1e-5)
    np.testing.assert_allclose(float(both.gradient_norm_max.result()), norms.max(), rtol=1e-5)


def test_zero_gradient_gives_a_finite_zero_penalty_and_gradient():
    critic = linear_critic(np.zeros(3, "float32"))
    x = np.ones((4, 3), "float32")
    with tf.GradientTape() as tape:
        value = ZeroCenteredGradientPenalty(GAMMA)(critic, x, x)
    gradient = tape.gradient(value, critic.layers[0].kernel)
    assert float(value) == 0.0 and np.all(gradient.numpy() == 0.0)


@pytest.mark.parametrize("interval", [2, 4])
def test_lazy_penalty_in_a_compiled_loop_applies_every_interval_scaled(rng, interval):
    real, fake = batches(rng)
    critic = linear_critic()
    full = GAMMA / 2 * float(W @ W)
    penalty = R1Penalty(GAMMA, interval=interval)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            value = penalty(critic, real, fake)
        return value, tape.gradient(value, critic.layers[0].kernel)

    results = [step() for _ in range(2 * interval)]
    applied = [i % interval == 0 for i in range(2 * interval)]  # the 1st and the (interval + 1)-th call
    values = [float(value) for value, _ in results]
    np.testing.assert_allclose(values, [interval * full if a else 0.0 for a in applied], rtol=1e-6)
    for (_, gradient), a in zip(results, applied):
        np.testing.assert_allclose(gradient.numpy()[:, 0], interval * GAMMA * W if a else 0.0 * W, rtol=1e-6)
    assert int(penalty.calls.numpy()) == 2 * interval
    # Diagnostics come from the penalized steps only (2 of them), not diluted by the skipped ones.
    assert float(penalty.gradient_norm_mean.count.numpy()) == 2 * real.shape[0]
    np.testing.assert_allclose(float(penalty.gradient_norm_mean.result()), np.linalg.norm(W), rtol=1e-6)


def fit_linear_critic(strategy, penalty_factory, steps, batch=8, lr=0.01, seed=0):
    """`WassersteinCritic.fit` on a linear critic with SGD: returns (kernel, penalty, history)."""
    rng = np.random.default_rng(seed)
    p = rng.normal(size=(steps * batch, 3)).astype("float32")
    q = rng.normal(1.0, 1.0, (steps * batch, 3)).astype("float32")
    with strategy.scope():
        estimator = WassersteinCritic(linear_critic(), penalty=penalty_factory())
        estimator.compile(keras.optimizers.SGD(lr))
    history = estimator.fit(p, q, batch_size=batch, epochs=1, verbose=0, shuffle=False)
    return estimator, p, q, history.history


def test_lazy_r1_through_wasserstein_critic_fit_matches_a_numpy_recurrence():
    # Linear critic, SGD: the critic loss mean f(q) - mean f(p) has gradient
    # mean q - mean p in w; R1 adds interval * gamma * w on the penalized steps.
    interval, steps, batch, lr = 3, 6, 8, 0.01
    estimator, p, q, history = fit_linear_critic(
        tf.distribute.get_strategy(), lambda: R1Penalty(GAMMA, interval=interval), steps, batch, lr)
    w = W.astype("float64")
    applied_values = []
    for step in range(steps):
        rows = slice(step * batch, (step + 1) * batch)
        gradient = q[rows].mean(0) - p[rows].mean(0)
        if step % interval == 0:
            applied_values.append(interval * GAMMA / 2 * w @ w)
            gradient = gradient + interval * GAMMA * w
        else:
            applied_values.append(0.0)
        w = w - lr * gradient
    np.testing.assert_allclose(estimator.critic.layers[0].kernel.numpy()[:, 0], w, rtol=1e-5)
    # The logged penalty is the epoch mean of the applied values (zeros included).
    np.testing.assert_allclose(history["penalty"][0], np.mean(applied_values), rtol=1e-5)
    assert int(estimator.penalty.calls.numpy()) == steps


@pytest.mark.parametrize("penalty_name", ["r1", "r1r2", "gp", "lp"])
def test_mirrored_lazy_penalty_equals_single_device(penalty_name):
    def make():
        return penalties.get(penalty_name, weight=GAMMA, interval=2)

    single, *_, single_logs = fit_linear_critic(tf.distribute.get_strategy(), make, steps=5)
    mirrored, *_, mirrored_logs = fit_linear_critic(mirrored_strategy(), make, steps=5)
    np.testing.assert_allclose(mirrored.critic.layers[0].kernel.numpy(), single.critic.layers[0].kernel.numpy(),
                               rtol=1e-5, atol=1e-6)
    for key in ("penalty", "gradient_norm_mean", "gradient_norm_max", "loss"):
        np.testing.assert_allclose(mirrored_logs[key], single_logs[key], rtol=1e-5, err_msg=key)
    # Every replica's copy of the counter saw each step once.
    counts = [int(v.numpy()) for v in mirrored_strategy().experimental_local_results(mirrored.penalty.calls.value)]
    assert counts == [5, 5] and int(single.penalty.calls.numpy()) == 5


def test_lazy_max_gradient_penalty_under_several_replicas_raises_naming_interval():
    # Its penalty is a maximum over all replicas: a collective that cannot run inside the lazy branch.
    with pytest.raises(ValueError, match="`interval`"):
        fit_linear_critic(mirrored_strategy(), lambda: penalties.get("maxgp", weight=GAMMA, interval=2), steps=2)


def test_lazy_counter_is_saved_and_restored(tmp_path):
    estimator, *_ = fit_linear_critic(tf.distribute.get_strategy(), lambda: R2Penalty(GAMMA, interval=4), steps=3)
    path = str(tmp_path / "critic.keras")
    estimator.save(path)
    restored = keras.saving.load_model(path)
    assert type(restored.penalty) is R2Penalty and restored.penalty.interval == 4
    assert int(restored.penalty.calls.numpy()) == 3


@pytest.mark.parametrize(
    "penalty",
    [R1Penalty(2.0, interval=16, seed=3), R2Penalty(0.5, interval=2),
     ZeroCenteredGradientPenalty(1.5, sampling="fake", interval=3, seed=1)],
    ids=lambda p: type(p).__name__,
)
def test_config_roundtrip(penalty):
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(penalty))
    assert type(restored) is type(penalty) and restored.get_config() == penalty.get_config()
    for name in ("weight", "sampling", "interval", "seed"):
        assert getattr(restored, name) == getattr(penalty, name), name


def test_registry_get_and_cli_pick_up_r1_r2(tmp_path):
    assert type(penalties.get("r1", weight=0.5)) is R1Penalty and penalties.get("r1", weight=0.5).sampling == "real"
    assert penalties.get("r2").sampling == "fake"
    assert type(penalties.get("r1r2")) is ZeroCenteredGradientPenalty and penalties.get("r1r2").sampling == "real_fake"
    assert type(penalties.get("R1Penalty")) is R1Penalty
    for name in ("r1", "r2", "r1r2"):
        assert penalties.REGISTRY[name].weighted
        args = build_parser().parse_args(
            ["demo", "--penalty", name, "--penalty-weight", "0.5", "--output", str(tmp_path)])
        args.check(None, args)  # a weighted penalty: --penalty-weight applies
        assert (args.penalty, args.penalty_weight) == (name, 0.5)


@pytest.mark.parametrize(
    "make, argument",
    [
        (lambda: R1Penalty(-1.0), "weight"),
        (lambda: R2Penalty(weight="ten"), "weight"),
        (lambda: R1Penalty(interval=0), "interval"),
        (lambda: R2Penalty(interval=1.5), "interval"),
        (lambda: ZeroCenteredGradientPenalty(sampling="interpolates"), "sampling"),
        (lambda: R1Penalty(seed=-1), "seed"),
    ],
)
def test_bad_arguments_raise_value_error_naming_the_argument(make, argument):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        make()
