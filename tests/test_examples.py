"""Smoke runs of the README's main job (the demo) and the layer benchmark."""

import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def examples_on_path(monkeypatch):
    """`examples/` importable for one test (monkeypatch restores sys.path afterwards)."""
    monkeypatch.syspath_prepend(os.path.join(ROOT, "examples"))


@pytest.fixture
def benchmarks_on_path(monkeypatch):
    """`benchmarks/` importable for one test (monkeypatch restores sys.path afterwards)."""
    monkeypatch.syspath_prepend(os.path.join(ROOT, "benchmarks"))


def test_demo_recovers_known_wasserstein_distance(capsys, examples_on_path):
    import demo

    final = demo.wasserstein_demo(steps=150)
    assert final == pytest.approx(1.0, abs=0.05)
    out = capsys.readouterr().out
    assert "exact 1.0" in out


def test_benchmark_quick_mode_runs(capsys, benchmarks_on_path):
    import bench_layers

    bench_layers.main(["--quick"])
    out = capsys.readouterr().out
    assert "toeplitz / keras wrapper" in out and "MaxMin" in out


def test_penalty_benchmark_quick_mode_runs(capsys, benchmarks_on_path):
    import bench_penalties

    times, table = bench_penalties.main(["--quick"])
    out = capsys.readouterr().out
    assert "MaxGP / GP" in out and "ALP (1 power iteration)" in out
    assert set(times) == set(bench_penalties.PENALTIES)
    assert all(w1 > 0 for w1, _ in table.values())


@pytest.mark.parametrize("penalty", ["gp", "lp", "alp", "maxgp", "maxal", "clip"])
def test_wgan_toy_example_smoke(penalty, capsys, examples_on_path):
    import wgan_toy

    values = wgan_toy.main(["--smoke", "--penalty", penalty])
    assert len(values) == 2 and all(w1 > 0 for _, w1 in values)
    assert "exact W1 to data" in capsys.readouterr().out


def test_wgan_toy_example_rejects_unknown_penalty(examples_on_path):
    import wgan_toy

    with pytest.raises(ValueError, match="`penalty`"):
        wgan_toy.main(["--smoke", "--penalty", "wgan-gp"])
