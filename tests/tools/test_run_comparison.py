"""neurotrain analyze runs: the paired bootstrap's interval covers a known difference ~95% of the time, its
interval and p-value agree with scipy's, and the CLI tells two runs apart (or refuses unpaired ones)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from neurotrain_hf.cli import main
from neurotrain_hf.tools.run_comparison import paired_bootstrap


def test_interval_covers_the_known_difference_about_95_percent_of_the_time():
    """Two classifiers with true accuracies 0.80 and 0.74 on the same 300 samples (correlated errors),
    200 test sets: the 95% interval contains +0.06 in 91-98% of them."""
    hits, n = 0, 300
    for seed in range(200):
        rng = np.random.default_rng(seed)
        shared = rng.random(n)
        a = (shared < 0.80).astype(float)
        b = (shared < 0.74).astype(float)  # b right only where a is: a paired design with a known +0.06
        flip = rng.random(n) < 0.2  # plus independent noise of equal rate on both
        a[flip], b[flip] = rng.random(flip.sum()) < 0.5, rng.random(flip.sum()) < 0.5
        truth = 0.8 * 0.06  # the noise keeps 80% of the difference
        r = paired_bootstrap(a, b, resamples=1000, seed=seed)
        hits += r["low"] <= truth <= r["high"]
    assert 0.91 <= hits / 200 <= 0.98


def test_null_p_values_are_uniform_enough_and_a_real_difference_is_found():
    false = 0
    for seed in range(200):
        rng = np.random.default_rng(1000 + seed)
        a, b = (rng.random(200) < 0.8).astype(float), (rng.random(200) < 0.8).astype(float)
        false += paired_bootstrap(a, b, resamples=1000, seed=seed)["p_value"] < 0.05
    assert 0.01 <= false / 200 <= 0.10
    rng = np.random.default_rng(7)
    a, b = (rng.random(500) < 0.9).astype(float), (rng.random(500) < 0.8).astype(float)
    assert paired_bootstrap(a, b)["p_value"] < 0.01


def test_interval_and_p_value_agree_with_scipy():
    from scipy import stats

    rng = np.random.default_rng(3)
    a = rng.normal(0.80, 0.1, 150)
    b = a - 0.01 + rng.normal(0, 0.05, 150)
    ours = paired_bootstrap(a, b, resamples=20_000, seed=1)
    ci = stats.bootstrap(
        (a - b,), np.mean, n_resamples=20_000, method="percentile", random_state=2
    ).confidence_interval
    assert ours["low"] == pytest.approx(ci.low, abs=2e-3) and ours["high"] == pytest.approx(ci.high, abs=2e-3)
    perm = stats.permutation_test(
        (a, b), lambda x, y: np.mean(x - y), permutation_type="samples", n_resamples=20_000, random_state=4
    )
    assert ours["p_value"] == pytest.approx(perm.pvalue, abs=0.01)
    assert ours["difference"] == pytest.approx(float(np.mean(a - b)))


def _run(folder: Path, correct: list[int], labels: list[int], accuracy: float) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.toml").write_text('[training]\nmetric_for_best_model = "accuracy"\n')
    (folder / "test_metrics.json").write_text(
        json.dumps({"split": "test", "accuracy": accuracy, "loss": 0.5})
    )
    (folder / "history.jsonl").write_text(
        "\n".join(
            json.dumps({"step": s, "loss": 1.0 / s, "eval_accuracy": accuracy * s / 3}) for s in (1, 2, 3)
        )
    )
    with open(folder / "test_per_sample.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "label", "prediction", "correct"])
        for i, (c, y) in enumerate(zip(correct, labels)):
            w.writerow([i, y, y if c else (y + 1) % 10, c])
    return folder


def test_cli_compares_two_runs_and_refuses_different_test_splits(tmp_path, capsys):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 400).tolist()
    a = (rng.random(400) < 0.9).astype(int).tolist()
    b = (rng.random(400) < 0.7).astype(int).tolist()
    run_a = _run(tmp_path / "a", a, labels, float(np.mean(a)))
    run_b = _run(tmp_path / "b", b, labels, float(np.mean(b)))
    assert main(["analyze", "runs", str(run_a), str(run_b), "--out", str(tmp_path / "cmp")]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert f"accuracy {np.mean(a):.4f} vs {np.mean(b):.4f} on 400 paired samples" in line
    assert "a significant difference" in line
    assert (tmp_path / "cmp" / "runs_curves.png").stat().st_size > 5000
    table = (tmp_path / "cmp" / "runs_comparison.md").read_text()
    assert f"| a | {np.mean(a):.4f} | 0.5000 |" in table

    other = _run(tmp_path / "c", b, labels[::-1], float(np.mean(b)))  # another test split
    assert main(["analyze", "runs", str(run_a), str(other), "--out", str(tmp_path / "cmp2")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not the same test split" in err[0]
    assert main(["analyze", "runs", str(run_a), str(tmp_path), "--out", str(tmp_path / "cmp3")]) == 2
    assert "not a run folder" in capsys.readouterr().err


def test_a_main_metric_without_a_per_sample_column_falls_back_to_one_that_has_it(tmp_path, capsys):
    """F1 over pixels is no mean over images: without --metric the comparison pairs a test metric the
    per-sample file holds (here iou); asking for f1 is one line."""
    rng = np.random.default_rng(1)
    iou = {"a": rng.uniform(0.7, 0.9, 50), "b": rng.uniform(0.6, 0.8, 50)}
    for name, values in iou.items():
        folder = tmp_path / name
        folder.mkdir()
        (folder / "config.toml").write_text('[training]\nmetric_for_best_model = "f1"\n')
        metrics = {"split": "test", "f1": 0.8, "iou": float(values.mean()), "loss": 0.3}
        (folder / "test_metrics.json").write_text(json.dumps(metrics))
        with open(folder / "test_per_sample.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["index", "sensitivity", "iou", "loss"])
            w.writerows([i, 0.5, v, 0.3] for i, v in enumerate(values))
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    assert main(["analyze", "runs", a, b, "--out", str(tmp_path / "out")]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith(f"iou {iou['a'].mean():.4f} vs {iou['b'].mean():.4f} on 50 paired samples")
    assert main(["analyze", "runs", a, b, "--metric", "f1", "--out", str(tmp_path / "out2")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no per-sample column for 'f1'" in err[0] and "--metric" in err[0]
