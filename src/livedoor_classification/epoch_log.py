"""A training run's record of its epochs, a row each: <run>/log.csv, appended as training goes, and with
--tensorboard the same numbers as curves in <run>/tensorboard/ (loss, val F1, learning rate). Rank 0 writes
them; on torchrun's other processes the log is given no folder and writes nothing."""

import shutil
from pathlib import Path

from torch.utils.tensorboard import SummaryWriter

from livedoor_classification.files import append_csv_row, write_csv

# TensorBoard's tag for each log.csv column drawn: a point per epoch (a point per step would sync the GPU every step)
CURVES = {"loss/train": "train_loss", "loss/val": "val_loss", "f1/val": "val_f1", "lr/max": "max_lr"}


class EpochLog:
    def __init__(self, run_dir: Path | None, rows: list[dict], tensorboard: bool):
        """rows: those of a resumed run's finished epochs, which log.csv is rewritten with (without a row of an
        epoch the killed run did not finish); [] for a new run."""
        self.run_dir, self.rows, self.board = run_dir, rows, None
        if run_dir is None:
            return
        if tensorboard:
            # One event file, rewritten from the log's rows: a resumed run's curves are then exactly log.csv's.
            # (Two files, the killed run's and this one's, are read in name order, which is only the order
            # they were written in when their creation times differ by a second or more.)
            shutil.rmtree(run_dir / "tensorboard", ignore_errors=True)
            self.board = SummaryWriter(run_dir / "tensorboard")
            for row in rows:
                self.draw(row)
        if rows:
            write_csv(run_dir / "log.csv", rows)

    def add(self, row: dict) -> None:
        """An epoch's row, on disk at once: a run killed later keeps it."""
        if self.run_dir is None:
            return
        if self.rows and list(self.rows[0]) != list(row):  # resumed from a version that logged other columns
            self.rows = [dict.fromkeys(row) | {k: v for k, v in old.items() if k in row} for old in self.rows]
            write_csv(self.run_dir / "log.csv", [*self.rows, row])  # one header for all, old rows' new cells empty
        else:
            append_csv_row(self.run_dir / "log.csv", row)
        self.rows.append(row)
        if self.board is not None:
            self.draw(row)

    def draw(self, row: dict) -> None:
        for tag, column in CURVES.items():
            self.board.add_scalar(tag, row[column], row["epoch"])
        self.board.flush()

    def close(self) -> None:
        if self.board is not None:
            self.board.close()
