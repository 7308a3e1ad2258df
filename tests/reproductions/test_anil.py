"""Smoke runs of the Anil et al. (ICML 2019) reproductions: benchmarks/repro_anil_*.py."""

import json
import math
import os
import re

import numpy as np
import pytest

from tests.reproductions.helpers import (
    BENCHMARKS,
    benchmarks_on_path,  # noqa: F401
    table_rows,
)
from tests.reproductions.helpers import assert_png as _assert_png
from tests.reproductions.helpers import load_json as _load

RESULTS = os.path.join(BENCHMARKS, "results")
DOC = os.path.join(os.path.dirname(BENCHMARKS), "docs", "reproductions", "anil.md")

pytestmark = pytest.mark.usefixtures("benchmarks_on_path")


def test_wasserstein_smoke(tmp_path):
    import repro_anil_wasserstein as repro

    returned = repro.main(["--smoke", "--out", str(tmp_path)])
    summary = _load(tmp_path / "results.json")
    assert summary["mode"] == "smoke" and summary["results"] == json.loads(json.dumps(returned["results"]))
    assert set(summary) >= {"config", "true_w1", "paper_table1", "bias_free_one_layer_value", "results", "pictures",
                            "wall_seconds"}
    assert set(summary["paper_table1"]) >= {"ReLU", "MaxMin", "FullSort"}
    assert {r["task"] for r in summary["results"]} == {"absolute_value", "three_cones", "cone"}
    assert {r["constraint"] for r in summary["results"] if r["task"] == "cone"} == {"bjorck", "spectral"}
    long_runs = [r for r in summary["results"] if r.get("budget") == "long"]
    config = summary["config"]
    assert [[r["activation"], r["dimension"], r["depth"]] for r in long_runs] == config["long_runs"]
    assert all(r["steps"] == config["long_steps"] and r["constraint"] == "bjorck" for r in long_runs)
    for r in summary["results"]:
        numbers = [r["estimate"], r["exact_w1_eval_samples"], r["lipschitz_upper_bound"], *r["curve_val_estimate"]]
        assert all(math.isfinite(v) for v in numbers), r
        # Every sample of Q is at distance >= 1 from every point of P, so no finite sample set has W1 < 1.
        assert r["exact_w1_eval_samples"] >= 1.0 - 1e-6
        assert 0.0 < r["estimate"] <= 1.05, r
        # An L-Lipschitz critic's mean difference on samples cannot exceed L times their exact W1.
        assert r["estimate"] <= r["exact_w1_eval_samples"] * r["lipschitz_upper_bound"] + 1e-5, r
        if r["constraint"] == "bjorck":
            assert r["lipschitz_upper_bound"] <= 1.0 + 1e-4
            assert r["orthonormality_error_after_tightening"] < 1e-4
    for d, values in summary["bias_free_one_layer_value"].items():
        assert all(0.0 < v <= 1.0 for v in values.values()), (d, values)
    assert set(summary["pictures"]) == {"absolute_value", "three_cones", "cone_curves"}
    for name in summary["pictures"].values():
        _assert_png(tmp_path / name)


def test_robustness_smoke(tmp_path):
    import repro_anil_robustness as repro

    repro.main(["--smoke", "--out", str(tmp_path)])
    summary = _load(tmp_path / "results.json")
    assert summary["mode"] == "smoke"
    assert set(summary) >= {"config", "attack_epsilons", "paper_table3_mnist_percent", "results",
                            "total_certificate_violations", "pictures", "wall_seconds"}
    assert set(summary["paper_table3_mnist_percent"]) >= {r["model"] for r in summary["results"]}
    names = {r["model"] for r in summary["results"]}
    assert any(n.startswith("Standard") for n in names) and any(n.startswith("Margin") for n in names)
    assert summary["total_certificate_violations"] == 0
    n = summary["test_samples"]
    for r in summary["results"]:
        assert 0.0 <= r["clean_error"] <= 1.0
        curve = np.array(r["certified_curve"]["accuracy"])
        assert np.all(np.isfinite(curve)) and np.all(np.diff(curve) <= 1e-7)
        assert curve[0] == pytest.approx(1.0 - r["clean_error"], abs=1e-6)
        for key in ("fgsm_0.1", "fgsm_0.3", "pgd_0.1", "pgd_0.3"):
            attack = r["attacks"][key]
            assert attack["error"] >= r["clean_error"] - 1e-9
            # A certified point survives every attack, so the accuracy under attack is at least the certified one.
            assert 1.0 - attack["error"] >= attack["certified_accuracy"] - 1e-9
            assert attack["certified_but_broken"] == 0
            assert attack["max_linf_distance"] <= float(key.split("_")[1]) + 1e-5
        assert r["robust_error_pgd_0.1_library"] == pytest.approx(r["attacks"]["pgd_0.1"]["error"], abs=1.0 / n)
        if r["model"].startswith("Margin"):
            assert r["lipschitz_upper_bound_inf"] <= summary["config"]["lipschitz"] * (1 + 1e-4)
    _assert_png(tmp_path / summary["pictures"]["certified_accuracy"])


def _paper_numbers(cell):
    """The paper's number in parentheses of a docs cell, `None` for "(-)" or no parentheses."""
    match = re.search(r"\(([^)]*)\)", cell)
    return None if match is None or match.group(1) == "-" else float(match.group(1))


def test_docs_quote_the_papers_numbers_as_the_scripts_transcribe_them():
    """The paper columns of docs/reproductions/anil.md agree with the tables the scripts carry (two transcriptions)."""
    table1 = _load(os.path.join(RESULTS, "anil_wasserstein", "results.json"))["paper_table1"]
    rows = table_rows(DOC, "| activation | constraint | n=128, depth 3")
    columns = [(n, depth) for n in ("128", "256", "512") for depth in ("3", "7")]
    checked = 0
    for activation, constraint, *cells in rows:
        for (n, depth), cell in zip(columns, cells):
            paper = _paper_numbers(cell)
            if paper is not None:
                assert paper == table1[activation][n][depth], (activation, n, depth)
                checked += 1
            else:  # the paper's Björck rows are all quoted
                assert not (constraint == "bjorck" and activation in table1), (activation, n, depth)
    assert checked >= 18
    table3 = _load(os.path.join(RESULTS, "anil_robustness", "results.json"))["paper_table3_mnist_percent"]
    rows = table_rows(DOC, "| model | clean | FGS 0.1")
    assert {row[0] for row in rows} == set(table3)
    for model, *cells in rows:
        for key, cell in zip(("clean", "fgsm_0.1", "fgsm_0.3", "pgd_0.1", "pgd_0.3"), cells):
            assert _paper_numbers(cell) == table3[model][key], (model, key)
