"""Loading a Hugging Face encoder for sequence classification, and the limits it puts on its input."""

from cli import first_line

from pathlib import Path

import torch
import transformers
from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError
from huggingface_hub.utils import logging as hub_logging
from safetensors import SafetensorError
from transformers import AutoModelForSequenceClassification, AutoTokenizer

# Models whose position ids start after the padding index (RoBERTa's fairseq heritage): of their
# max_position_embeddings (514), pad_token_id + 1 positions are unusable, leaving 512 tokens.
PADDING_OFFSET_MODELS = {"roberta", "xlm-roberta", "camembert", "luke", "data2vec-text", "xmod", "roberta-prelayernorm"}


def load_model(model_name: str, label2id: dict[str, int], multi_label: bool = False):
    """Tokenizer and model, or a ValueError that says why not: name, network or a missing dependency.
    Multi-label: the config says problem_type "multi_label_classification", so that the saved model's
    pipeline() applies a sigmoid per label rather than a softmax over them."""
    # The classifier head is new by design: transformers' report of its missing weights would be noise.
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()  # its loading bar would be escape sequences in a log file
    hub_logging.set_verbosity_error()  # an unreachable Hub: one line of ours, not its retries
    local = Path(model_name)
    if model_name.startswith(("/", "./", "../", "~")) and not local.exists():
        raise ValueError(f"{model_name}: no such directory (a hub id looks like org/name)")
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
            **({"problem_type": "multi_label_classification"} if multi_label else {}),
        )
    except SafetensorError as e:  # a download or copy cut short
        message = f"its weights (model.safetensors) are unreadable ({first_line(e)}): download or save them again"
        raise ValueError(f"{model_name}: {message}") from None
    except ImportError as e:
        raise ValueError(f"{model_name}: a dependency of its tokenizer or model is missing: {e}") from None
    except OSError as e:
        raise ValueError(f"{model_name}: {why_not_loaded(e, local.exists())}") from None
    except ValueError as e:
        raise ValueError(f"{model_name}: could not load its tokenizer or model: {first_line(e)}") from None
    if tokenizer.pad_token_id is None:
        raise ValueError(f"{model_name}: the tokenizer has no padding token")
    check_tokenizer_covers(model_name, tokenizer, model.config)
    return tokenizer, model


def check_tokenizer_covers(model_name: str, tokenizer, model_config) -> None:
    """A model folder without tokenizer files still loads: transformers builds an empty tokenizer (a
    handful of special tokens), every text becomes [CLS] [UNK] [SEP], and the run trains at chance.
    Embedding tables are often padded beyond the vocabulary (to a multiple of 64, say), never to twice it."""
    vocab_size = getattr(model_config, "vocab_size", None)
    if vocab_size and len(tokenizer) < vocab_size // 2:
        raise ValueError(
            f"{model_name}: its tokenizer has {len(tokenizer)} tokens for an embedding table of {vocab_size}: "
            "the tokenizer files are missing (save them beside the model with tokenizer.save_pretrained)"
        )


def why_not_loaded(error: OSError, is_local: bool) -> str:
    """transformers wraps the Hub's errors in OSError; the cause says whether the name or the network failed."""
    if is_local:
        return f"not a loadable model directory: {first_line(error)}"
    if isinstance(error.__cause__, RepositoryNotFoundError):
        return "no such model on the Hugging Face Hub (check the name; a private model needs `hf auth login`)"
    if isinstance(error.__cause__, LocalEntryNotFoundError | HfHubHTTPError):
        return (
            "the Hugging Face Hub could not be reached and no copy is cached (check the network, or download "
            "the model once and set HF_HUB_OFFLINE=1, or pass a local directory)"
        )
    return f"could not be loaded: {first_line(error)}"


def usable_seq_len(requested: int, model_config, tokenizer) -> int:
    limits = [requested]
    if getattr(model_config, "max_position_embeddings", None):
        offset = model_config.pad_token_id + 1 if model_config.model_type in PADDING_OFFSET_MODELS else 0
        limits.append(model_config.max_position_embeddings - offset)
    if tokenizer.model_max_length < 1_000_000:  # the tokenizer's "no limit" is a huge sentinel
        limits.append(tokenizer.model_max_length)
    return min(limits)


# Architectures with parameters that our inputs (input_ids, attention_mask, token_type_ids) never reach,
# found by a text-only forward and backward pass of transformers 5's sequence classifiers (tiny configs):
# luke (mLUKE too): the entity embeddings and the entity-aware attention's w2e/e2w/e2e queries;
# big_bird: the pooler (its classification head reads the first token's hidden state instead);
# canine: the character-level projection and final encoder, which only token-level heads use;
# markuplm: the XPath embeddings' second projection; esm: the unused contact-prediction head.
UNUSED_PARAMETER_MODELS = {"luke", "big_bird", "canine", "markuplm", "esm"}


def needs_unused_parameter_search(model) -> bool:
    """Whether DDP must search for parameters that got no gradient (find_unused_parameters=True): without
    it, such a model stops at its second step; with it, every step pays a walk over the autograd graph,
    which models whose every parameter is used are spared."""
    return model.config.model_type in UNUSED_PARAMETER_MODELS
