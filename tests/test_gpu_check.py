"""The GPU readiness script (benchmarks/gpu_check.py) in its quick CPU mode: one JSON summary, every check passing."""

import json
import os
import subprocess
import sys

SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks", "gpu_check.py")

EXPECTED_CHECKS = {
    "exact_norms", "activation_gradients", "wgan_gp_mixed_float16", "wgan_gp_xla",
    "wgan_alp_mixed_float16", "wgan_alp_xla", "mirrored_strategy", "speed",
}
EXACT_LAYERS = {
    "BjorckDense_square", "BjorckDense_wide", "BjorckDense_tall", "SpectralNormDense",
    "SpectralNormConv2D_s1", "SpectralNormConv2D_s2", "LInfProjectedDense_forward",
    "LInfProjectedDense_constraint",
}


def test_quick_run_passes_every_check_and_prints_one_json_summary(tmp_path):
    out = tmp_path / "summary.json"
    # A fresh process: the script configures its own logical devices before TensorFlow starts.
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    result = subprocess.run(
        [sys.executable, SCRIPT, "--quick", "--out", str(out)],
        capture_output=True, text=True, timeout=600, env=env,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    with open(out) as handle:
        assert json.load(handle) == summary

    assert summary["ok"] is True and summary["failed"] == [] and summary["quick"] is True
    assert summary["total_seconds"] > 0
    device = summary["device"]
    assert device["versions"]["tensorflow"] and device["versions"]["keras"]
    assert any(name.startswith("CPU:") for name in device["physical_devices"])
    checks = summary["checks"]
    assert set(checks) == EXPECTED_CHECKS
    for name, entry in checks.items():
        assert entry["ok"] is True, (name, entry)
        assert "error" not in entry and entry["seconds"] >= 0, name

    layers = checks["exact_norms"]["layers"]
    assert set(layers) == EXACT_LAYERS
    for name, row in layers.items():
        if name.startswith("Bjorck"):
            assert row["max_rel_error"] <= 1e-4, name
        elif name.startswith("Spectral"):
            assert row["rel_error"] <= 1e-3 and row["power_norm_converged"] > 0, name
        else:
            assert row["inf_norm"] <= row["lipschitz"] + 1e-6, name
    assert set(checks["activation_gradients"]["layers"]) == {"GroupSort4", "MaxMin", "FullSort"}

    for name in EXPECTED_CHECKS:
        if name.startswith("wgan_"):
            entry = checks[name]
            assert entry["losses_finite"] and entry["weights_finite"] and entry["critic_updated"], name
            assert entry["compute_dtype"] == ("float16" if "mixed" in name else "float32"), name
            assert entry["loss_scaling"] is ("mixed" in name), name
    mirrored = checks["mirrored_strategy"]
    assert mirrored["replicas"] == 2 and mirrored["compared_variables"] > 0
    assert mirrored["max_weight_difference"] <= mirrored["weight_tolerance"]

    pairs = checks["speed"]["pairs"]
    assert len(pairs) == 4
    for row in pairs.values():
        assert set(row["ms"]) == {"plain_inference", "plain_train", "tflip_inference", "tflip_train"}
        assert row["inference_ratio"] > 0 and row["train_ratio"] > 0
