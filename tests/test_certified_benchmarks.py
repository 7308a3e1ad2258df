"""Smoke runs of the certified-digits benchmark and the conv-families speed benchmark."""

import json
import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHMARKS = os.path.join(ROOT, "benchmarks")


def benchmark(name):
    if BENCHMARKS not in sys.path:
        sys.path.insert(0, BENCHMARKS)
    return __import__(name)


def test_certified_digits_smoke_writes_consistent_results(tmp_path, capsys):
    bench = benchmark("bench_certified_digits")
    summary = bench.main(["--smoke", "--no-peer", "--families", "aol", "--out", str(tmp_path)])
    assert "tflip aol / hkr" in capsys.readouterr().out
    with open(tmp_path / "results.json") as handle:
        stored = json.load(handle)
    assert stored["mode"] == "smoke" and stored["epsilons"] == [0.1, 0.25, 0.5]
    assert [(r["family"], r["loss"]) for r in stored["results"]] == [("aol", "hkr"), ("aol", "offset_ce")]
    for r in stored["results"]:
        assert 0.0 < r["lipschitz_upper_bound"] <= 1.0 + 1e-6
        for eps in ("0.1", "0.25", "0.5"):
            assert r["generic"][eps] <= r["pairwise"][eps] <= r["clean_accuracy"]
            assert r["certified_but_broken_by_pgd"][eps] == 0
        curve = np.array(r["pairwise_curve"])
        assert curve[0] == pytest.approx(r["clean_accuracy"]) and np.all(np.diff(curve) <= 0)
    assert os.path.getsize(tmp_path / "certified_accuracy.png") > 1000
    assert summary["peer"] == "--no-peer"


def test_certified_digits_rejects_unknown_families(tmp_path):
    with pytest.raises(SystemExit):
        benchmark("bench_certified_digits").main(["--smoke", "--no-peer", "--families", "bcop", "--out",
                                                   str(tmp_path)])


def test_conv_layers_benchmark_quick_mode_runs(capsys):
    results = benchmark("bench_conv_layers").main(["--quick"])
    out = capsys.readouterr().out
    assert "Training step" in out and "Inference" in out and "Verdicts" in out
    for name, ratios in results.items():
        assert ratios["training_ratio"] > 0 and ratios["inference_ratio"] > 0, name
    assert "plain-Keras export" in out and results["SLLConv2D"]["inference_vs_export"] > 0
