"""Architectures beyond the tiny BERT and RoBERTa: the length each one's positions allow, a precision it
cannot run in, a torch.compile that fails, and a model folder that is no text classifier."""

import json
import shutil
from types import SimpleNamespace

import pytest
import torch
import transformers
from transformers import AutoModel, AutoModelForSequenceClassification

import train
from conftest import run_dirs
from livedoor_classification.models import usable_seq_len

TINY = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}
# Each family in a tiny configuration: 64 position rows, or 66 where positions are numbered after the
# padding index (pad id 1) as RoBERTa numbers them, so that both kinds come out at 64 tokens when right.
FAMILIES = {
    "bert": lambda: transformers.BertConfig(**TINY, max_position_embeddings=64),
    "roberta": lambda: transformers.RobertaConfig(**TINY, max_position_embeddings=66, pad_token_id=1),
    "xlm-roberta": lambda: transformers.XLMRobertaConfig(**TINY, max_position_embeddings=66, pad_token_id=1),
    "camembert": lambda: transformers.CamembertConfig(**TINY, max_position_embeddings=66, pad_token_id=1),
    "data2vec-text": lambda: transformers.Data2VecTextConfig(**TINY, max_position_embeddings=66, pad_token_id=1),
    "mpnet": lambda: transformers.MPNetConfig(**TINY, max_position_embeddings=66, pad_token_id=1),
    "longformer": lambda: transformers.LongformerConfig(
        **TINY, max_position_embeddings=66, pad_token_id=1, attention_window=[8]
    ),
    "luke": lambda: transformers.LukeConfig(
        **TINY, max_position_embeddings=66, pad_token_id=1, entity_vocab_size=8, entity_emb_size=16
    ),
    "deberta": lambda: transformers.DebertaConfig(**TINY, max_position_embeddings=64),
    "deberta-v2": lambda: transformers.DebertaV2Config(**TINY, max_position_embeddings=64),
    "deberta-v3": lambda: transformers.DebertaV2Config(  # relative positions only, as microsoft/deberta-v3-*
        **TINY, max_position_embeddings=64, position_biased_input=False, relative_attention=True
    ),
    "electra": lambda: transformers.ElectraConfig(**TINY, embedding_size=16, max_position_embeddings=64),
    "albert": lambda: transformers.AlbertConfig(**TINY, embedding_size=16, max_position_embeddings=64),
    "distilbert": lambda: transformers.DistilBertConfig(
        dim=32, n_layers=1, n_heads=2, hidden_dim=64, max_position_embeddings=64
    ),
    "big_bird": lambda: transformers.BigBirdConfig(**TINY, max_position_embeddings=64, attention_type="original_full"),
    "modernbert": lambda: transformers.ModernBertConfig(**TINY, max_position_embeddings=64, pad_token_id=0),
}
# Families without a table of absolute positions (relative or rotary): any length runs, and the limit is
# the length the model was pre-trained to, max_position_embeddings.
NO_POSITION_TABLE = {"deberta-v3", "modernbert"}


def runs_at(model, length: int) -> bool:
    ids = torch.full((1, length), 5)
    try:
        with torch.no_grad():
            model(input_ids=ids, attention_mask=torch.ones_like(ids))
    except (IndexError, RuntimeError):  # a position beyond the table: an index error, or a size mismatch
        return False
    return True


@pytest.mark.parametrize("family", FAMILIES)
def test_the_position_limit_is_the_longest_input_the_model_runs(family):
    """The oracle is the model itself: the computed length runs through it, one token more does not.
    MPNet and Longformer number positions after the padding index, as RoBERTa does, and were given
    all of max_position_embeddings (514), which ended in an IndexError."""
    config = FAMILIES[family]()
    config.vocab_size = 100
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(config).eval()
    no_limit = SimpleNamespace(model_max_length=int(1e30))  # a tokenizer that sets none gets this sentinel
    limit = usable_seq_len(1024, model, no_limit)
    assert limit == 64
    assert runs_at(model, limit)
    if family in NO_POSITION_TABLE:
        assert runs_at(model, limit + 1)  # nothing would break: the pre-trained length is the limit
    else:
        assert not runs_at(model, limit + 1)
    assert usable_seq_len(32, model, no_limit) == 32
    assert usable_seq_len(1024, model, SimpleNamespace(model_max_length=40)) == 40


def test_a_run_is_held_to_the_positions_its_model_numbers(roberta_dir, dataset_dir, tmp_path, in_process):
    """MPNet with a tokenizer that sets no model_max_length, and --max_seq_len 1024: the run was given all
    of its 66 position rows (max_seq_len_used 66, as BERT's) and ended in an IndexError at a long text."""
    config = transformers.MPNetConfig(**TINY, vocab_size=700, max_position_embeddings=66, pad_token_id=1)
    model = save_tiny(config, roberta_dir, tmp_path / "tiny-mpnet")
    tokenizer_config = json.loads((model / "tokenizer_config.json").read_text())
    del tokenizer_config["model_max_length"]
    (model / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    argv = train_argv(model, dataset_dir, tmp_path / "out", "--max_seq_len", "1024", "--precision", "fp32")
    result = in_process(train, *argv)
    assert result.returncode == 0, result.stderr
    (run_dir,) = run_dirs(tmp_path / "out")
    assert json.loads((run_dir / "config.json").read_text())["max_seq_len_used"] == 64


def save_tiny(config, tokenizer_dir, out):
    """A tiny model of any architecture, with the tiny RoBERTa's tokenizer (byte-level BPE, pad id 1)."""
    torch.manual_seed(0)
    AutoModel.from_config(config).save_pretrained(out)
    for file in tokenizer_dir.iterdir():
        if file.name.startswith(("tokenizer", "special_tokens", "vocab", "merges")):
            shutil.copy(file, out)
    return out


@pytest.fixture(scope="module")
def deberta_dir(roberta_dir, tmp_path_factory):
    """DeBERTa v1, whose attention fills masked scores with float32's minimum, which overflows bf16 and fp16."""
    config = transformers.DebertaConfig(
        **TINY, vocab_size=700, max_position_embeddings=128, pad_token_id=1, relative_attention=True
    )
    return save_tiny(config, roberta_dir, tmp_path_factory.mktemp("tiny-deberta"))


SMALL_RUN = ["--epochs", "1", "--max_seq_len", "32", "--max_train_samples", "16", "--max_eval_samples", "9"]


def train_argv(model_dir, dataset_dir, output_root, *extra):
    return ["--model_name", model_dir, "--dataset_dir", dataset_dir, "--output_root", output_root, *SMALL_RUN, *extra]


def assert_one_line_error(result, *words):
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("train.py: error:")
    for word in words:
        assert word in last
    assert "Traceback" not in result.stderr


def test_a_precision_the_architecture_cannot_run_in_is_one_line(deberta_dir, dataset_dir, tmp_path, in_process):
    """--precision bf16 on DeBERTa v1 crashed in its attention after the run folder was made."""
    result = in_process(train, *train_argv(deberta_dir, dataset_dir, tmp_path / "out", "--precision", "bf16"))
    assert_one_line_error(result, str(deberta_dir), "--precision bf16", "--precision fp32")
    assert not (tmp_path / "out").exists()


def test_auto_precision_falls_back_to_one_the_architecture_runs_in(
    deberta_dir, dataset_dir, tmp_path, in_process, monkeypatch
):
    """--precision auto picks bf16 on GPUs and on CPUs that multiply bf16 natively: here made to."""
    auto_bf16 = ("bf16", "this CPU multiplies bf16 2.0x faster")
    monkeypatch.setattr(train, "resolve_precision", lambda *args, **kwargs: auto_bf16)
    result = in_process(train, *train_argv(deberta_dir, dataset_dir, tmp_path))
    assert result.returncode == 0, result.stderr
    (run_dir,) = run_dirs(tmp_path)
    config = json.loads((run_dir / "config.json").read_text())
    assert config["precision_used"] == "fp32"
    assert "2.0x faster" in config["precision_reason"] and "bf16" in config["precision_reason"]
    assert config["precision_reason"] in result.stdout  # the log's device line says it too
    assert (run_dir / "test-metrics.json").is_file()


def test_a_torch_compile_that_fails_is_one_line_and_leaves_no_run_folder(
    bert_dir, dataset_dir, tmp_path, in_process, monkeypatch
):
    """torch.compile fails lazily, at the first batch (Longformer: inductor's "Invalid NaN comparison"
    after minutes): here a backend that fails at once stands in for inductor."""

    def failing_backend(graph, example_inputs):
        raise RuntimeError("Invalid NaN comparison")

    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda model, **kwargs: real_compile(model, backend=failing_backend))
    result = in_process(train, *train_argv(bert_dir, dataset_dir, tmp_path, "--compile", "--precision", "fp32"))
    assert_one_line_error(result, str(bert_dir), "Invalid NaN comparison", "without --compile")
    assert run_dirs(tmp_path) == []


def test_a_model_folder_that_is_no_text_classifier_is_one_line(dataset_dir, tmp_path, in_process):
    """A vision model's folder: its config says so before any tokenizer is looked for."""
    model = tmp_path / "vit"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "vit"}')
    result = in_process(train, *train_argv(model, dataset_dir, tmp_path / "out"))
    assert_one_line_error(result, str(model), "vit", "AutoModelForSequenceClassification")
    assert not (tmp_path / "out").exists()
