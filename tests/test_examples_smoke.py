"""Smoke runs of the example scripts (`--smoke`: tiny networks, a few steps) and checks of what they return."""

import glob
import importlib
import math
import os
import subprocess
import sys

import pytest
import tensorflow as tf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")


def example(name):
    if EXAMPLES not in sys.path:
        sys.path.insert(0, EXAMPLES)
    return importlib.import_module(name)


def test_digits_wgan_logs_spectra_and_samples_and_certifies_the_critic(tmp_path, capsys):
    result = example("digits_wgan").main(["--smoke", "--clamp", "2", "--logdir", str(tmp_path)])
    out = capsys.readouterr().out
    assert "certified Lipschitz upper bound of the critic" in out and "clamped" in out
    assert all(math.isfinite(v[0]) for v in result["history"].values())
    # The product of certified layer bounds is the network bound, and bounds the exact layer norms.
    assert result["lipschitz_bound"] == pytest.approx(math.prod(result["layer_bounds"].values()), rel=1e-6)
    exact = result["exact_layer_norms"]
    assert set(exact) == {"conv_8x8", "conv_4x4", "conv_2x2", "output"}
    for name, norm in exact.items():
        # The Toeplitz normalization, converged by the final PowerIterationRefresh.
        assert norm == pytest.approx(1.0, rel=1e-4), name
        # These layers are small enough for the certified bound to be the exact norm (plus a 1e-9 margin).
        assert norm * (1 - 1e-6) <= result["layer_bounds"][name] <= norm * (1 + 1e-5), name
    assert result["lipschitz_bound"] >= result["spectrum"]["critic/probe_gradient_norm_max"]
    assert glob.glob(str(tmp_path / "spectra" / "events.*")) and glob.glob(str(tmp_path / "samples" / "events.*"))


def test_wasserstein_estimate_of_a_bjorck_critic_stays_below_the_held_out_w1(capsys):
    result = example("wasserstein_estimation").main(["--smoke"])
    assert "exact W1 of the 256 held-out samples" in capsys.readouterr().out
    assert result["exact_w1"] == 1.0
    # Tightened Björck weights: 1-Lipschitz to float32 accuracy, so the dual
    # objective on the held-out samples cannot exceed their exact W1.
    assert result["lipschitz_bound"] == pytest.approx(1.0, abs=1e-4)
    assert 0.0 < result["estimate"] <= result["held_out_w1"] * (1 + 1e-4)
    assert result["certified_lower_bound"] <= result["held_out_w1"]


def test_wasserstein_estimation_rejects_an_unconstrained_critic_without_penalty():
    with pytest.raises(SystemExit):
        example("wasserstein_estimation").main(["--smoke", "--constraint", "none", "--penalty", "none"])


def test_robust_classifier_certificates_hold_under_pgd(capsys):
    result = example("robust_classifier").main(["--smoke", "--norm", "inf"])
    assert "no certified point was broken" in capsys.readouterr().out
    assert result["lipschitz_bound"] == pytest.approx(1.0, abs=1e-5)
    clean = result["clean_accuracy"]
    assert clean > 0.5
    assert result["broken"] == [0] * len(result["epsilons"])
    for certified, attacked in zip(result["certified_accuracy"], result["pgd_accuracy"]):
        assert certified <= attacked <= clean
    assert result["certified_accuracy"] == sorted(result["certified_accuracy"], reverse=True)


@pytest.mark.slow
def test_tuner_search_reports_the_best_trial(tmp_path, capsys):
    result = example("tuner_search").main(["--smoke", "--directory", str(tmp_path)])
    assert "best hyperparameters" in capsys.readouterr().out
    assert len(result["trial_scores"]) == 2
    assert result["best_score"] == min(result["trial_scores"])
    # The best model is reloaded from the best epoch's checkpoint and reproduces the score.
    assert result["reloaded_score"] == pytest.approx(result["best_score"], rel=1e-5)
    assert {"penalty", "critic_constraint", "n_critic"} <= set(result["best_hyperparameters"])
    assert os.listdir(tmp_path)


def test_distributed_example_trains_on_two_logical_cpus(tmp_path, capsys):
    distributed = example("distributed")
    if len(tf.config.list_logical_devices("CPU")) >= 2:
        # tests/conftest.py configured two logical CPUs before TensorFlow started, so the
        # Mirrored mode runs in this process. It reuses the session's MirroredStrategy:
        # separate instances over the same devices share collective keys and can clash.
        from tests.layer_checks import mirrored_strategy

        assert distributed.cpu_devices(2) == ["/device:CPU:0", "/device:CPU:1"]
        result = distributed.main(["--smoke", "--checkpoint-dir", str(tmp_path)], strategy=mirrored_strategy())
        assert "global batch 64" in capsys.readouterr().out
        assert result["strategy"] == "MirroredStrategy" and result["chief"]
        assert result["replicas"] == 2 and result["global_batch"] == 2 * 1 * 32
        assert math.isfinite(result["w1_exact"])
    else:
        # Logical devices can only be configured before TensorFlow initializes: a fresh process.
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        env.pop("TF_CONFIG", None)
        run = subprocess.run(
            [sys.executable, os.path.join(EXAMPLES, "distributed.py"), "--smoke", "--cpu-replicas", "2",
             "--checkpoint-dir", str(tmp_path)],
            env=env, capture_output=True, text=True, timeout=300,
        )
        assert run.returncode == 0, run.stderr[-3000:]
        assert "over 2 logical CPU devices" in run.stdout and "global batch 64" in run.stdout
    # Only the chief's files remain: the weights; BackupAndRestore removed its backup after a finished run.
    assert os.path.exists(tmp_path / "wgan.weights.h5")
    assert not glob.glob(str(tmp_path / "worker*_tmp"))


def test_distributed_example_checks_its_worker_arguments():
    distributed = example("distributed")
    with pytest.raises(SystemExit):
        distributed.main(["--smoke", "--worker", "0"])
    with pytest.raises(SystemExit):
        distributed.main(["--smoke", "--worker", "2", "--workers", "localhost:1,localhost:2"])


def test_certified_digits_example_certificates_are_consistent(capsys):
    result = example("certified_digits").main(["--smoke", "--family", "aol", "--loss", "hkr"])
    assert "certified accuracy at L2 radius 0.5" in capsys.readouterr().out
    # AOL layers are 1-Lipschitz: the certified whole-network bound cannot exceed 1.
    assert 0.0 < result["lipschitz_bound"] <= 1.0 + 1e-6
    # The pairwise certificate is never below the generic one, and neither certifies a misclassified point.
    assert (result["pairwise_radii"] >= result["generic_radii"] * (1 - 1e-6)).all()
    for eps, accuracy in result["certified_accuracy"].items():
        assert accuracy["generic"] <= accuracy["pairwise"] <= result["clean_accuracy"]


def test_gan_quality_scores_the_raw_and_the_ema_generator(capsys):
    scores = example("gan_quality").main(["--smoke"])
    assert "Fréchet digits distance raw" in capsys.readouterr().out
    assert len(scores["raw"]) == len(scores["ema"]) == 2
    assert all(math.isfinite(value) and value > 0.0 for value in scores["raw"] + scores["ema"])
    # Four steps from initialization: the generated digits are far from the real ones, held-out reals are close.
    assert scores["noise_floor"] < min(scores["raw"] + scores["ema"])
    # The average lags the raw weights: after training starts the two generators differ.
    assert scores["raw"] != scores["ema"]
