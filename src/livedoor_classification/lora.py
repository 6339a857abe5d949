"""train.py --lora: low-rank adapters (LoRA, Hu et al. 2021) from the peft library, and --lora_4bit (QLoRA,
Dettmers et al. 2023): the pretrained weights stay frozen (in bf16 or fp16, or in 4 bits), and training
changes only small matrices beside some of their layers and the new classification head, trained whole.

peft, not adapters of our own: it knows which layers of each architecture to adapt, saves adapters that
`PeftModel.from_pretrained` loads, and merges them into a plain model that pipeline() loads on its own.
"""

from livedoor_classification.cli import first_line

import json
import warnings
from contextlib import contextmanager
from pathlib import Path

import torch


def add_adapters(model, model_name: str, r: int, alpha: float, dropout: float, target_modules: list[str] | None):
    """The model with LoRA adapters of rank r on target_modules (None: peft's choice for the architecture,
    usually the attention's query and value projections) and its head (head_modules) trained in full; every
    other weight frozen. The trainable weights in fp32, whatever the frozen ones are in: AdamW's small updates
    would be lost to bf16's rounding."""
    from peft import LoraConfig, TaskType, get_peft_model

    config = LoraConfig(
        task_type=TaskType.SEQ_CLS,
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=target_modules,
        modules_to_save=head_modules(model),
    )
    try:
        with peft_quietly():
            model = get_peft_model(model, config)
    except ValueError as e:  # an architecture that peft has no default layers for, or a name that matches none
        remedy = "name the layers to adapt with --lora_target_modules (e.g. all-linear)"
        raise ValueError(f"{model_name}: --lora: {first_line(e)}; {remedy}") from None
    # peft adds the usual head names ("classifier", "score") to ours: each once in the saved adapter_config.json
    config.modules_to_save = list(dict.fromkeys(config.modules_to_save))
    for parameter in model.parameters():
        if parameter.requires_grad:
            parameter.data = parameter.data.float()
    return model


def head_modules(model) -> list[str]:
    """The modules outside the pretrained backbone (model.base_model_prefix: "bert", "model", "transformer"):
    the classification head, new at fine-tuning, so trained whole rather than adapted. Found by the model's
    layout, not by a list of names: DeBERTa's head is a pooler and a classifier, Llama's a "score" layer."""
    backbone = getattr(model, model.base_model_prefix, None)
    return [
        name
        for name, child in model.named_children()
        if child is not backbone and any(True for _ in child.parameters())
    ]


@contextmanager
def peft_quietly():
    """Without peft's warnings that tell a user nothing: GPT-2's Conv1D layers (peft sets fan_in_fan_out itself,
    and says so), and a deprecation inside transformers that peft's calls trigger."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="fan_in_fan_out is set to False")
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated")
        yield


def parameter_counts(model) -> tuple[int, int]:
    """Trainable and total parameters. A 4-bit weight (bitsandbytes' Params4bit) packs two values in each byte
    it stores: counted as transformers' num_parameters() and peft count it, two per element."""

    def count(p) -> int:
        return p.numel() * 2 if type(p).__name__ == "Params4bit" else p.numel()

    return sum(count(p) for p in model.parameters() if p.requires_grad), sum(count(p) for p in model.parameters())


def frozen_dtype(precision: str, lora: bool) -> torch.dtype:
    """The dtype the pretrained weights load in: fp32 for full fine-tuning, whose weights AdamW updates (autocast
    computes in bf16 or fp16 from them); with --lora, the run's half precision, since nothing updates them."""
    half = {"bf16": torch.bfloat16, "fp16": torch.float16}
    return half.get(precision, torch.float32) if lora else torch.float32


def quantization(precision: str, device: torch.device, model_name: str, num_labels: int):
    """--lora_4bit: the frozen weights in 4-bit NormalFloat with double quantization (QLoRA's recipe), computed in
    the run's half precision; CUDA only (bitsandbytes). The head stays unquantized, to be trained whole: left to
    itself, transformers keeps only the module of the model's last parameter, which misses a head with a bias
    (BERT's classifier) or of two layers (RoBERTa's)."""
    if device.type != "cuda":
        raise ValueError(f"--lora_4bit needs a CUDA GPU (bitsandbytes' 4-bit kernels); this run is on {device.type}")
    try:
        import bitsandbytes  # noqa: F401  (optional: only QLoRA needs it)
    except ImportError:
        raise ValueError("--lora_4bit needs bitsandbytes: pip install bitsandbytes") from None
    from transformers import AutoConfig, AutoModelForSequenceClassification, BitsAndBytesConfig

    config = AutoConfig.from_pretrained(model_name, num_labels=num_labels, trust_remote_code=False)
    with torch.device("meta"):  # the layout alone, no memory: which modules are the head
        head = head_modules(AutoModelForSequenceClassification.from_config(config))
    return BitsAndBytesConfig(
        load_in_4bit=True,
        llm_int8_skip_modules=head,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.float16 if precision == "fp16" else torch.bfloat16,
    )


def prepare_quantized(model, gradient_checkpointing: bool):
    """peft's preparation of a 4-bit model for training: norms and embeddings in fp32, gradient checkpointing
    set up as quantized layers need it."""
    from peft import prepare_model_for_kbit_training

    kwargs = {"use_reentrant": False}
    return prepare_model_for_kbit_training(model, gradient_checkpointing, gradient_checkpointing_kwargs=kwargs)


def is_adapter(folder: Path) -> bool:
    """A folder saved by train.py --lora --save_model without --merge_lora: peft's adapter, not a whole model."""
    return (folder / "adapter_config.json").is_file()


def base_model_name(folder: Path) -> str:
    """The model an adapter was trained on, as peft recorded it (a hub id, or the local folder it was loaded from)."""
    try:
        return json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))["base_model_name_or_path"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{folder / 'adapter_config.json'}: unreadable ({first_line(e)})") from None


def load_adapter(base, folder: Path):
    """The adapter of `folder` on its base model (loaded with the run's labels), as PeftModel.from_pretrained
    loads it, for inference."""
    from peft import PeftModel

    with peft_quietly():
        return PeftModel.from_pretrained(base, str(folder), is_trainable=False)
