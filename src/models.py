"""Loading a Hugging Face encoder for sequence classification, and the limits it puts on its input."""

from pathlib import Path

import torch
from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError
from transformers import AutoModelForSequenceClassification, AutoTokenizer

# Models whose position ids start after the padding index (RoBERTa's fairseq heritage): of their
# max_position_embeddings (514), pad_token_id + 1 positions are unusable, leaving 512 tokens.
PADDING_OFFSET_MODELS = {"roberta", "xlm-roberta", "camembert", "luke", "data2vec-text", "xmod", "roberta-prelayernorm"}


def load_model(model_name: str, label2id: dict[str, int]):
    """Tokenizer and model, or a ValueError that says why not: name, network or a missing dependency."""
    local = Path(model_name)
    if local.exists() and not (local / "config.json").is_file():
        raise ValueError(f"{model_name}: not a loadable model directory (no config.json in it)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_name)
        model = AutoModelForSequenceClassification.from_pretrained(
            model_name,
            num_labels=len(label2id),
            label2id=label2id,
            id2label={i: name for name, i in label2id.items()},
            dtype=torch.float32,  # transformers 5 would otherwise keep the checkpoint's (often half) dtype
            ignore_mismatched_sizes=True,  # a head fine-tuned for other labels is replaced by a new one
        )
    except ImportError as e:
        raise ValueError(f"{model_name}: a dependency of its tokenizer or model is missing: {e}") from None
    except OSError as e:
        raise ValueError(f"{model_name}: {why_not_loaded(e, local.exists())}") from None
    except ValueError as e:
        raise ValueError(f"{model_name}: could not load its tokenizer or model: {first_line(e)}") from None
    if tokenizer.pad_token_id is None:
        raise ValueError(f"{model_name}: the tokenizer has no padding token")
    return tokenizer, model


def why_not_loaded(error: OSError, is_local: bool) -> str:
    """transformers wraps the Hub's errors in OSError; the cause says whether the name or the network failed."""
    if is_local:
        return f"not a loadable model directory: {first_line(error)}"
    if isinstance(error.__cause__, RepositoryNotFoundError):
        return "no such model on the Hugging Face Hub (check the name; a private model needs `hf auth login`)"
    if isinstance(error.__cause__, LocalEntryNotFoundError | HfHubHTTPError):
        return ("the Hugging Face Hub could not be reached and no copy is cached (check the network, or download "
                "the model once and set HF_HUB_OFFLINE=1, or pass a local directory)")  # fmt: skip
    return f"could not be loaded: {first_line(error)}"


def first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def usable_seq_len(requested: int, model_config, tokenizer) -> int:
    limits = [requested]
    if getattr(model_config, "max_position_embeddings", None):
        offset = model_config.pad_token_id + 1 if model_config.model_type in PADDING_OFFSET_MODELS else 0
        limits.append(model_config.max_position_embeddings - offset)
    if tokenizer.model_max_length < 1_000_000:  # the tokenizer's "no limit" is a huge sentinel
        limits.append(tokenizer.model_max_length)
    return min(limits)
