"""What a training run prints while it runs: lines from rank 0 alone (torchrun's other processes stay silent),
progress bars only on a terminal, and the scores a line shows."""

from tqdm import tqdm

from livedoor_classification import distributed

# Without a progress bar (output to a file: a sweep's log, nohup), a line this often during an epoch, so
# that a long epoch shows it is moving. Each one syncs the GPU for its loss.
PROGRESS_SECONDS = 30


def say(message: str) -> None:
    """A line of rank 0's, printed through tqdm so that it does not break a progress bar."""
    if distributed.is_main():
        tqdm.write(message)


def progress_bars_off() -> bool | None:
    """None lets tqdm decide: bars on a terminal, none when the output goes to a file (a sweep log,
    nohup, CI), where they would be escape sequences and blank lines. Only rank 0 shows them."""
    return None if distributed.is_main() else True


def headline(metrics: dict, split: str, accuracy: str = "accuracy") -> str:
    """The scores a progress line shows: accuracy and macro-F1; multi-label, exact match, micro- and macro-F1."""
    if "subset_accuracy" in metrics:
        exact, micro = metrics["subset_accuracy"], metrics["micro_f1"]
        return f"{split} exact match {exact:.4f}, {split} micro-F1 {micro:.4f}, {split} F1 {metrics['f1']:.4f}"
    return f"{split} {accuracy} {metrics['accuracy']:.4f}, {split} F1 {metrics['f1']:.4f}"
