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
    # Two seeds of one family: the smallest run that exercises the per-seed runs and their means.
    summary = bench.main(["--smoke", "--no-peer", "--families", "aol", "--seeds", "2", "--out", str(tmp_path)])
    assert "tflip aol / hkr [seed 1]" in capsys.readouterr().out
    with open(tmp_path / "results.json") as handle:
        stored = json.load(handle)
    assert stored["mode"] == "smoke" and stored["epsilons"] == [0.1, 0.25, 0.5] and stored["seeds"] == 2
    assert [(r["family"], r["loss"], r["seed"]) for r in stored["results"]] == [
        ("aol", "hkr", 0), ("aol", "offset_ce", 0), ("aol", "hkr", 1), ("aol", "offset_ce", 1)]
    for r in stored["results"]:
        assert 0.0 < r["lipschitz_upper_bound"] <= 1.0 + 1e-6
        for eps in ("0.1", "0.25", "0.5"):
            assert r["generic"][eps] <= r["pairwise"][eps] <= r["clean_accuracy"]
            assert r["certified_but_broken_by_pgd"][eps] == 0
        curve = np.array(r["pairwise_curve"])
        assert curve[0] == pytest.approx(r["clean_accuracy"]) and np.all(np.diff(curve) <= 0)
    assert [(row["family"], row["loss"], row["seeds"]) for row in stored["summary"]] == [
        ("aol", "hkr", [0, 1]), ("aol", "offset_ce", [0, 1])]
    for row in stored["summary"]:
        runs = [r for r in stored["results"] if r["loss"] == row["loss"]]
        clean = [r["clean_accuracy"] for r in runs]
        assert row["clean_accuracy"] == pytest.approx(np.mean(clean))
        assert row["clean_accuracy_std"] == pytest.approx(np.std(clean, ddof=1))
        assert row["pairwise"]["0.1"] == pytest.approx(np.mean([r["pairwise"]["0.1"] for r in runs]))
    assert os.path.getsize(tmp_path / "certified_accuracy.png") > 1000
    assert summary["peer"] == "--no-peer" and "±" in summary["table"]


def test_certified_digits_comparison_uses_means_and_counts_seed_wins():
    bench = benchmark("bench_certified_digits")

    def run(family, loss, seed, certified):
        return {"family": family, "loss": loss, "seed": seed, "clean_accuracy": 0.9, "train_seconds": 1.0,
                "lipschitz_upper_bound": 1.0, "pairwise_curve": [0.9, 0.0],
                "pairwise": {"0.1": certified, "0.25": certified, "0.5": certified},
                "generic": {"0.1": 0.0, "0.25": 0.0, "0.5": 0.0}}

    # aol wins seed 0 by a lot and loses seeds 1, 2: the best mean, ahead of deel-lip in one seed of three.
    results = ([run("aol", "hkr", s, c) for s, c in enumerate((0.9, 0.3, 0.3))]
               + [run("sll", "hkr", s, 0.4) for s in range(3)]
               + [run("deel-lip", "hkr", s, 0.45) for s in range(3)])
    rows = bench.aggregate(results)
    assert rows[0]["pairwise"]["0.1"] == pytest.approx(0.5) and rows[2]["pairwise_std"]["0.1"] == pytest.approx(0.0)
    verdict = bench.comparison(results, rows)
    assert set(verdict) == {"hkr", "any"}
    row = verdict["hkr"]["0.1"]
    assert row["tflip_family"] == "aol/hkr" and row["tflip_wins"]
    assert (row["seeds_won"], row["seeds_compared"]) == (1, 3)
    assert "±" in bench.format_table(rows) and "±" not in bench.format_table(bench.aggregate(results[:1]))


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
