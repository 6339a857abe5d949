"""train.py --save_model: the best epoch's model as a folder of its own, <run>/model/, that both Hugging Face
and predict.py load.

    <run>/model/   model.safetensors, config.json (with id2label), the tokenizer's files: a plain Hugging Face
                   model folder (AutoModelForSequenceClassification, pipeline());
                   predict.json: how the run prepared its texts, so that predict.py, given the folder alone,
                   does the same
    with --lora:   adapter_model.safetensors and adapter_config.json instead of the model's weights and config:
                   peft's adapter (and the trained head), which PeftModel.from_pretrained puts on the base model
                   that adapter_config.json names; with --merge_lora, the adapters merged into the weights: a
                   plain model folder as above
"""

import shutil
from dataclasses import asdict
from pathlib import Path

from transformers import AutoTokenizer

from livedoor_classification.files import as_a_new_file, remove_stale_staging, staging_folder, write_json
from livedoor_classification.lora import frozen_dtype
from livedoor_classification.models import set_padding


def save_model(path: Path, model, args, run, dataset, temperature: float) -> None:
    """The best epoch's weights (--lora: the adapter, or with --merge_lora the model merged, which changes `model`
    in place: call it last), config and tokenizer, and predict.json from train.py's arguments (args), what the
    run resolved (run: train.py's Run) and the dataset (its labels and normalization). Written under a temporary
    name and renamed when whole: a folder named model/ is a whole model."""
    remove_stale_staging(path.parents[3], f"*/*/*/.{path.name}.")  # those of killed runs, in any run folder
    for left in path.parents[3].glob(f"*/*/*/.{path.name}.tmp"):  # killed runs' of versions before staging_folder
        shutil.rmtree(left, ignore_errors=True)
    staging = staging_folder(path.parent, f".{path.name}.")
    try:
        if args.lora and args.merge_lora:
            model = model.merge_and_unload()  # W + B A x alpha / r, and the trained head: a plain transformers model
        model.save_pretrained(staging)  # a PeftModel saves its adapter and head alone
        tokenizer = AutoTokenizer.from_pretrained(args.model_name, trust_remote_code=False)  # as loaded,
        set_padding(args.model_name, tokenizer, model.config)  # with the padding token the run padded with
        tokenizer.save_pretrained(staging)
        write_json(
            staging / "predict.json",
            {
                "text_fields": args.text_fields,
                "max_seq_len": run.max_seq_len,
                "normalize": dataset.normalize,  # as prepare.py did: NFKC, stripped
                "batch_size": args.eval_batch_size,
                "precision": run.precision,
                "truncation": asdict(run.truncation),
                "threshold": args.threshold,  # multi-label: predicted at or above; None: the most probable
                "temperature": temperature,  # the probabilities are softmax (sigmoid) of logits / temperature
                "labels": dataset.names,  # in label id order (an adapter has no config.json with id2label)
                "multi_label": dataset.multi_label,
                # what predict.py loads an adapter's base model in: as the run did (a 4-bit run's, in bf16)
                "base_dtype": str(frozen_dtype(run.precision, args.lora)).removeprefix("torch."),
            },
        )
        for file in [staging, *staging.iterdir()]:  # safetensors writes 0600
            as_a_new_file(file)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # no half-written model beside the run's files
        raise
    staging.rename(path)
