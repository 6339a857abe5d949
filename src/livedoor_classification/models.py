"""Loading a Hugging Face model for sequence classification, and its limits: input length, precision.

Encoders (BERT, RoBERTa, DeBERTa, ...) classify from their first token. Decoders (Llama, Qwen2, Mistral,
Gemma, GPT-NeoX, GPT-2: transformers' *ForSequenceClassification of a causal language model) classify from
the last token that is not padding, which they find by the padding id in their config: that id must be the
one the batches are padded with (padding).
"""

from livedoor_classification.cli import first_line

from contextlib import nullcontext
from pathlib import Path

import torch
import transformers
from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError
from huggingface_hub.utils import logging as hub_logging
from safetensors import SafetensorError
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer
from transformers.models.auto.modeling_auto import (
    MODEL_FOR_CAUSAL_LM_MAPPING,
    MODEL_FOR_MASKED_LM_MAPPING,
    MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING,
)

from livedoor_classification.hardware import autocast


def load_model(
    model_name: str, label2id: dict[str, int], multi_label: bool = False, dtype=torch.float32, quantization=None
):
    """Tokenizer and model, or a ValueError that says why not: name, network or a missing dependency.
    Multi-label: the config says problem_type "multi_label_classification", so that the saved model's
    pipeline() applies a sigmoid per label rather than a softmax over them. The weights load in `dtype`
    (fp32: the master weights of full fine-tuning; a frozen --lora base: bf16 or fp16, half the memory,
    never fp32 first), or quantized (quantization: a BitsAndBytesConfig, --lora_4bit)."""
    # The classifier head is new by design: transformers' report of its missing weights would be noise.
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()  # its loading bar would be escape sequences in a log file
    hub_logging.set_verbosity_error()  # an unreachable Hub: one line of ours, not its retries
    local = Path(model_name)
    if model_name.startswith(("/", "./", "../", "~")) and not local.exists():
        raise ValueError(f"{model_name}: no such directory (a hub id looks like org/name)")
    if local.exists() and not (local / "config.json").is_file():
        raise ValueError(f"{model_name}: not a loadable model directory (no config.json in it)")
    # a quantized model is placed on the GPU as it loads (bitsandbytes quantizes there), never moved after
    placement = (
        {"quantization_config": quantization, "device_map": {"": torch.cuda.current_device()}} if quantization else {}
    )
    try:
        check_is_a_sequence_classifier(AutoConfig.from_pretrained(model_name, trust_remote_code=False))
        tokenizer = AutoTokenizer.from_pretrained(model_name, trust_remote_code=False)
        model = AutoModelForSequenceClassification.from_pretrained(
            model_name,
            trust_remote_code=False,
            num_labels=len(label2id),
            label2id=label2id,
            id2label={i: name for name, i in label2id.items()},
            dtype=dtype,  # transformers 5 would otherwise keep the checkpoint's (often half) dtype
            ignore_mismatched_sizes=True,  # a head fine-tuned for other labels is replaced by a new one
            **({"problem_type": "multi_label_classification"} if multi_label else {}),
            **placement,
        )
    except SafetensorError as e:  # a download or copy cut short
        message = f"its weights (model.safetensors) are unreadable ({first_line(e)}): download or save them again"
        raise ValueError(f"{model_name}: {message}") from None
    except ImportError as e:
        raise ValueError(f"{model_name}: a dependency of its tokenizer or model is missing: {e}") from None
    except OSError as e:
        raise ValueError(f"{model_name}: {why_not_loaded(e, local.exists())}") from None
    except ValueError as e:
        if needs_custom_code(e):
            raise ValueError(f"{model_name}: {NO_CUSTOM_CODE}") from None
        raise ValueError(f"{model_name}: could not load its tokenizer or model: {first_line(e)}") from None
    set_padding(model_name, tokenizer, model.config)
    check_tokenizer_covers(model_name, tokenizer, model.config)
    return tokenizer, model


def is_decoder(config) -> bool:
    """A causal language model (GPT-2, Llama, Qwen2, ...), whose sequence classifier reads the last token that is
    not padding. Encoders with a causal head too (BERT, RoBERTa: BertLMHeadModel) were pre-trained masked."""
    # Causal language models that pool otherwise: XLNet (the last position, padded on the left), BART-like
    # encoder-decoders (the last eos).
    if getattr(config, "is_encoder_decoder", False) or config.model_type == "xlnet":
        return False
    return type(config) in MODEL_FOR_CAUSAL_LM_MAPPING and type(config) not in MODEL_FOR_MASKED_LM_MAPPING


def set_padding(model_name: str, tokenizer, config) -> None:
    """The padding token of the batches, and a decoder's config told it. Decoders often ship without one
    (GPT-2, Llama): the end-of-text token pads, as transformers' docs for these models recommend. A decoder's
    head pools the last position whose id is not config.pad_token_id, so that id is set to the tokenizer's,
    whatever the checkpoint's config said: with none, transformers refuses batches of more than one text;
    with another, the head would read a padding position of every padded text and predict from it.
    (Padded on the right, as every batch here is: the last real token is the one before the padding.)"""
    if tokenizer.pad_token_id is None:
        if not is_decoder(config) or tokenizer.eos_token is None:
            raise ValueError(f"{model_name}: the tokenizer has no padding token (and no end-of-text token to pad with)")
        tokenizer.pad_token = tokenizer.eos_token
    if is_decoder(config):
        config.pad_token_id = tokenizer.pad_token_id
        # the head reads the text model's config: a part of its own in multimodal configs (Gemma 3, Qwen3.5)
        config.get_text_config().pad_token_id = tokenizer.pad_token_id


def check_is_a_sequence_classifier(config) -> None:
    """Before the tokenizer: a vision or speech model's folder would fail there, with a cut-off message
    about tokenizer files that names neither the model's kind nor the remedy. (load_model prefixes the
    model's name, as to every ValueError of loading.)"""
    if type(config) not in MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING:
        raise ValueError(
            f"its model_type {config.model_type!r} has no AutoModelForSequenceClassification in transformers "
            "(not a text model): choose a text encoder such as BERT, RoBERTa or DeBERTa, or a decoder such as "
            "Llama or Qwen2"
        )


# A model whose config.json maps its classes to Python files of its own (auto_map) would make transformers
# stop mid-run to ask "Do you wish to run the custom code? [y/N]", and run that code on a "y". Every
# loading call passes trust_remote_code=False, so transformers refuses it instead, and nothing of it runs.
NO_CUSTOM_CODE = (
    "it needs Python code of its own to load (auto_map in its config.json), which this pipeline never runs;"
    " choose a model that transformers supports without custom code"
)


def needs_custom_code(error: ValueError) -> bool:
    """Whether transformers refused a model for its own code (its message asks for trust_remote_code=True)."""
    return "trust_remote_code" in str(error)


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


PROBE_LENGTH = 8  # tokens per input of run_probe


def usable_seq_len(requested: int, model, tokenizer) -> int:
    """--max_seq_len, capped by the positions the model numbers and by the tokenizer's model_max_length."""
    limits = [requested, position_limit(model)]
    if tokenizer.model_max_length < 1_000_000:  # the tokenizer's "no limit" is a huge sentinel
        limits.append(tokenizer.model_max_length)
    return min(limit for limit in limits if limit)


def position_limit(model) -> int | None:
    """How many tokens the model's table of absolute positions numbers, seen at work rather than looked up
    in a list of architectures: a forward pass of PROBE_LENGTH tokens shows the highest row that their
    position ids reach. BERT numbers positions from row 0; RoBERTa, XLM-R, MPNet, Longformer and LUKE
    number them after the padding index (fairseq's heritage), so that 512 of their 514 rows are usable.
    A model without such a table (relative positions: DeBERTa v3; rotary: ModernBERT) runs at any length:
    it is held to max_position_embeddings, the length it was pre-trained to."""
    seen = {}

    def record(table, inputs):  # a forward pre-hook: inputs[0] holds the position ids
        seen["rows"], seen["highest_row"] = table.num_embeddings, int(inputs[0].max())
        # The layers after the embeddings are not needed, and would cost a big model seconds on a CPU
        # (Longformer pads every input to its attention window, 512 tokens).
        raise PositionsSeen

    hooks = [
        module.register_forward_pre_hook(record)
        for name, module in model.named_modules()
        if name.endswith("position_embeddings") and isinstance(module, torch.nn.Embedding)
    ]
    try:
        if hooks:
            run_probe(model)
    except PositionsSeen:
        pass
    finally:
        for hook in hooks:
            hook.remove()
    if not seen:  # relative or rotary positions only
        return getattr(model.config, "max_position_embeddings", None)
    first_row = seen["highest_row"] - (PROBE_LENGTH - 1)
    return seen["rows"] - first_row


class PositionsSeen(Exception):
    """position_limit's probe has seen the position ids: the rest of the forward pass is skipped."""


def precision_that_runs(model_name: str, model, device, precision: str, reason: str, requested: str) -> tuple:
    """The precision and its reason as given if the model's forward pass runs under autocast in it. Some
    architectures do not: DeBERTa v1 fills masked attention scores with float32's minimum, which neither
    bf16 nor fp16 can hold ("value cannot be converted to type c10::BFloat16 without overflow"). Probed
    on two short inputs before anything is written, rather than listed by name. A precision that --precision
    auto chose falls back to fp32, which every model runs in; one that was asked for is a ValueError."""
    if precision == "fp32":
        return precision, reason
    try:
        run_probe(model, autocast(device, precision)())
    except RuntimeError as e:
        if requested == precision:
            message = f"this architecture cannot run in --precision {precision} ({first_line(e)})"
            raise ValueError(f"{model_name}: {message}; use --precision fp32") from None
        return "fp32", f"{reason}, but this model fails in {precision} ({first_line(e)}): fp32"
    return precision, reason


def run_probe(model, context=None) -> None:
    """A forward pass, without gradients or dropout, over two inputs of PROBE_LENGTH tokens, the second
    one half padding: a few milliseconds that run every part of the model our inputs reach."""
    pad = getattr(model.config, "pad_token_id", None)
    token = 0 if pad != 0 else 1  # a real token: padding gets no position
    ids = torch.full((2, PROBE_LENGTH), token, device=model.device)
    mask = torch.ones_like(ids)
    mask[1, PROBE_LENGTH // 2 :] = 0
    ids[1, PROBE_LENGTH // 2 :] = token if pad is None else pad
    training = model.training
    try:
        with torch.no_grad(), context or nullcontext():
            model.eval()(input_ids=ids, attention_mask=mask)
    finally:
        model.train(training)


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
