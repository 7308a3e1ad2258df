"""CriticLevelSets and SampleGrid: values behind the pictures, PNG sizes, fixed latents."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tflip
from tests.callbacks.events import last, png_size, read_events
from tests.layer_checks import mirrored_strategy
from tests.models.helpers import toy_gan
from tflip.callbacks import CriticLevelSets, SampleGrid
from tflip.callbacks.level_sets import critic_field
from tflip.callbacks.sample_grid import as_images, tile_images


def linear_critic(w, b=0.5):
    critic = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    critic.layers[0].set_weights([np.asarray(w, "float32").reshape(2, 1), np.array([b], "float32")])
    return critic


def test_critic_field_of_a_linear_critic(rng):
    w = np.array([1.5, -2.0])
    points = rng.normal(size=(100, 2)).astype("float32")
    values, norms = critic_field(linear_critic(w), points, batch_size=32)
    np.testing.assert_allclose(values, points @ w + 0.5, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(norms, np.linalg.norm(w), rtol=1e-6)


def test_level_sets_of_a_critic_only_model(tmp_path, rng):
    w = np.array([0.6, 0.8])  # ||w|| = 1
    model = tflip.models.WassersteinCritic(linear_critic(w))
    callback = CriticLevelSets(rng.normal(size=(50, 2)), tmp_path / "logs", fake=rng.normal(size=(40, 2)) + 1,
                               resolution=32, image_dir=tmp_path / "png", strict=True)
    callback.set_model(model)
    callback.on_epoch_end(0)
    events = read_events(tmp_path / "logs")
    np.testing.assert_allclose(last(events, "critic_grid_gradient_norm_max"), 1.0, rtol=1e-6)
    np.testing.assert_allclose(last(events, "critic_grid_gradient_norm_mean"), 1.0, rtol=1e-6)
    width, height, png = last(events, "critic_level_sets")
    assert (int(width), int(height)) == png_size(png) == (1200, 500)
    (path,) = callback.image_files
    assert png_size(tf.io.read_file(path)) == (1200, 500)
    points, xs, ys = callback.grid()
    assert points.shape == (32 * 32, 2) and xs[0] < xs[-1] and ys[0] < ys[-1]


def test_level_sets_need_fake_samples_without_generate(tmp_path, rng):
    callback = CriticLevelSets(rng.normal(size=(10, 2)), tmp_path, strict=True)
    callback.set_model(tflip.models.WassersteinCritic(linear_critic([1.0, 0.0])))
    with pytest.raises(ValueError, match="fake"):
        callback.on_epoch_end(0)


def test_gan_pictures_under_mirrored_strategy(tmp_path):
    data = tflip.datasets.eight_gaussians(256, seed=0)
    with mirrored_strategy().scope():
        gan = toy_gan("lp")
        gan.compile()
    gan.fit(data, batch_size=64, epochs=2, verbose=0,
            callbacks=[CriticLevelSets(data[:100], tmp_path, every_n_epochs=2, resolution=24, strict=True)])
    events = read_events(tmp_path)
    assert [step for step, _ in events["critic_level_sets"]] == [1]
    values, norms = critic_field(gan.critic, callback_grid(data[:100], 24))
    np.testing.assert_allclose(last(events, "critic_grid_gradient_norm_max"), norms.max(), rtol=1e-5)


def callback_grid(real, resolution):
    callback = CriticLevelSets(real, "unused", resolution=resolution)
    low, high = real.min(axis=0), real.max(axis=0)
    margin = 0.5 * (high - low)
    callback.extent = (low[0] - margin[0], high[0] + margin[0], low[1] - margin[1], high[1] + margin[1])
    return callback.grid()[0]


@pytest.mark.parametrize("kwargs, name", [
    ({"real": np.zeros((5, 3))}, "real"),
    ({"fake": np.zeros(4)}, "fake"),
    ({"resolution": 1}, "resolution"),
    ({"extent": (1, 0, 0, 1)}, "extent"),
    ({"every_n_epochs": 0}, "every_n_epochs"),
])
def test_level_sets_bad_arguments(tmp_path, kwargs, name):
    kwargs = {"real": np.zeros((5, 2)), "log_dir": str(tmp_path), **kwargs}
    with pytest.raises(ValueError, match=name):
        CriticLevelSets(**kwargs)


def test_tile_images_exact_pixels():
    images = np.array([[[[-1.0], [1.0]], [[0.0], [1.0]]], [[[1.0], [1.0]], [[-1.0], [-1.0]]]])  # 2 images 2x2
    grid = tile_images(images, columns=2)
    assert grid.shape == (4, 7, 1)
    expected = np.full((4, 7), 255)
    expected[1:3, 1:3] = [[0, 255], [128, 255]]
    expected[1:3, 4:6] = [[255, 255], [0, 0]]
    np.testing.assert_array_equal(grid[..., 0], expected)
    assert tile_images(images, columns=1, zoom=3).shape == (2 * 6 + 3, 6 + 2, 1)


def image_gan():
    generator = keras.Sequential([keras.Input((4,)), keras.layers.Dense(64, "tanh")])
    critic = keras.Sequential([keras.Input((64,)), keras.layers.Dense(1)])
    return tflip.models.WGAN(generator, critic, latent_dim=4)


def test_sample_grid_uses_fixed_latents(tmp_path):
    gan = image_gan()
    callback = SampleGrid(tmp_path / "logs", n=6, columns=3, image_shape=(8, 8), zoom=2,
                          image_dir=tmp_path / "png", strict=True)
    callback.set_model(gan)
    first = callback.images()
    np.testing.assert_array_equal(first, callback.images())
    latent = np.random.default_rng(0).standard_normal((6, 4)).astype("float32")
    np.testing.assert_allclose(first[..., 0], np.asarray(gan.generator(latent)).reshape(6, 8, 8), rtol=1e-6)
    callback.on_epoch_end(0)
    gan.generator.layers[0].kernel.assign(gan.generator.layers[0].kernel * 0.5)
    callback.on_epoch_end(1)
    assert not np.allclose(first, callback.images())
    events = read_events(tmp_path / "logs")
    width, height, png = last(events, "samples")
    expected = (3 * 16 + 4, 2 * 16 + 3)
    assert (int(width), int(height)) == png_size(png) == expected
    assert [png_size(tf.io.read_file(p)) for p in callback.image_files] == [expected, expected]


def test_as_images_shapes():
    assert as_images(np.zeros((3, 16))).shape == (3, 4, 4, 1)
    assert as_images(np.zeros((3, 5, 5, 3))).shape == (3, 5, 5, 3)
    assert as_images(np.zeros((3, 12)), (2, 2, 3)).shape == (3, 2, 2, 3)
    with pytest.raises(ValueError, match="image_shape"):
        as_images(np.zeros((3, 15)))
    with pytest.raises(ValueError, match="channels"):
        as_images(np.zeros((3, 4, 4, 2)))


@pytest.mark.parametrize("kwargs, name", [
    ({"n": 0}, "n"),
    ({"columns": 0}, "columns"),
    ({"image_shape": (8, -8)}, "image_shape"),
    ({"value_range": (1, -1)}, "value_range"),
    ({"zoom": 0}, "zoom"),
    ({"log_dir": None}, "log_dir"),
])
def test_sample_grid_bad_arguments(tmp_path, kwargs, name):
    kwargs = {"log_dir": str(tmp_path), **kwargs}
    with pytest.raises(ValueError, match=name):
        SampleGrid(**kwargs)
