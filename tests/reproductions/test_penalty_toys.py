"""Smoke runs of the penalty reproductions: benchmarks/repro_{petzka_gp_vs_lp,zhou_maxgp,terjek_regression}.py."""

import math

import numpy as np
import pytest

from tests.reproductions.helpers import assert_png as _assert_png
from tests.reproductions.helpers import benchmarks_on_path  # noqa: F401
from tests.reproductions.helpers import load_json as _load
from tflip.metrics import optimal_transport_plan, wasserstein1_exact

pytestmark = pytest.mark.usefixtures("benchmarks_on_path")


def _finite(values):
    return all(math.isfinite(v) for v in values)


def test_petzka_smoke(tmp_path):
    import repro_petzka_gp_vs_lp as repro

    repro.main(["--smoke", "--out", str(tmp_path)])
    summary = _load(tmp_path / "results.json")
    assert set(summary) >= {"config", "runs", "final_w1", "sensitivity", "level_sets", "wall_seconds"}
    weights, last = summary["config"]["weights"], summary["config"]["last"]
    runs = summary["runs"]
    assert {(r["penalty"], r["weight"]) for r in runs} == {(p, w) for p in ("GP", "LP") for w in weights}
    for run in runs:
        assert run["iterations"] == list(range(2, summary["config"]["iterations"] + 1, 2))
        assert len(run["w1"]) == len(run["iterations"]) and _finite(run["w1"]) and min(run["w1"]) > 0
        cell = summary["final_w1"][f"{run['toy']}/{run['penalty']}/{run['weight']:g}"]
        assert cell["final_w1"] == pytest.approx(np.mean(run["w1"][-last:]))
    for penalty in ("GP", "LP"):
        finals = [summary["final_w1"][f"eight_gaussians/{penalty}/{w:g}"]["final_w1"] for w in weights]
        spread = summary["sensitivity"][f"eight_gaussians/{penalty}"]["spread"]
        assert spread == pytest.approx(max(finals) - min(finals))
    # The recorded curve is the exact W1 of the generated samples: solve it again from the samples.
    checked = [r for r in runs if "final_samples" in r]
    assert checked
    for run in checked:
        samples = run["final_samples"]
        assert wasserstein1_exact(samples["generated"], samples["held_out"]) == pytest.approx(run["w1"][-1], rel=1e-5)
    assert set(summary["level_sets"]) == {f"eight_gaussians/{p}/100" for p in ("GP", "LP")}
    _assert_png(tmp_path / "w1_curves.png")
    _assert_png(tmp_path / "level_sets.png")


def test_zhou_smoke(tmp_path):
    import repro_zhou_maxgp as repro

    repro.main(["--smoke", "--out", str(tmp_path)])
    summary = _load(tmp_path / "results.json")
    assert set(summary) >= {"config", "directions", "direction_summary", "maxal_fixed", "maxal_wgan", "wall_seconds"}
    records = {(r["setup"], r["method"]): r for r in summary["directions"]}
    assert set(records) == {("separable", "MaxGP"), ("separable", "GP")}
    for record in records.values():
        real, fake = np.array(record["real"]), np.array(record["fake"])
        # The two fake points sit 2 to the left of the two real points: W1 = 2, partners straight across.
        assert record["exact_w1"] == pytest.approx(wasserstein1_exact(real, fake)) == pytest.approx(2.0)
        assert list(optimal_transport_plan(fake, real)) == [0, 1]
        assert all(-1.0 - 1e-6 <= c <= 1.0 + 1e-6 for c in record["cosine_at_fake"])
        assert _finite(record["cosine_curve"]) and math.isfinite(record["critic_w1_estimate"])
    # Trivially separable: the MaxGP critic's gradient at the fake points points to the partners.
    assert records["separable", "MaxGP"]["min_cosine_at_fake"] > 0.9
    fixed = summary["maxal_fixed"]
    assert fixed["exact_w1"] == pytest.approx(wasserstein1_exact(fixed["real"], fixed["fake"]))
    assert len(fixed["multiplier"]) == len(fixed["steps"]) == len(fixed["gradient_norm_max"])
    assert _finite(fixed["multiplier"] + fixed["gradient_norm_max"] + list(fixed["final"].values()))
    # Dual ascent (eq. 14) from 0: the max gradient norm exceeds 1 for most of this short run, so the
    # multiplier rises towards W1 = 2 from below.
    assert max(fixed["gradient_norm_max"]) > 1.0
    assert fixed["multiplier"][0] < fixed["multiplier"][-1] < fixed["exact_w1"]
    assert summary["maxal_wgan"] is None
    _assert_png(tmp_path / "directions.png")
    _assert_png(tmp_path / "maxal.png")


def test_terjek_optimum_is_the_papers_eq_28():
    import repro_terjek_regression as repro

    rng = np.random.default_rng(0)
    points = rng.uniform(-4, 4, (2000, 2))
    value, slope = repro.optimum(points)
    r = np.linalg.norm(points, axis=1)
    assert np.allclose(value[r <= 0.5], 1.0) and np.allclose(value[r > 2.5], 1.0)
    assert np.allclose(repro.target(points).numpy(), np.where((r >= 1) & (r <= 2), 0.0, 1.0))
    # 1-Lipschitz, and the stated gradient norm is the finite-difference slope.
    others = rng.uniform(-4, 4, (2000, 2))
    assert np.all(np.abs(value - repro.optimum(others)[0]) <= np.linalg.norm(points - others, axis=1) + 1e-12)
    step = 1e-6
    shifted = repro.optimum(points + step * np.array([1.0, 0.0]))[0]
    shifted_y = repro.optimum(points + step * np.array([0.0, 1.0]))[0]
    numeric = np.hypot(shifted - value, shifted_y - value) / step
    away_from_kinks = np.min(np.abs(r[:, None] - np.array([0.5, 1.5, 2.5])), axis=1) > 1e-3
    assert np.allclose(numeric[away_from_kinks], slope[away_from_kinks], atol=1e-4)


def test_terjek_smoke(tmp_path):
    import repro_terjek_regression as repro

    repro.main(["--smoke", "--out", str(tmp_path)])
    summary = _load(tmp_path / "results.json")
    assert set(summary) >= {"config", "optimum", "runs", "table", "wall_seconds"}
    labels = {r["regularizer"] for r in summary["runs"]}
    trained = {(r["batch_norm"], r["regularizer"]) for r in summary["runs"]}
    assert trained == {(batch_norm, label) for batch_norm in (False, True) for label in labels}
    for run in summary["runs"]:
        scores = [run[k] for k in ("gradient_norm_mae", "gradient_norm_max", "mse_to_target", "mse_to_optimum")]
        assert _finite(scores) and min(scores) >= 0
        assert summary["table"][f"{'BN' if run['batch_norm'] else 'no BN'}/{run['regularizer']}"] == run[
            "gradient_norm_mae"]
    # The optimum's own error on the grid: recomputed from eq. 27-28.
    resolution = summary["config"]["resolution"]
    xs = np.linspace(-4, 4, resolution)
    grid = np.stack(np.meshgrid(xs, xs), axis=-1).reshape(-1, 2)
    expected = np.mean(np.square(repro.optimum(grid)[0] - repro.target(grid).numpy()))
    assert summary["optimum"]["mse_to_target"] == pytest.approx(expected, rel=1e-6)
    _assert_png(tmp_path / "gradient_norms.png")
