"""One fit's bookkeeping across an interruption: what a resumed fit reports is the whole fit, not the part
after the resumption."""

import json

import keras
import pytest

from tests.training.test_swa import ARGS
from tests.training.test_train_smoke import phantom_data  # noqa: F401  (module fixture)
from training import train
from training.fit import logged_history

LOG_HEADER = "epoch,kaggle_dice,loss,val_kaggle_dice,val_loss\n"


def test_the_history_is_every_logged_epoch_without_empty_columns(tmp_path):
    log = tmp_path / "log.csv"
    log.write_text(LOG_HEADER + "0,0.3,1.2,NA,NA\n1,0.6,0.9,NA,NA\n" + "2,0.7,0.7,NA,NA\n")  # a resumption appended
    assert logged_history(log) == {"kaggle_dice": [0.3, 0.6, 0.7], "loss": [1.2, 0.9, 0.7]}


def test_a_fit_started_again_from_its_first_epoch_counts_from_there(tmp_path):
    log = tmp_path / "log.csv"
    log.write_text(LOG_HEADER + "0,0.3,1.2,0.2,1.3\n1,0.6,0.9,0.5,1.0\n0,0.4,1.1,0.3,1.2\n")
    assert logged_history(log) == {"kaggle_dice": [0.4], "loss": [1.1], "val_kaggle_dice": [0.3], "val_loss": [1.2]}


class _StopAfterSecondEpoch(keras.callbacks.CSVLogger):
    """CSVLogger, then the process 'stops' once the second epoch is logged (its backup is written before)."""

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        if epoch == 1:
            raise KeyboardInterrupt


def test_a_fold_resumed_after_an_interruption_reports_all_its_epochs(phantom_data, tmp_path, monkeypatch):  # noqa: F811
    args = ["--data", str(phantom_data), "--out", str(tmp_path), *ARGS, "--epochs", "3", "--only-fold", "0"]
    with monkeypatch.context() as patch:
        patch.setattr(keras.callbacks, "CSVLogger", _StopAfterSecondEpoch)
        with pytest.raises(KeyboardInterrupt):
            train.main(args)
    assert (tmp_path / "fold0" / "backup").is_dir(), "the interruption left no checkpoint to resume from"
    assert train.main(args) == 0
    fold = json.loads((tmp_path / "fold0" / "fold.json").read_text())
    assert fold["epochs_run"] == 3 and fold["best_epoch"] == 3
    assert len((tmp_path / "fold0" / "log.csv").read_text().strip().splitlines()) == 1 + 3
