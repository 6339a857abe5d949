"""Decoder language models as classifiers, and LoRA (issue 30), on tiny random Llama-, Qwen2- and GPT-2-shaped
models with the suite's decoder tokenizers (test_tokenization.py checks their ids against each tokenizer's own).

The oracles: a padded batch against each text alone (the head must pool the last real token); peft's own
count of trainable parameters; the weights of the model as loaded (LoRA must leave them bitwise alone);
the adapter reloaded by peft and the merged model loaded by transformers' pipeline() against the run's own
prediction files; an uninterrupted run against one killed and resumed."""

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
from transformers import (
    AutoModelForSequenceClassification,
    GPT2Config,
    GPT2LMHeadModel,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    pipeline,
)

import conftest
import train
from conftest import ROOT, run_dirs, run_script, train_argv
from livedoor_classification.dataset_files import PreparedDataset, read_jsonl
from livedoor_classification.inputs import Collator, tokenize
from livedoor_classification.models import is_decoder, load_model, set_padding
from livedoor_classification.training import build_training
from test_resume import comparable_log, kill_after_first_epoch
from test_tokenization import DECODER_FAMILIES, sample_texts, wrap

# Tiny: 2 layers of 32, 4 attention heads sharing 2 key-value heads (grouped-query attention, as Llama 3 and Qwen2)
SIZES = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4}
SIZES |= {"max_position_embeddings": 256}
SHAPES = {  # tokenizer family (test_tokenization.py), config, the causal LM class a checkpoint is saved from
    "llama": (
        "llama3-bpe",
        lambda vocab: LlamaConfig(vocab_size=vocab, num_key_value_heads=2, **SIZES),
        LlamaForCausalLM,
    ),
    "qwen2": (
        "qwen2-bpe",
        lambda vocab: Qwen2Config(vocab_size=vocab, num_key_value_heads=2, **SIZES),
        Qwen2ForCausalLM,
    ),
    "gpt2": (
        "gpt2-bpe",
        lambda vocab: GPT2Config(vocab_size=vocab, n_embd=32, n_layer=2, n_head=2, n_positions=256),
        GPT2LMHeadModel,
    ),
    # GPT-NeoX (rinna's japanese-gpt-neox-3.6b), for the README's commands (test_readme_examples.py)
    "gpt_neox": ("llama3-bpe", lambda vocab: GPTNeoXConfig(vocab_size=vocab, **SIZES), GPTNeoXForCausalLM),
}
DECODERS = ["llama", "qwen2", "gpt2"]  # the three; every test runs on each
FAST = ["--max_seq_len", "64", "--batch_size", "8", "--precision", "fp32"]


def save_decoder(kind: str, corpus_dir: Path, out: Path, **config_changes) -> Path:
    """A tiny random causal LM saved as on the Hub (no classification head, no padding token in its config)."""
    family, make_config, model_class = SHAPES[kind]
    backend, names = DECODER_FAMILIES[family](sample_texts(corpus_dir))
    tokenizer = wrap(backend, names, out)
    config = make_config(len(tokenizer))
    config.bos_token_id, config.eos_token_id = tokenizer.bos_token_id, tokenizer.eos_token_id
    for key, value in config_changes.items():
        setattr(config, key, value)
    torch.manual_seed(0)
    model_class(config).save_pretrained(out)
    return out


@pytest.fixture(scope="module", params=DECODERS)
def decoder_dir(request, corpus_dir, tmp_path_factory) -> Path:
    return save_decoder(request.param, corpus_dir, tmp_path_factory.mktemp(request.param))


@pytest.fixture(scope="module")
def llama_dir(corpus_dir, tmp_path_factory) -> Path:
    return save_decoder("llama", corpus_dir, tmp_path_factory.mktemp("llama"))


def read_json(path: Path):
    return json.loads(path.read_text())


def pair_batch(tokenizer, model, dataset_dir: Path, n: int = 6):
    """n validation records of different lengths, tokenized as train.py does, and their collated batch."""
    records = read_jsonl(dataset_dir / "val.jsonl")[:n]
    records[0] = records[0] | {"body": records[0]["body"][:5]}  # a short one: much of its row is padding
    examples = tokenize(records, tokenizer, ["title", "body"], 64, segment_ids=False)
    return examples, Collator(tokenizer.pad_token_id, 64)(examples)


def test_decoders_are_recognized_and_encoders_are_not(decoder_dir, bert_dir, roberta_dir):
    from transformers import AutoConfig

    assert is_decoder(AutoConfig.from_pretrained(decoder_dir))
    assert not is_decoder(AutoConfig.from_pretrained(bert_dir))
    assert not is_decoder(AutoConfig.from_pretrained(roberta_dir))


def test_a_padded_batch_gives_each_text_the_logits_it_has_alone(decoder_dir, dataset_dir):
    """Right-padded batches, the transformers classifier's last-token pooling: padding never reaches a logit."""
    label2id = PreparedDataset(dataset_dir).label2id
    tokenizer, model = load_model(str(decoder_dir), label2id)
    assert tokenizer.pad_token_id is not None and model.config.pad_token_id == tokenizer.pad_token_id
    examples, batch = pair_batch(tokenizer, model.eval(), dataset_dir)
    lengths = {len(e["input_ids"]) for e in examples}
    assert len(lengths) > 1 and batch["attention_mask"].eq(0).any()  # really padded
    with torch.no_grad():
        together = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        for row, example in zip(together, examples, strict=True):
            alone = model(input_ids=torch.as_tensor(example["input_ids"])[None]).logits[0]
            torch.testing.assert_close(row, alone, rtol=1e-5, atol=1e-5)


def test_a_config_padding_id_other_than_the_tokenizers_is_replaced(corpus_dir, dataset_dir, tmp_path):
    """The report: a checkpoint whose config names another padding id trained silently and pooled padding."""
    folder = save_decoder("qwen2", corpus_dir, tmp_path / "qwen2", pad_token_id=5)
    tokenizer, model = load_model(str(folder), PreparedDataset(dataset_dir).label2id)
    assert tokenizer.pad_token_id != 5 and model.config.pad_token_id == tokenizer.pad_token_id
    examples, batch = pair_batch(tokenizer, model.eval(), dataset_dir)
    with torch.no_grad():
        together = model(**batch).logits
        alone = model(input_ids=torch.as_tensor(examples[0]["input_ids"])[None]).logits[0]
    torch.testing.assert_close(together[0], alone, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("with_lora", [False, True], ids=["full", "lora"])
def test_a_decoder_learns_the_fixture(decoder_dir, dataset_dir, tmp_path, with_lora):
    options = ["--lora", "--lora_r", "8", "--lr", "1e-2"] if with_lora else ["--lr", "3e-3"]
    run_dir = conftest.train_run(decoder_dir, dataset_dir, tmp_path, *FAST, "--epochs", "8", *options)
    test = read_json(run_dir / "test-metrics.json")
    assert test["accuracy"] >= 0.5  # chance: 1/9
    config = read_json(run_dir / "config.json")
    assert (config["lora_r"] is not None) == with_lora
    share = config["trainable_parameters"] / config["num_parameters"]
    assert share < 0.3 if with_lora else share == 1.0
    assert config["peak_memory_mib"] > 0


def lora_args(model_dir, dataset_dir, output_root, *options) -> train.Args:
    args = train.Args.from_args(train_argv(model_dir, dataset_dir, output_root, *FAST, "--lora", *options))
    train.check_args(args)
    train.resolve_lora(args)
    return args


def test_lora_trains_the_adapters_and_head_alone(llama_dir, dataset_dir, tmp_path):
    """peft's own count of trainable parameters is config.json's; after an epoch, every weight of the model as
    loaded is bitwise unchanged, and the adapters and head have moved."""
    args = lora_args(llama_dir, dataset_dir, tmp_path, "--lr", "1e-2")
    dataset = train.resolve_dataset(args)
    run = train.setup(args, dataset)
    trainable, total = run.model.get_nb_trainable_parameters()
    assert sum(p.numel() for p in run.model.parameters() if p.requires_grad) == trainable
    # q_proj (32 -> 32) and v_proj (32 -> 16: 2 key-value heads of 8) in each of 2 layers, rank 8; the head 32 x 9
    assert trainable == 2 * (8 * (32 + 32) + 8 * (32 + 16)) + 32 * 9
    from livedoor_classification.run_config import config_record

    assert config_record(args, run, dataset)["trainable_parameters"] == trainable
    assert config_record(args, run, dataset)["num_parameters"] == total

    before = {k: v.clone() for k, v in run.model.state_dict().items()}
    training, _ = build_training(run, args)
    assert {id(p) for group in training.optimizer.param_groups for p in group["params"]} == {
        id(p) for p in run.model.parameters() if p.requires_grad
    }  # only what trains goes to AdamW
    train.train_epoch(training, run.loaders["train"])
    changed = {k for k, v in run.model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {k for k in before if ".lora_" in k or ".modules_to_save." in k}
    assert any(".lora_B." in k for k in changed) and any(".modules_to_save." in k for k in changed)
    # and the frozen weights are the checkpoint's own
    _, fresh = load_model(str(llama_dir), dataset.label2id)
    base = run.model.get_base_model().state_dict()
    for name, weight in fresh.state_dict().items():
        if not name.startswith("score."):  # the head: a new random one each load
            adapted = name.replace(".weight", ".base_layer.weight")  # a layer peft wrapped keeps it there
            key = adapted if adapted in base else name
            assert torch.equal(base[key], weight), name


def test_lora_loads_the_frozen_weights_in_the_runs_precision(llama_dir, dataset_dir, tmp_path):
    args = lora_args(llama_dir, dataset_dir, tmp_path, "--precision", "bf16")
    run = train.setup(args, train.resolve_dataset(args))
    dtypes = {(p.requires_grad, p.dtype) for p in run.model.parameters()}
    assert dtypes == {(False, torch.bfloat16), (True, torch.float32)}  # loaded in bf16; trained in fp32


def predict_lines(model_dir: Path, records: Path, *options) -> list[dict]:
    out = run_script(ROOT / "src" / "predict.py", model_dir, "--input", records, *options)
    return [json.loads(line) for line in out.stdout.splitlines()]


def test_a_saved_adapter_and_a_merged_model_predict_as_the_run(llama_dir, dataset_dir, tmp_path):
    """Two runs alike but for --merge_lora: the adapter (predict.py, peft's PeftModel.from_pretrained) and the
    merged model (predict.py, transformers' pipeline()) give the run's own test predictions."""
    options = ["--epochs", "2", "--lr", "1e-2", "--save_model", "--max_eval_samples", "27", "--skip_if_done"]
    adapter_run = conftest.train_run(llama_dir, dataset_dir, tmp_path / "a", *FAST, "--lora", *options)
    # in the same output folder: --skip_if_done must not take the adapter's run for the merged model asked for
    merged_run = conftest.train_run(llama_dir, dataset_dir, tmp_path / "a", *FAST, "--lora", "--merge_lora", *options)
    assert merged_run is not None and merged_run != adapter_run
    adapter, merged = adapter_run / "model", merged_run / "model"
    assert (adapter / "adapter_config.json").is_file() and not (adapter / "model.safetensors").exists()
    assert (merged / "model.safetensors").is_file() and not (merged / "adapter_config.json").exists()
    tests = read_jsonl(adapter_run / "test-predictions.jsonl")
    records = tmp_path / "test.jsonl"
    records.write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in read_jsonl(dataset_dir / "test.jsonl"))
    )
    ids = {t["id"] for t in tests}
    from_adapter = [line for line in predict_lines(adapter, records) if line["id"] in ids]
    assert [line["probabilities"] for line in from_adapter] == [t["probabilities"] for t in tests]

    # merged against unmerged, unrounded and uncalibrated, through the libraries' own loaders
    from peft import PeftModel

    label2id = PreparedDataset(dataset_dir).label2id
    tokenizer, base = load_model(str(llama_dir), label2id)
    unmerged = PeftModel.from_pretrained(base, adapter).eval()
    classifier = pipeline("text-classification", model=str(merged), top_k=None)
    examples, batch = pair_batch(tokenizer, unmerged, dataset_dir)
    with torch.no_grad():
        expected = unmerged(**batch).logits.softmax(-1)
        merged_model = AutoModelForSequenceClassification.from_pretrained(merged).eval()
        torch.testing.assert_close(merged_model(**batch).logits.softmax(-1), expected, rtol=0, atol=1e-5)
    record = read_jsonl(dataset_dir / "val.jsonl")[1]
    scores = {s["label"]: s["score"] for s in classifier({"text": record["title"], "text_pair": record["body"]})}
    row = expected[1].tolist()
    assert [scores[name] for name in label2id] == pytest.approx(row, abs=1e-5)

    # an adapter folder damaged after the fact: one line naming it, no traceback
    damaged = tmp_path / "damaged"
    shutil.copytree(adapter, damaged)
    config = read_json(damaged / "adapter_config.json") | {"target_modules": 5}
    (damaged / "adapter_config.json").write_text(json.dumps(config))
    out = run_script(ROOT / "src" / "predict.py", damaged, "--input", records, check=False)
    error = out.stderr.splitlines()[-1]  # after the CPU notice
    assert out.returncode == 1 and error.startswith("predict.py: error: ") and "the adapter is unreadable" in error
    assert "Traceback" not in out.stderr


def test_a_killed_lora_run_resumes_to_the_uninterrupted_result(llama_dir, dataset_dir, tmp_path):
    options = [*FAST, "--lora", "--lr", "1e-2", "--epochs", "3", "--max_train_samples", "48", "--resume"]
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    kill_after_first_epoch(
        [str(ROOT / "src" / "train.py"), *train_argv(llama_dir, dataset_dir, killed, *options)], killed
    )
    (run_dir,) = run_dirs(killed)
    state = torch.load(run_dir / "resume.pt", weights_only=True)
    assert all(".lora_" in k or ".modules_to_save." in k for k in state["model"])  # not the whole model again
    run_script(ROOT / "src" / "train.py", *train_argv(llama_dir, dataset_dir, killed, *options))
    run_script(ROOT / "src" / "train.py", *train_argv(llama_dir, dataset_dir, whole, *options))
    (uninterrupted,) = run_dirs(whole)
    for name in ("val-metrics.json", "test-metrics.json", "test-predictions.jsonl"):
        assert (run_dir / name).read_text() == (uninterrupted / name).read_text(), name
    assert comparable_log(run_dir) == comparable_log(uninterrupted)


def test_lora_options_without_lora_are_one_line(in_process, llama_dir, dataset_dir, tmp_path):
    out = in_process(train, *train_argv(llama_dir, dataset_dir, tmp_path, "--lora_r", "4"), check_args=train.check_args)
    assert out.returncode == 1 and out.stderr.count("\n") == 1 and "--lora_r" in out.stderr and "--lora" in out.stderr
    out = in_process(
        train, *train_argv(llama_dir, dataset_dir, tmp_path, "--lora_dropout", "0"), check_args=train.check_args
    )
    assert out.returncode == 1 and "--lora_dropout must be given with --lora" in out.stderr
    argv = train_argv(llama_dir, dataset_dir, tmp_path, "--lora", "--lora_target_modules", "all-linear", "q_proj")
    out = in_process(train, *argv, check_args=train.check_args)
    assert out.returncode == 1 and "all-linear alone" in out.stderr and out.stderr.count("\n") == 1
    out = in_process(train, *train_argv(llama_dir, dataset_dir, tmp_path, "--lora", "--lora_4bit", "--device", "cpu"))
    assert out.returncode == 1 and "--lora_4bit needs a CUDA GPU" in out.stderr and out.stderr.count("\n") == 1
    assert not run_dirs(tmp_path)


def test_the_recorded_peak_memory_is_the_processs_own(llama_dir, dataset_dir, tmp_path):
    """config.json's peak_memory_mib against the peak resident memory the kernel reports for the process (wait4)
    once it has ended: the run's own measure, taken before it writes its last files, can only be as high."""
    from livedoor_classification.train_process import run_measured

    argv = train_argv(llama_dir, dataset_dir, tmp_path, *FAST, "--lora", "--epochs", "1", "--max_train_samples", "16")
    _, peak = run_measured("train.py", [sys.executable, str(ROOT / "src" / "train.py"), *argv])
    (run_dir,) = run_dirs(tmp_path)
    recorded = read_json(run_dir / "config.json")["peak_memory_mib"]
    assert 0.9 * peak <= recorded <= peak


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("quantized", [False, True], ids=["bf16", "4bit"])
def test_a_lora_epoch_on_the_gpu(quantized, llama_dir, dataset_dir, tmp_path):
    """bf16 LoRA on CUDA, and QLoRA (the frozen weights in 4 bits: bitsandbytes), one epoch each."""
    if quantized:
        pytest.importorskip("bitsandbytes")
    options = ["--device", "cuda", "--precision", "bf16", "--epochs", "1", "--lora", *(["--lora_4bit"] * quantized)]
    run_dir = conftest.train_run(llama_dir, dataset_dir, tmp_path, "--max_seq_len", "64", "--lr", "1e-2", *options)
    config = read_json(run_dir / "config.json")
    assert (config["device_used"], config["precision_used"], config["lora_4bit"]) == ("cuda:0", "bf16", quantized)
    assert 0 < config["peak_memory_mib"] and config["trainable_parameters"] < config["num_parameters"]


def test_lora_with_gradient_checkpointing_and_windows_trains_as_without_checkpointing(llama_dir, dataset_dir, tmp_path):
    """Checkpointing recomputes the activations (frozen embeddings give them no gradient: the non-reentrant kind
    copes) and changes no number; a long text's windows (--windows) are examples as for an encoder."""
    options = [*FAST, "--max_seq_len", "24", "--windows", "2", "--lora", "--lr", "1e-2", "--epochs", "2"]
    plain = conftest.train_run(llama_dir, dataset_dir, tmp_path / "plain", *options)
    checkpointed = conftest.train_run(llama_dir, dataset_dir, tmp_path / "ckpt", *options, "--gradient_checkpointing")
    config = read_json(plain / "config.json")
    assert config["num_windows"]["test"] > config["num_examples"]["test"]  # the texts were cut into windows
    for name in ("test-metrics.json", "test-predictions.jsonl"):
        assert (plain / name).read_text() == (checkpointed / name).read_text(), name


@pytest.mark.parametrize("encoder", ["bert_dir", "roberta_dir"])
def test_lora_works_for_encoders_too(encoder, dataset_dir, tmp_path, request):
    """peft's layers for BERT and RoBERTa (query, value); the head (BERT's classifier; RoBERTa's dense + out_proj)
    trained whole."""
    model_dir = request.getfixturevalue(encoder)
    options = [*FAST, "--lora", "--lora_r", "16", "--lr", "1e-2", "--epochs", "20"]
    run_dir = conftest.train_run(model_dir, dataset_dir, tmp_path, *options)
    assert read_json(run_dir / "test-metrics.json")["accuracy"] >= 0.4  # chance: 1/9; frozen random weights
    config = read_json(run_dir / "config.json")
    assert config["trainable_parameters"] < config["num_parameters"] / 2


def test_a_multimodal_decoders_text_config_is_told_the_padding_token(llama_dir):
    """Qwen3.5's and Gemma 3's classifiers read the padding id of their text model's config, a part of their own:
    set there too, or a batch of two is refused ("Cannot handle batch sizes > 1 if no padding token is defined")."""
    from transformers import AutoTokenizer, Qwen3_5Config

    config, tokenizer = Qwen3_5Config(), AutoTokenizer.from_pretrained(llama_dir)
    assert config.get_text_config() is not config and is_decoder(config)
    set_padding("qwen3.5", tokenizer, config)
    assert config.get_text_config().pad_token_id == config.pad_token_id == tokenizer.pad_token_id is not None


def test_a_decoder_with_lora_sweeps_like_any_model(llama_dir, dataset_dir, tmp_path, sweep_python):
    """run.sh with TRAIN_ARGS="--lora": a run per learning rate, each a LoRA run (the rank in config.json), a second
    sweep skips them, and the summary's table gives their row its rank and its trained parameters."""
    import pandas as pd

    out = tmp_path / "out"
    env = {
        "MODELS": str(llama_dir),
        "LRS": "1e-3 1e-2",
        "SEEDS": "1",
        "TRAIN_ARGS": "--lora --epochs 1 --max_seq_len 32 --max_train_samples 24 --max_eval_samples 12",
        "DATASET": str(dataset_dir),
        "OUTPUT_ROOT": str(out),
        "PYTHON": sweep_python,
    }
    run_script(ROOT / "run.sh", env=env)
    runs = [run for run in run_dirs(out) if run.parent.parent.name == llama_dir.name]
    configs = [read_json(run / "config.json") for run in runs]
    assert sorted(c["lr"] for c in configs) == [1e-3, 1e-2] and {c["lora_r"] for c in configs} == {8}
    again = run_script(ROOT / "run.sh", env=env)
    assert again.stdout.count("already complete, skipped") == 3  # both runs and the baseline
    (best,) = [
        row for _, row in pd.read_csv(tmp_path / "results" / "livedoor" / "best.csv").iterrows() if row["lora_r"] == 8
    ]
    assert best["trainable_parameters"] == configs[0]["trainable_parameters"] < best["num_parameters"]
