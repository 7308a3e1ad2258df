"""Smoke run of Sargent sections 5.5.2-5.5.3 (r(W) penalty, spectral gradient clamping): repro_sargent_extensions."""

import math

import pytest

from tests.reproductions.helpers import (
    assert_png,
    benchmarks_on_path,  # noqa: F401
    load_json,
)

pytestmark = pytest.mark.usefixtures("benchmarks_on_path")


def test_extensions_smoke(tmp_path):
    import repro_sargent_extensions as repro

    returned = repro.main(["--smoke", "--out", str(tmp_path)])
    summary = load_json(tmp_path / "results.json")
    assert summary["mode"] == "smoke" and len(summary["runs"]) == len(returned["runs"])
    assert summary["seeds"] == [0] and all(run["seed"] == 0 for run in summary["runs"])
    assert summary["thesis_inception_score"]["clamp_critic"]["15.0"] == 7.92
    assert summary["thesis_inception_score"]["rank_penalty"]["10.0"] == 0.99
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
