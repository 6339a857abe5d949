"""train.py --save_model: the best epoch's model as a folder of its own, <run>/model/, that both Hugging Face
and predict.py load.

    <run>/model/   model.safetensors, config.json (with id2label), the tokenizer's files: a plain Hugging Face
                   model folder (AutoModelForSequenceClassification, pipeline());
                   predict.json: how the run prepared its texts, so that predict.py, given the folder alone,
                   does the same
"""

import shutil
from dataclasses import asdict
from pathlib import Path

from transformers import AutoTokenizer

from livedoor_classification.files import as_a_new_file, remove_stale_staging, staging_folder, write_json


def save_model(path: Path, model, args, run, normalize: bool, temperature: float) -> None:
    """The best epoch's weights, config and tokenizer, and predict.json from train.py's arguments (args), what
    the run resolved (run: train.py's Run) and the dataset's normalization. Written under a temporary name and
    renamed when whole: a folder named model/ is a whole model."""
    remove_stale_staging(path.parents[3], f"*/*/*/.{path.name}.")  # those of killed runs, in any run folder
    for left in path.parents[3].glob(f"*/*/*/.{path.name}.tmp"):  # killed runs' of versions before staging_folder
        shutil.rmtree(left, ignore_errors=True)
    staging = staging_folder(path.parent, f".{path.name}.")
    try:
        model.save_pretrained(staging)
        AutoTokenizer.from_pretrained(args.model_name, trust_remote_code=False).save_pretrained(staging)  # as loaded
        write_json(
            staging / "predict.json",
            {
                "text_fields": args.text_fields,
                "max_seq_len": run.max_seq_len,
                "normalize": normalize,  # as prepare.py did: NFKC, stripped
                "batch_size": args.eval_batch_size,
                "precision": run.precision,
                "truncation": asdict(run.truncation),
                "threshold": args.threshold,  # multi-label: predicted at or above; None: the most probable
                "temperature": temperature,  # the probabilities are softmax (sigmoid) of logits / temperature
            },
        )
        for file in [staging, *staging.iterdir()]:  # safetensors writes 0600
            as_a_new_file(file)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # no half-written model beside the run's files
        raise
    staging.rename(path)
