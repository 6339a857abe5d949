"""Evaluate a model, untrained, on the validation split exactly as train.py does, and write the
metrics to a JSON file. Run plainly or under torchrun, on the CPU or (with `--device cuda`) on a GPU:
the two must agree (see test_distributed.py and test_gpu.py). Options after the output file are
train.py's, e.g. `--windows 3`."""

import json
import sys
from contextlib import nullcontext
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))  # a script of its own: find train.py's modules

import train  # noqa: E402
from livedoor_classification import (
    distributed,  # noqa: E402
    evaluation,  # noqa: E402
)


def main(model_dir: str, dataset_dir: str, output: str, *options: str) -> None:
    args = train.Args.from_args(
        [
            "--model_name",
            model_dir,
            "--dataset_dir",
            dataset_dir,
            "--eval_batch_size",
            "4",
            "--max_seq_len",
            "64",
            "--precision",
            "fp32",
            *options,
        ]
    )
    dataset = train.resolve_dataset(args)
    run = train.setup(args, dataset)
    logits = evaluation.predict(run.model, run.loaders["val"], nullcontext, run.device, len(dataset.names))
    metrics, probabilities = evaluation.split_metrics(logits, run.loaders["val"].dataset, dataset.names, None)
    if distributed.is_main():  # the probabilities in dataset order: every example once, wherever it was evaluated
        extra = {
            "world_size": distributed.world_size(),
            "probabilities": probabilities.tolist(),
            "num_windows": len(run.loaders["val"].dataset),
        }
        Path(output).write_text(json.dumps(metrics | extra))
    distributed.finish()


if __name__ == "__main__":
    main(*sys.argv[1:])
