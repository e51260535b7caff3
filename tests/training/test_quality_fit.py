"""Fitting, cross-fitting and reporting the quality estimate on generated per-frame scores."""

import numpy as np
import pytest

from training.quality import (
    COVERAGE_FLOOR,
    choose_cut,
    cross_fitted,
    expected_calibration_error,
    fit,
    predict,
    report,
    risk_coverage,
)


def generated_rows(n: int = 400, folds: int = 4, seed: int = 0) -> list[dict]:
    """Frames whose Dice follows their soft Dice (plus noise), a few misses, and empty answers."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        outlined = i % 10 != 0
        soft = rng.uniform(0.2, 0.95) if outlined else 0.0
        dice = float(np.clip(soft + rng.normal(0, 0.08), 0, 1)) if outlined else float(rng.random() < 0.3)
        rows.append(
            {
                "image": f"{i}.tif",
                "subject": i % 20,
                "fold": i % folds,
                "truth_present": bool(outlined or dice == 0.0),
                "predicted_present": outlined,
                "dice": dice,
                "soft_dice": soft,
                "flip_dice": float(np.clip(soft + rng.normal(0, 0.1), 0, 1)) if outlined else 1.0,
                "log_area_fraction": float(np.log(rng.uniform(0.01, 0.05))) if outlined else float(np.log(1e-5)),
                "mean_inside": rng.uniform(0.6, 0.95) if outlined else 0.0,
                "peak": rng.uniform(0.5, 1.0) if outlined else rng.uniform(0.0, 0.6),
            }
        )
    return rows


def test_fit_tracks_dice_and_is_calibrated_on_its_own_frames():
    rows = generated_rows()
    expected = predict(fit(rows), rows)
    dice = np.array([r["dice"] for r in rows])
    assert np.corrcoef(expected, dice)[0, 1] > 0.8
    assert expected_calibration_error(expected, dice) < 0.06


def test_a_better_agreeing_mask_never_gets_a_lower_estimate():
    estimator = fit(generated_rows())
    base = {"soft_dice": 0.3, "flip_dice": 0.6, "log_area_fraction": np.log(0.02), "mean_inside": 0.8, "peak": 0.9}
    values = [estimator.expected_dice({**base, "soft_dice": s}, outlined=True) for s in np.linspace(0, 1, 21)]
    assert np.all(np.diff(values) >= 0)
    assert values[-1] - values[0] > 0.3


def test_cross_fitting_never_uses_a_frames_own_fold():
    rows = generated_rows()
    before = cross_fitted(rows)
    changed = [{**r, "dice": 1.0 - r["dice"]} if r["fold"] == 2 else r for r in rows]
    after = cross_fitted(changed)
    fold2 = np.array([r["fold"] == 2 for r in rows])
    np.testing.assert_array_equal(before[fold2], after[fold2])  # fold 2's own labels never reach its estimates
    assert not np.allclose(before[~fold2], after[~fold2])  # but they do reach the other folds'


def test_the_cut_keeps_the_coverage_floor_of_nerve_present_frames():
    rng = np.random.default_rng(1)
    expected = rng.random(200)
    present = rng.random(200) < 0.9
    cut = choose_cut(expected, present)
    assert (expected[present] >= cut).mean() >= COVERAGE_FLOOR
    slightly_higher = np.nextafter(cut, 1.0)
    assert (expected[present] >= slightly_higher).mean() < COVERAGE_FLOOR


def test_expected_calibration_error_by_hand():
    expected = np.array([0.05, 0.05, 0.95, 0.95])
    dice = np.array([0.0, 0.2, 1.0, 0.8])
    # bin 0: mean expected 0.05 vs mean dice 0.1; bin 9: 0.95 vs 0.9; each half the frames
    assert expected_calibration_error(expected, dice) == pytest.approx(0.5 * 0.05 + 0.5 * 0.05)


def test_risk_coverage_keeps_the_most_trusted_first_and_ends_at_the_mean():
    expected = np.array([0.9, 0.1, 0.5])
    dice = np.array([1.0, 0.0, 0.5])
    coverage, mean_dice = risk_coverage(expected, dice)
    np.testing.assert_allclose(coverage, [1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(mean_dice, [1.0, 0.75, 0.5])


def test_report_counts_failures_flagged_and_empties():
    rows = generated_rows()
    expected = cross_fitted(rows)
    figures = report(rows, expected, choose_cut(expected, np.array([r["truth_present"] for r in rows])))
    assert figures["failure_auroc"] > 0.8
    assert figures["nerve_present_reliable_share"] >= COVERAGE_FLOOR
    assert figures["nerve_present_reliable_dice"] > figures["nerve_present_dice"]
    assert figures["frames"] == len(rows)


def test_the_cli_refits_from_a_table_reports_and_installs(tmp_path, tiny_model_dir):
    import json
    import shutil

    from model.artifact import load_metadata
    from model.quality import QualityEstimator
    from training.quality import main, write_table

    rows = generated_rows()
    write_table(rows, tmp_path / "in.csv")
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    out = tmp_path / "out"
    assert main(["--table", str(tmp_path / "in.csv"), "--out", str(out), "--model", str(model_dir), "--install"]) == 0
    saved = json.loads((out / "report.json").read_text())
    assert saved["cross_fitted"]["failure_auroc"] > 0.8
    assert (out / "reliability.png").stat().st_size > 0 and (out / "risk_coverage.png").stat().st_size > 0
    estimator = QualityEstimator.from_metadata(load_metadata(model_dir))
    assert estimator is not None and estimator.cut == saved["cross_fitted"]["cut"]


def test_the_cli_names_a_bad_table(tmp_path, capsys):
    from training.quality import main

    (tmp_path / "bad.csv").write_text("image,dice\nx,0.5\n")
    assert main(["--table", str(tmp_path / "bad.csv"), "--out", str(tmp_path / "o")]) == 2
    assert "bad.csv: not a quality table" in capsys.readouterr().err


def test_the_card_names_the_signals_the_stored_models_use():
    from model.quality import SIGNALS
    from training.model_card import SIGNAL_WORDS, _quality

    assert set(SIGNAL_WORDS) == set(SIGNALS), "the card has words for every signal a model may use"
    rows = generated_rows()
    estimator = fit(rows)
    figures = {
        "evaluation": "in-sample",
        "rule": "a rule",
        "subject_1_empty": None,
        **report(rows, predict(estimator, rows), estimator.cut),
    }
    text = _quality({"quality": estimator.to_metadata({"figures": figures})})
    for name in estimator.outlined.signals + estimator.empty.signals:
        assert SIGNAL_WORDS[name] in text
    unused = set(SIGNALS) - set(estimator.outlined.signals) - set(estimator.empty.signals)
    assert all(SIGNAL_WORDS[name] not in text for name in unused)


def test_a_training_run_fits_the_estimate_into_every_artifact_it_writes(tmp_path, tiny_model_dir, monkeypatch, capsys):
    """train.fit_quality: a retrained model ships with an estimator fitted on its own run's out-of-fold frames,
    and one whose folds cannot carry a fit ships without one and says why."""
    import json
    import shutil
    from types import SimpleNamespace

    from model.artifact import load_metadata
    from model.quality import QualityEstimator
    from training import quality, train

    targets = [tmp_path / "run" / "model", tmp_path / "served"]
    for target in targets:
        shutil.copytree(tiny_model_dir, target)
    run = SimpleNamespace(out=tmp_path / "run", data=tmp_path / "data")
    frames = object()  # the run's frames, as training loaded them
    seen = []
    monkeypatch.setattr(quality, "collect", lambda *args: seen.append(args) or generated_rows())
    train.fit_quality(run, frames, targets)
    assert seen == [(run.out, frames, run.out / "model")], (
        "the run's own folds and frames, at its artifact's post-processing"
    )
    report_cut = json.loads((run.out / "quality" / "report.json").read_text())["cross_fitted"]["cut"]
    for target in targets:
        estimator = QualityEstimator.from_metadata(load_metadata(target))
        assert estimator is not None and estimator.cut == report_cut

    for target in targets:
        shutil.rmtree(target)
        shutil.copytree(tiny_model_dir, target)
    monkeypatch.setattr(quality, "collect", lambda *args: [r for r in generated_rows() if r["fold"] == 0])
    train.fit_quality(run, frames, targets)
    assert all("quality" not in load_metadata(target) for target in targets)
    assert "no quality estimate (out-of-fold frames of 1 fold(s)" in capsys.readouterr().err
