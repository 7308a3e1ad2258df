"""Smoke run of Sargent sections 5.5.2-5.5.3 (r(W) penalty, spectral gradient clamping): repro_sargent_extensions."""

import math
import os

import numpy as np
import pytest

from tests.reproductions.helpers import (
    BENCHMARKS,
    assert_matches_shown,
    assert_png,
    benchmarks_on_path,  # noqa: F401
    load_json,
    table_rows,
)

COMMITTED = os.path.join(BENCHMARKS, "results", "sargent_extensions", "results.json")
DOC = os.path.join(os.path.dirname(BENCHMARKS), "docs", "reproductions", "sargent.md")

pytestmark = pytest.mark.usefixtures("benchmarks_on_path")


@pytest.mark.slow
def test_extensions_smoke(tmp_path):
    import repro_sargent_extensions as repro

    returned = repro.main(["--smoke", "--out", str(tmp_path)])
    summary = load_json(tmp_path / "results.json")
    assert summary["mode"] == "smoke" and len(summary["runs"]) == len(returned["runs"])
    assert summary["seeds"] == [0] and all(run["seed"] == 0 for run in summary["runs"])
    assert set(summary["thesis_inception_score"]) == {"baseline", "rank_penalty", "clamp_generator", "clamp_critic"}
    settings = [(run["setting"], run["value"]) for run in summary["runs"]]
    assert settings == [("baseline", None), ("rank_penalty", 1.0), ("clamp_generator", 1.5), ("clamp_critic", 4.0)]
    assert summary["frechet_noise_floor"] > 0.0
    for run in summary["runs"]:
        assert math.isfinite(run["fd_train"]) and run["fd_train"] > 0.0, run["setting"]
        assert len(run["fd_trace"]) == 2
        ranks = run["generator_rank_collapse"]
        assert set(ranks) == {"project", "up", "conv", "to_image"}
        # r(W) = sum sigma_i / (k sigma_max) lies in [1/k, 1].
        assert all(0.0 < value <= 1.0 + 1e-6 for value in ranks.values()), ranks
        if run["setting"].startswith("clamp"):
            trace = run["gradient_sigma_ratio"]
            assert trace["steps"] == [5, 10, 15, 20, 25, 30]
            assert all(ratio >= 1.0 - 1e-6 for ratio in trace["mean"])  # sigma_0 >= sigma_1
            assert all(0.0 <= fraction <= 1.0 for fraction in trace["clamp_fraction"])
            # A mean ratio above r means some matrix exceeded r in that update, so the clamp acted.
            if any(ratio > run["value"] for ratio in trace["mean"]):
                assert run["clamp_count"] > 0
        else:
            assert "gradient_sigma_ratio" not in run
    assert_png(tmp_path / "extensions.png")


def _setting(label):
    """`(setting, value)` of a row label of the docs table, e.g. "clamp critic, r = 15" -> ("clamp_critic", 15.0)."""
    if label.startswith("baseline"):
        return "baseline", None
    name, value = label.split(", ")
    setting = {"r(W) penalty": "rank_penalty", "clamp generator": "clamp_generator", "clamp critic": "clamp_critic"}
    return setting[name], float(value.split("=")[1])


def test_docs_extension_table_states_the_committed_results():
    """Each row of the section 5.5.2-5.5.3 table in docs/reproductions/sargent.md shows the committed numbers."""
    assert os.path.exists(COMMITTED), f"{COMMITTED} is committed with the reproduction and must exist"
    summary = load_json(COMMITTED)
    assert summary["mode"] == "full"
    rows = table_rows(DOC, "| setting | thesis (Inception score")
    assert len(rows) >= 9
    for label, thesis, per_seed, mean, rank in rows:
        setting, value = _setting(label)
        runs = sorted((r for r in summary["runs"] if r["setting"] == setting and r["value"] == value),
                      key=lambda r: r["seed"])
        assert [r["seed"] for r in runs] == summary["seeds"], label
        scores = summary["thesis_inception_score"][setting]
        assert_matches_shown(thesis, [scores if value is None else scores[str(value)]])
        fd = [r["fd_train"] for r in runs]
        assert_matches_shown(per_seed, fd)
        assert_matches_shown(mean, [np.mean(fd)])
        # The generator's mean r(W): over its linear layers, then over the seeds.
        assert_matches_shown(rank, [np.mean([np.mean(list(r["generator_rank_collapse"].values())) for r in runs])])
