"""Smoke run of the Sargent thesis chapter-5 reproduction: benchmarks/repro_sargent_digits.py."""

import json
import math
import os

import numpy as np
import pytest
import tensorflow as tf

from tests.reproductions.helpers import BENCHMARKS, assert_matches_shown, benchmarks_on_path, table_rows  # noqa: F401

ROOT = os.path.dirname(BENCHMARKS)
COMMITTED = os.path.join(BENCHMARKS, "results", "sargent_digits", "results.json")
DOC = os.path.join(ROOT, "docs", "reproductions", "sargent.md")

PNGS = ("real", "samples_reshape_k2", "samples_k2", "spectra_critic", "spectra_generator", "k_curve")


@pytest.fixture(scope="module")
def repro(benchmarks_on_path):  # noqa: F811 (the imported fixture)
    import repro_sargent_digits

    return repro_sargent_digits


@pytest.fixture(scope="module")
def smoke(repro, tmp_path_factory):
    """One smoke run shared by the tests (about 15 s of CPU, mostly graph tracing)."""
    out = tmp_path_factory.mktemp("sargent")
    returned = repro.main(["--smoke", "--out", str(out)])
    with open(out / "results.json") as f:
        return out, returned, json.load(f)


def _numbers(value):
    """Every number inside a JSON value."""
    if isinstance(value, dict):
        return [n for item in value.values() for n in _numbers(item)]
    if isinstance(value, list):
        return [n for item in value for n in _numbers(item)]
    return [value] if isinstance(value, (int, float)) and not isinstance(value, bool) else []


def test_outputs_exist_and_pngs_decode(smoke):
    out, _, _ = smoke
    for name in PNGS:
        image = tf.io.decode_png(tf.io.read_file(str(out / f"{name}.png")))
        assert image.shape[0] >= 30 and image.shape[1] >= 30 and image.shape[2] in (1, 3, 4), name
        # A uniform picture would mean nothing was drawn.
        assert float(tf.math.reduce_std(tf.cast(image, tf.float32))) > 1.0, name


def test_json_keys_and_finite_values(smoke):
    _, returned, summary = smoke
    assert summary["mode"] == "smoke"
    assert set(summary) >= {"scale", "thesis_inception_score_by_k", "data", "classifier", "frechet", "runs",
                            "spectra", "k_sweep", "reshape_vs_toeplitz", "wall_seconds"}
    assert set(summary["thesis_inception_score_by_k"]) == {"1", "2", "4", "8"}
    assert [(r["norm"], r["k"]) for r in summary["runs"]] == [("reshape", 2.0), ("toeplitz", 2.0)]
    assert all(math.isfinite(n) for n in _numbers(summary))
    assert summary["k_sweep"]["k"] == [2.0] and summary["k_sweep"]["best_k"] == 2.0
    assert summary["k_sweep"]["fd_mean"] == pytest.approx(returned["k_sweep"]["fd_mean"])
    for run in summary["runs"]:
        for key in ("fd_train", "fd_train_resampled", "fd_test"):
            assert run[key] > 0.0, (key, run["norm"])
        assert len(run["fd_trace"]) == summary["scale"]["evaluations"] and run["fd_trace"][-1] == run["fd_train"]
        assert sum(run["class_counts"]) == summary["data"]["n_test"]
        assert [row["layer"] for row in run["lipschitz"]["layers"]] == ["conv1", "conv2", "head"]


def test_frechet_distance_of_train_set_to_itself_vanishes(smoke):
    _, _, summary = smoke
    frechet = summary["frechet"]
    assert frechet["noise_floor_test_vs_train"] > 0.0
    assert frechet["train_vs_train"] <= 1e-9 * max(1.0, frechet["noise_floor_test_vs_train"])


def test_toeplitz_critic_layers_have_exact_norm_k(smoke):
    _, _, summary = smoke
    (toeplitz,) = [r for r in summary["runs"] if r["norm"] == "toeplitz"]
    for row in toeplitz["lipschitz"]["layers"]:
        # Power iteration approaches the norm from below, so the normalized layer sits at or just above k.
        assert row["nominal"] * (1 - 1e-6) <= row["exact"] <= row["nominal"] * (1 + 1e-3), row
        assert row["exact"] <= row["certified_upper"] * (1 + 1e-9), row
    lip = toeplitz["lipschitz"]
    assert lip["nominal"] == 2.0**2
    assert lip["exact_product"] == pytest.approx(math.prod(row["exact"] for row in lip["layers"]))


def test_reshape_critic_true_norms_are_reported(smoke):
    _, _, summary = smoke
    (reshape,) = [r for r in summary["runs"] if r["norm"] == "reshape"]
    for row in reshape["lipschitz"]["layers"]:
        assert row["exact"] > 0.0 and row["exact"] <= row["certified_upper"] * (1 + 1e-9), row
        if row["layer"].startswith("conv"):
            # What this normalization divides by: the reshaped-kernel norm, set to k.
            assert row["reshaped_kernel"] == pytest.approx(row["nominal"], rel=5e-2), row
    ratios = summary["reshape_vs_toeplitz"]["reshape"]
    assert ratios["conv_exact_over_nominal_max"] >= ratios["conv_exact_over_nominal_min"] > 0.0


def test_lipschitz_measurements_are_ordered(smoke):
    _, _, summary = smoke
    for run in summary["runs"]:
        lip = run["lipschitz"]
        # lower bound (slopes found) <= product of exact layer norms <= certified product of layer bounds.
        assert 0.0 < lip["empirical_lower"] <= lip["exact_product"] * (1 + 1e-4), run["norm"]
        assert lip["exact_product"] <= lip["certified_upper"] * (1 + 1e-9), run["norm"]


def test_repeated_seeds_are_rejected(repro, tmp_path):
    with pytest.raises(ValueError, match="--seeds"):
        repro.main(["--smoke", "--out", str(tmp_path), "--seeds", "0", "0"])


@pytest.fixture(scope="module")
def committed():
    """The committed full-run results (part of the repository: a missing file is a failure, not a skip)."""
    assert os.path.exists(COMMITTED), f"{COMMITTED} is committed with the reproduction and must exist"
    with open(COMMITTED) as f:
        return json.load(f)


def test_committed_full_results_support_the_documented_claims(committed):
    summary = committed
    assert summary["mode"] == "full"
    assert summary["k_sweep"]["k"] == [1.0, 2.0, 4.0, 8.0]
    assert all(math.isfinite(n) for n in _numbers(summary["k_sweep"]))
    for run in summary["runs"]:
        lip = run["lipschitz"]
        assert lip["empirical_lower"] <= lip["exact_product"] * (1 + 1e-4) <= lip["certified_upper"] * (1 + 1e-3)
        if run["norm"] == "toeplitz":
            # docs/reproductions/sargent.md: every Toeplitz layer within 1% of k after training.
            assert all(abs(row["exact"] / row["nominal"] - 1) < 1e-2 for row in lip["layers"]), run["k"]


def test_committed_k_sweep_is_recomputed_from_its_runs(committed):
    """The sweep's per-seed, mean and best-k figures follow from the individual Toeplitz runs."""
    sweep = committed["k_sweep"]
    runs = {(r["k"], r["seed"]): r for r in committed["runs"] if r["norm"] == "toeplitz"}
    for i, k in enumerate(sweep["k"]):
        per_seed = [runs[(k, seed)] for seed in sweep["seeds"]]
        assert sweep["fd_per_seed"][i] == [r["fd_train"] for r in per_seed]
        assert sweep["fd_resampled_per_seed"][i] == [r["fd_train_resampled"] for r in per_seed]
        assert sweep["exact_product_per_seed"][i] == [r["lipschitz"]["exact_product"] for r in per_seed]
        assert sweep["empirical_lower_per_seed"][i] == [r["lipschitz"]["empirical_lower"] for r in per_seed]
        assert sweep["fd_mean"][i] == pytest.approx(np.mean(sweep["fd_per_seed"][i]), rel=1e-12)
        assert sweep["nominal_lipschitz"][i] == k ** 5
    assert sweep["best_k"] == sweep["k"][int(np.argmin(sweep["fd_mean"]))]


def test_docs_k_table_states_the_committed_results(committed):
    """Each row of the gain table in docs/reproductions/sargent.md shows the committed numbers, as rounded there."""
    sweep = committed["k_sweep"]
    rows = table_rows(DOC, "| k | nominal k^5 | thesis IS")
    assert [float(row[0]) for row in rows] == sweep["k"]
    for i, row in enumerate(rows):
        k = row[0]
        assert_matches_shown(row[1], [sweep["nominal_lipschitz"][i]])
        assert_matches_shown(row[2], [committed["thesis_inception_score_by_k"][k]])
        assert_matches_shown(row[3], sweep["fd_per_seed"][i])
        assert_matches_shown(row[4], [sweep["fd_mean"][i]])
        assert_matches_shown(row[5], sweep["fd_resampled_per_seed"][i])
        assert_matches_shown(row[6], sweep["empirical_lower_per_seed"][i])
