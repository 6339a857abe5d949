"""Where the repository keeps things, found from this file: the scripts work from any directory."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def dataset_folder(dataset: str, dataset_dir: str | Path | None = None) -> Path:
    """Where a prepared dataset is: --dataset_dir if given, else datasets/<--dataset>; absolute. Every stage names
    the dataset by this folder's name, and its runs go to <output_root>/<that name>/."""
    return Path(dataset_dir if dataset_dir is not None else ROOT / "datasets" / dataset).resolve()
