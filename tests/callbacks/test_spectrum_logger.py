"""SpectrumLogger: values read back from the event files against numpy references."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tflip
from tests.callbacks.events import histogram_matches, last, png_size, read_events
from tests.layer_checks import mirrored_strategy
from tests.models.helpers import mlp, toy_gan
from tests.ops.test_conv import numpy_conv_matrix, strided_circular_matrix
from tflip.callbacks import SpectrumLogger


def log_once(model, log_dir, **kwargs):
    logger = SpectrumLogger(log_dir, strict=True, **kwargs)
    logger.set_model(model)
    logger.on_epoch_end(0)
    return logger, read_events(log_dir)


def dense_model(kernel, activation=None):
    layer = keras.layers.Dense(kernel.shape[1], activation, name="dense")
    model = keras.Sequential([keras.Input((kernel.shape[0],)), layer])
    model.layers[0].set_weights([kernel, np.zeros(kernel.shape[1])])
    return model


def test_dense_spectrum_matches_numpy_svd(tmp_path, rng):
    kernel = rng.normal(size=(7, 5)).astype("float32")
    _, events = log_once(dense_model(kernel), tmp_path)
    expected = np.linalg.svd(kernel.astype("float64"), compute_uv=False)
    assert histogram_matches(last(events, "dense/singular_values_dense"), expected)
    np.testing.assert_allclose(last(events, "dense/sigma_max"), expected[0], rtol=1e-5)
    np.testing.assert_allclose(last(events, "dense/sigma_ratio"), expected[0] / expected[1], rtol=1e-5)
    np.testing.assert_allclose(last(events, "dense/rank_collapse"), expected.sum() / (5 * expected[0]), rtol=1e-5)


def test_histogram_check_detects_a_wrong_spectrum(tmp_path, rng):
    """The reference comparison is not vacuous: a perturbed spectrum fails it."""
    kernel = rng.normal(size=(7, 5)).astype("float32")
    _, events = log_once(dense_model(kernel), tmp_path)
    expected = np.linalg.svd(kernel.astype("float64"), compute_uv=False)
    assert not histogram_matches(last(events, "dense/singular_values_dense"), expected * [1, 1, 1.3, 1, 1])


def test_rank_collapse_orthogonal_and_rank_one(tmp_path, rng):
    orthogonal, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    rank_one = np.outer(rng.normal(size=6), rng.normal(size=4))
    _, events = log_once(dense_model(orthogonal.astype("float32")), tmp_path / "a")
    np.testing.assert_allclose(last(events, "dense/rank_collapse"), 1.0, rtol=1e-5)
    _, events = log_once(dense_model(rank_one.astype("float32")), tmp_path / "b")
    # sigma = (s, 0, 0, 0): r = s / (4 s) = 1/4 (up to the float32 SVD's rounding of the zeros).
    np.testing.assert_allclose(last(events, "dense/rank_collapse"), 0.25, atol=1e-6)


@pytest.mark.parametrize("stride, padding", [(1, "same"), (2, "same"), (2, "valid")])
def test_conv_spectrum_and_zero_padding_norm(tmp_path, rng, stride, padding):
    size = 8
    layer = keras.layers.Conv2D(3, 3, strides=stride, padding=padding, name="conv2d")
    model = keras.Sequential([keras.Input((size, size, 2)), layer])
    kernel = rng.normal(size=(3, 3, 2, 3)).astype("float32")
    model.layers[0].set_weights([kernel, np.zeros(3)])
    _, events = log_once(model, tmp_path)
    circular = np.linalg.svd(strided_circular_matrix(kernel.astype("float64"), size, stride), compute_uv=False)
    circular = np.sort(circular)[::-1][: (size // stride) ** 2 * min(3, stride * stride * 2)]
    assert histogram_matches(last(events, "conv2d/singular_values_conv_circular"), circular, rtol=1e-4)
    np.testing.assert_allclose(last(events, "conv2d/sigma_max_circular"), circular[0], rtol=1e-5)
    exact = np.linalg.norm(numpy_conv_matrix(kernel.astype("float64"), size, stride, padding), 2)
    np.testing.assert_allclose(last(events, "conv2d/sigma_max"), exact, rtol=1e-6)


def test_transposed_conv_norm_matches_its_explicit_matrix(tmp_path, rng):
    layer = keras.layers.Conv2DTranspose(2, 3, strides=2, padding="same", use_bias=False, name="conv2d_transpose")
    model = keras.Sequential([keras.Input((4, 4, 3)), layer])
    layer.set_weights([rng.normal(size=(3, 3, 2, 3)).astype("float32")])
    basis = np.eye(4 * 4 * 3, dtype="float32").reshape(-1, 4, 4, 3)
    matrix = model.predict(basis, verbose=0).reshape(48, -1).astype("float64")
    _, events = log_once(model, tmp_path)
    np.testing.assert_allclose(last(events, "conv2d_transpose/sigma_max"), np.linalg.norm(matrix, 2), rtol=1e-6)


def test_tflip_layers_log_their_effective_kernel(tmp_path):
    model = keras.Sequential([keras.Input((6,)), tflip.layers.BjorckDense(6, lipschitz=2.0, name="bjorck_dense")])
    _, events = log_once(model, tmp_path)
    histogram = last(events, "bjorck_dense/singular_values_dense")
    assert histogram_matches(histogram, np.full(6, 2.0), rtol=1e-4)


def test_lipschitz_bound_and_probe_gradients_for_a_linear_model(tmp_path, rng):
    """f(x) = w.x: the bound and every input-gradient norm equal ||w||."""
    w = rng.normal(size=(4, 1)).astype("float32")
    probe = rng.normal(size=(16, 4))
    _, events = log_once(dense_model(w), tmp_path, probe=probe)
    norm = np.linalg.norm(w)
    for tag in ("lipschitz_upper_bound", "probe_gradient_norm_max", "probe_gradient_norm_mean"):
        np.testing.assert_allclose(last(events, tag), norm, rtol=1e-5, err_msg=tag)


def test_probe_shows_the_gap_below_the_bound(tmp_path, rng):
    """ReLU networks: gradient norms on data stay at or below the certified product of layer norms."""
    model = mlp(3, 1, width=16)
    logger, _ = log_once(model, tmp_path, probe=rng.normal(size=(64, 3)))
    assert logger.latest["probe_gradient_norm_max"] <= logger.latest["lipschitz_upper_bound"] * (1 + 1e-5)
    assert logger.latest["probe_gradient_norm_mean"] <= logger.latest["probe_gradient_norm_max"]


def test_spectral_plot_is_a_png_in_tensorboard_and_on_disk(tmp_path, rng):
    logger, events = log_once(mlp(3, 1), tmp_path / "logs", image_dir=tmp_path / "png")
    width, height, png = last(events, "spectral_plot")
    assert (int(width), int(height)) == (640, 480)
    assert png_size(png) == (640, 480)
    (path,) = logger.image_files
    assert png_size(tf.io.read_file(path)) == (640, 480)


def test_layers_argument_restricts_and_is_checked(tmp_path):
    model = mlp(3, 1)
    name = model.layers[1].name
    logger, events = log_once(model, tmp_path, layers=[name])
    assert {tag.split("/")[0] for tag in events if "/" in tag} == {name}
    logger = SpectrumLogger(tmp_path / "b", layers=["nope"])
    logger.set_model(model)
    with pytest.raises(ValueError, match="layers"):
        logger.on_train_begin()


@pytest.mark.parametrize("kwargs, name", [
    ({"log_dir": None}, "log_dir"),
    ({"log_dir": ""}, "log_dir"),
    ({"every_n_epochs": 0}, "every_n_epochs"),
    ({"layers": "dense"}, "layers"),
    ({"probe": np.zeros(3)}, "probe"),
    ({"histogram_buckets": 0}, "histogram_buckets"),
    ({"max_frequencies": -1}, "max_frequencies"),
    ({"image_dir": 3}, "image_dir"),
])
def test_bad_arguments(tmp_path, kwargs, name):
    kwargs = {"log_dir": str(tmp_path), **kwargs}
    with pytest.raises(ValueError, match=name):
        SpectrumLogger(**kwargs)


def test_logging_failure_warns_and_training_continues(tmp_path, monkeypatch):
    model = mlp(2, 1)
    model.compile("sgd", "mse")
    logger = SpectrumLogger(tmp_path)

    def broken(layer):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(logger.analyzer, "analyze", broken)
    with pytest.warns(UserWarning, match="disk on fire"):
        history = model.fit(np.zeros((8, 2)), np.zeros((8, 1)), epochs=2, verbose=0, callbacks=[logger])
    assert len(history.history["loss"]) == 2
    strict = SpectrumLogger(tmp_path, strict=True)
    monkeypatch.setattr(strict.analyzer, "analyze", broken)
    with pytest.raises(RuntimeError, match="disk on fire"):
        model.fit(np.zeros((8, 2)), np.zeros((8, 1)), epochs=1, verbose=0, callbacks=[strict])


def test_every_n_epochs(tmp_path):
    model = mlp(2, 1)
    model.compile("sgd", "mse")
    model.fit(np.zeros((8, 2)), np.zeros((8, 1)), epochs=5, verbose=0,
              callbacks=[SpectrumLogger(tmp_path, every_n_epochs=2, strict=True)])
    assert [step for step, _ in read_events(tmp_path)[f"{model.layers[0].name}/sigma_max"]] == [1, 3]


def check_gan_spectra(gan, events):
    """Every kernel of generator and critic is logged and equals numpy's SVD of its weights."""
    for prefix, network in (("generator", gan.generator), ("critic", gan.critic)):
        for layer in network.layers:
            values = np.linalg.svd(np.asarray(layer.kernel, dtype="float64"), compute_uv=False)
            np.testing.assert_allclose(last(events, f"{prefix}/{layer.name}/sigma_max"), values[0], rtol=1e-5)
        assert f"{prefix}/spectral_plot" in events
        assert f"{prefix}/lipschitz_upper_bound" in events
    assert "critic/probe_gradient_norm_max" in events
    assert "generator/probe_gradient_norm_max" not in events


def test_wgan_under_mirrored_strategy(tmp_path):
    strategy = mirrored_strategy()
    data = tflip.datasets.eight_gaussians(256, seed=0)
    with strategy.scope():
        gan = toy_gan("gp")
        gan.compile()
    gan.fit(data, batch_size=64, epochs=1, verbose=0,
            callbacks=[SpectrumLogger(tmp_path, probe=data[:32], strict=True)])
    check_gan_spectra(gan, read_events(tmp_path))


def test_mixed_precision_conv_critic(tmp_path, rng):
    keras.mixed_precision.set_global_policy("mixed_float16")
    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        tflip.layers.SpectralNormConv2D(4, 3, power_iterations=50, name="spectral_norm_conv2d"),
        keras.layers.Conv2D(2, 3, strides=2, padding="same", name="conv2d"),
        keras.layers.Flatten(),
        keras.layers.Dense(1, dtype="float32"),
    ])
    model.compile("sgd", "mse")
    model.fit(rng.normal(size=(16, 8, 8, 1)), np.zeros((16, 1)), epochs=1, verbose=0)
    logger, events = log_once(model, tmp_path, probe=rng.normal(size=(8, 8, 8, 1)))
    kernel = np.asarray(model.layers[1].kernel, dtype="float64")
    exact = np.linalg.norm(numpy_conv_matrix(kernel, 8, 2, "same"), 2)
    np.testing.assert_allclose(last(events, "conv2d/sigma_max"), exact, rtol=1e-6)
    # The trained spectral-norm conv sits at its exact norm 1.
    np.testing.assert_allclose(last(events, "spectral_norm_conv2d/sigma_max"), 1.0, rtol=1e-3)
    assert np.isfinite(logger.latest["probe_gradient_norm_max"])


def test_after_load_model(tmp_path):
    data = tflip.datasets.eight_gaussians(128, seed=0)
    gan = toy_gan("lp")
    gan.compile()
    gan.fit(data, batch_size=64, epochs=1, verbose=0)
    gan.save(tmp_path / "gan.keras")
    loaded = keras.models.load_model(tmp_path / "gan.keras")
    loaded.fit(data, batch_size=64, epochs=1, verbose=0,
               callbacks=[SpectrumLogger(tmp_path / "logs", probe=data[:16], strict=True)])
    check_gan_spectra(loaded, read_events(tmp_path / "logs"))
