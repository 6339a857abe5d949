"""A training run's config.json: its arguments and what was resolved from them, the dataset, the model and
the machine (config_record); and before anything is loaded, the run that --skip_if_done and --resume look
for among those on disk (planned_run)."""

import os
import platform

import tokenizers
import torch
import transformers

from livedoor_classification import distributed
from livedoor_classification.dataset_files import PreparedDataset
from livedoor_classification.evaluation import first_windows
from livedoor_classification.lora import parameter_counts
from livedoor_classification.runs import provenance, recorded_args


def planned_run(args, dataset: PreparedDataset) -> dict:
    """What --skip_if_done compares with complete runs (runs.find_complete_run), and --resume with interrupted
    ones: these arguments on this very dataset (a re-prepared dataset has another fingerprint, so its runs are
    not "done"), with as many processes as torchrun is starting now."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))  # the process group does not exist yet
    return recorded_args(args) | {"dataset_fingerprint": dataset.fingerprint, "world_size": world_size}


def config_record(args, run, dataset: PreparedDataset) -> dict:
    """config.json of a new run: its arguments (args), what it resolved (run: train.py's Run, which holds its
    model and loaders) and its dataset; but for what is known only later: the schedule's steps and the subsets
    asked for (train.py adds them), the temperature, the peak memory and resumed_at (runs.note_at_end,
    runs.note_resumed)."""
    device, loaders = run.device, run.loaders
    trainable, total = parameter_counts(run.model)
    return {
        **recorded_args(args),
        "device_used": str(device),
        "device_name": device_name(device),
        "host": platform.node(),  # with CUDA_VISIBLE_DEVICES: which GPUs of which machine a sweep gave the run
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "precision_used": run.precision,
        "precision_reason": run.precision_reason,
        "world_size": distributed.world_size(),
        "global_batch_size": args.batch_size * args.grad_accum * distributed.world_size(),
        "num_parameters": total,
        "trainable_parameters": trainable,  # all but with --lora
        "attn_implementation": run.model.config._attn_implementation,
        "label2id": dataset.label2id,
        "dataset_fingerprint": dataset.fingerprint,  # hashed once a run (planned_run may have)
        "max_seq_len_used": run.max_seq_len,
        "num_examples": {split: len(first_windows(loader.dataset)) for split, loader in loaders.items()},
        "num_windows": {split: len(loader.dataset) for split, loader in loaders.items()},  # examples the model sees
        **provenance(
            torch=torch.__version__,
            cuda=torch.version.cuda,
            transformers=transformers.__version__,
            tokenizers=tokenizers.__version__,
        ),
        "multi_label": run.multi_label,
        "class_weight_values": run.class_weights,
    }


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else platform.machine()
