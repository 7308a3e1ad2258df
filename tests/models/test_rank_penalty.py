"""The generator r(W) penalty of Sargent section 4.2.2 in WGAN."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tflip
from tests.models.helpers import mlp, toy_gan
from tflip.models.wgan import generator_gradients, mean_rank_collapse


def numpy_rank_collapse(matrix):
    s = np.linalg.svd(matrix, compute_uv=False)
    return s.sum() / (len(s) * s[0])


def test_gradient_is_minus_lambda_grad_r_with_a_zero_critic(rng):
    """With f = 0 the generator loss is -lambda * sum_i r(W_i): compare with numpy finite differences."""
    generator = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, use_bias=False),
                                  keras.layers.Dense(2, use_bias=False)])
    kernels = [rng.normal(size=(3, 4)), rng.normal(size=(4, 2))]
    generator.set_weights(kernels)
    critic = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, kernel_initializer="zeros", use_bias=False)])
    optimizer = keras.optimizers.SGD()
    loss_fn = tflip.losses.wasserstein_generator_loss
    gradients, loss, rank = generator_gradients(generator, critic, optimizer, loss_fn, tf.ones((5, 3)), 0.5)
    expected_rank = np.mean([numpy_rank_collapse(k) for k in kernels])
    np.testing.assert_allclose(rank, expected_rank, rtol=1e-5)
    np.testing.assert_allclose(loss, -0.5 * 2 * expected_rank, rtol=1e-5)
    for kernel, gradient in zip(kernels, gradients):
        numeric = np.zeros_like(kernel)
        for index in np.ndindex(kernel.shape):
            step = np.zeros_like(kernel)
            step[index] = 1e-6
            numeric[index] = (numpy_rank_collapse(kernel + step) - numpy_rank_collapse(kernel - step)) / 2e-6
        np.testing.assert_allclose(gradient, -0.5 * numeric, atol=1e-4)


def test_conv_kernels_use_the_reshaped_matrix(rng):
    model = keras.Sequential([keras.Input((6, 6, 2)), keras.layers.Conv2D(3, 3)])
    kernel = rng.normal(size=(3, 3, 2, 3)).astype("float32")
    model.layers[0].set_weights([kernel, np.zeros(3)])
    np.testing.assert_allclose(mean_rank_collapse(model), numpy_rank_collapse(kernel.reshape(-1, 3)), rtol=1e-5)


def test_wgan_logs_rank_and_saves_the_setting(tmp_path):
    gan = toy_gan("lp", rank_penalty=0.1)
    gan.compile()
    history = gan.fit(tflip.datasets.eight_gaussians(256, seed=0), batch_size=64, epochs=1, verbose=0)
    assert 0.0 < history.history["generator_rank_collapse"][0] <= 1.0
    gan.save(tmp_path / "gan.keras")
    assert keras.models.load_model(tmp_path / "gan.keras").rank_penalty == 0.1
    plain = toy_gan("lp")
    assert "generator_rank_collapse" not in [m.name for m in plain.metrics]


def test_rank_penalty_changes_generator_training():
    data = tflip.datasets.eight_gaussians(256, seed=0)
    weights = []
    for rank_penalty in (0.0, 1.0):
        keras.utils.set_random_seed(0)
        gan = toy_gan("lp", rank_penalty=rank_penalty)
        gan.compile(keras.optimizers.SGD(0.01), keras.optimizers.SGD(0.01))
        gan.fit(data, batch_size=64, epochs=1, verbose=0, shuffle=False)
        weights.append([np.asarray(w) for w in gan.generator.weights])
    assert max(np.abs(a - b).max() for a, b in zip(*weights)) > 1e-4


def test_negative_rank_penalty_is_rejected():
    with pytest.raises(ValueError, match="rank_penalty"):
        tflip.models.WGAN(mlp(2, 2), mlp(2, 1), latent_dim=2, rank_penalty=-1.0)


def test_only_trainable_layers_count_and_constrained_layers_use_their_effective_kernel(rng):
    """A frozen Dense, a BjorckDense and a Dense: lambda * sum_i r(W_i) over the last two, effective kernels.

    BjorckDense applies lambda * polar(W), whose singular values are all equal, so its r = 1
    (closed form) whatever the raw kernel's r; the frozen kernel cannot respond and is left out.
    """
    generator = keras.Sequential([
        keras.Input((3,)),
        keras.layers.Dense(4, use_bias=False, trainable=False),
        tflip.layers.BjorckDense(4, use_bias=False),
        keras.layers.Dense(2, use_bias=False),
    ])
    frozen, raw_bjorck, last = rng.normal(size=(3, 4)), rng.normal(size=(4, 4)), rng.normal(size=(4, 2))
    for layer, kernel in zip(generator.layers, (frozen, raw_bjorck, last)):
        layer.kernel.assign(kernel)
    assert numpy_rank_collapse(raw_bjorck) < 0.9  # the raw kernel would give another value
    critic = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, kernel_initializer="zeros", use_bias=False)])
    gradients, loss, rank = generator_gradients(
        generator, critic, keras.optimizers.SGD(), tflip.losses.wasserstein_generator_loss, tf.ones((5, 3)), 0.5
    )
    expected_sum = 1.0 + numpy_rank_collapse(last)
    np.testing.assert_allclose(rank, expected_sum / 2, rtol=1e-5)
    np.testing.assert_allclose(loss, -0.5 * expected_sum, rtol=1e-5)
    np.testing.assert_allclose(mean_rank_collapse(generator), expected_sum / 2, rtol=1e-5)
    # Gradients: the trainable kernels only; r(polar(W)) is constant, so the Björck kernel's is ~0.
    assert len(gradients) == 2
    np.testing.assert_allclose(gradients[0], np.zeros((4, 4)), atol=1e-4)
    numeric = np.zeros_like(last)
    for index in np.ndindex(last.shape):
        step = np.zeros_like(last)
        step[index] = 1e-6
        numeric[index] = (numpy_rank_collapse(last + step) - numpy_rank_collapse(last - step)) / 2e-6
    np.testing.assert_allclose(gradients[1], -0.5 * numeric, atol=1e-4)
