"""The `tflip` command: smoke runs, outputs, flag errors and exit statuses."""

import json
import os
import subprocess
import sys

import keras
import pytest
import tensorflow as tf

from tests.callbacks.events import read_events
from tflip.cli import main

TINY_DEMO = ["--steps", "4", "--eval-every", "2", "--depth", "1", "--width", "8", "--batch-size", "16",
             "--n-critic", "2", "--eval-samples", "64", "--quiet"]


def run_main(capsys, argv):
    """Runs the command; returns (exit status, stdout, stderr)."""
    try:
        status = main(argv)
    except SystemExit as exit_:  # argparse errors
        status = exit_.code
    out, err = capsys.readouterr()
    return status, out, err


def test_demo_writes_summary_images_and_logs(tmp_path, capsys):
    status, out, err = run_main(capsys, ["demo", *TINY_DEMO, "--output", str(tmp_path)])
    assert status == 0, err
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [entry["generator_step"] for entry in summary["w1_exact"]] == [2, 4]
    assert summary["final_w1_exact"] == summary["w1_exact"][-1]["w1"] > 0
    # The default critic is Björck + GroupSort: certified 1-Lipschitz, and its gradients on data stay below.
    assert summary["critic_lipschitz_upper_bound"] == pytest.approx(1.0, abs=1e-3)
    assert summary["critic_gradient_norm_on_real"]["max"] <= summary["critic_lipschitz_upper_bound"] + 1e-4
    for image in summary["images"]:
        assert tf.io.decode_png(tf.io.read_file(str(tmp_path / image))).shape[-1] == 3
    assert {"images/samples.png", "images/critic_level_sets_epoch0001.png",
            "images/critic_spectral_plot_epoch0001.png"} <= set(summary["images"])
    spectra = read_events(tmp_path / "logs" / "spectra")
    assert "critic/lipschitz_upper_bound" in spectra and "critic/probe_gradient_norm_max" in spectra
    assert "exact W1 to held-out data" in out
    # The exported critic: plain Keras layers, same outputs and bound as the trained critic.
    exported = keras.models.load_model(tmp_path / summary["exported_critic"])
    assert not any(type(layer).__module__.startswith("tflip.layers.bjorck") for layer in exported.layers)
    assert summary["exported_critic_lipschitz_upper_bound"] == pytest.approx(
        summary["critic_lipschitz_upper_bound"], rel=1e-3)


def test_demo_with_a_penalty_and_plain_critic(tmp_path, capsys):
    status, _, err = run_main(capsys, ["demo", *TINY_DEMO, "--output", str(tmp_path), "--constraint", "none",
                                       "--activation", "relu", "--penalty", "lp", "--penalty-weight", "5"])
    assert status == 0, err
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["config"]["penalty"] == "lp" and "penalty" in summary["history"]


@pytest.mark.parametrize("flags, message", [
    (["--penalty", "xp"], "--penalty"),
    (["--penalty-weight", "-1", "--penalty", "gp"], "--penalty-weight"),
    (["--penalty-weight", "3"], "--penalty-weight"),
    (["--steps", "0"], "--steps"),
    (["--steps", "abc"], "--steps"),
    (["--dataset", "mnist"], "--dataset"),
    (["--width", "7"], "--width"),
    (["--eval-every", "10", "--steps", "5"], "--eval-every"),
])
def test_demo_bad_flags_exit_2_naming_the_flag(tmp_path, capsys, flags, message):
    status, _, err = run_main(capsys, ["demo", "--output", str(tmp_path), *flags])
    assert status == 2
    assert message in err


def test_unwritable_output_directory(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    status, _, err = run_main(capsys, ["demo", "--output", str(blocker / "sub")])
    assert status == 2
    assert "not writable" in err


def test_a_failing_run_exits_1_and_says_why(tmp_path, capsys, monkeypatch):
    from tflip.cli import demo

    def broken(args):
        raise RuntimeError("simulated failure")

    monkeypatch.setattr(demo, "run", broken)
    status, _, err = run_main(capsys, ["demo", "--output", str(tmp_path)])
    assert status == 1
    assert "simulated failure" in err


def test_estimate_w1_is_a_lower_bound_on_the_held_out_samples(tmp_path, capsys):
    """A 1-Lipschitz critic's mean difference cannot exceed the exact W1 of the same finite samples."""
    status, out, err = run_main(capsys, [
        "estimate-w1", "--problem", "absolute_value", "--steps", "60", "--learning-rate", "0.01",
        "--depth", "1", "--width", "8",
        "--eval-samples", "500", "--output", str(tmp_path), "--quiet",
    ])
    assert status == 0, err
    summary = json.loads((tmp_path / "estimate_w1.json").read_text())
    assert 0.5 < summary["estimate"] <= summary["held_out_samples_w1"] * (1 + 1e-4)
    assert summary["held_out_samples_w1"] == pytest.approx(1.0)  # P = delta_0, Q = +-1: every sample is at distance 1
    assert "W1 estimate" in out


def test_estimate_w1_cone_flags(capsys):
    status, _, err = run_main(capsys, ["estimate-w1", "--problem", "cone", "--dimension", "0"])
    assert status == 2 and "--dimension" in err
    status, _, err = run_main(capsys, ["estimate-w1", "--activation", "softmax"])
    assert status == 2 and "--activation" in err


def test_bench_rejects_unknown_names(capsys):
    status, _, err = run_main(capsys, ["bench", "nope"])
    assert status == 2 and "nope" in err


def test_bench_runs_a_benchmark_script(capsys):
    status, out, err = run_main(capsys, ["bench", "activations", "--quick"])
    assert status == 0, err
    assert "MaxMin / ReLU" in out


def test_module_entry_point_and_console_script_help():
    result = subprocess.run([sys.executable, "-m", "tflip", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    for command in ("demo", "estimate-w1", "bench"):
        assert command in result.stdout
    missing = subprocess.run([sys.executable, "-m", "tflip"], capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "COMMAND" in missing.stderr
    script = os.path.join(os.path.dirname(sys.executable), "tflip")
    assert os.path.exists(script), "the console script is installed with the package"
