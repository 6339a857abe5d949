"""The README's commands, run as a new user types them, against the suite's tiny models and corpus.

Every command line of README.md's bash blocks is either run here, as written, in a fresh copy of the
repository, in the README's order, or named in NOT_RUN with the reason (a GPU, the network, the hours of
the default study, this suite itself). What stands in for the user's machine:
- the Hub ids the README names resolve, offline, to tiny models in a Hugging Face cache of the test's
  own (HF_HUB_CACHE, HF_HUB_OFFLINE=1): BERT with MeCab for tohoku-nlp's, a ModernBERT for
  sbintuitions', a Qwen2 and a GPT-NeoX decoder for Qwen's and rinna's (test_decoders.py), the same tiny
  BERT for the others (their architectures are tested elsewhere);
- download.sh fetches the fixture corpus (LIVEDOOR_URL, as the README says it may);
- the files a line names as the user's own (new.jsonl, tickets.csv, a.jsonl, tags.csv, ...) are written
  first, and the README's placeholder `outputs/.../model` is the model folder a README line saved.
README.ja.md must give the same commands (test_readmes_give_the_same_commands).
"""

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import ARTICLES_PER_CATEGORY, CATEGORIES, ROOT, run_dirs
from test_decoders import save_decoder

NOT_RUN = {
    "bash run.sh": "the default study: 15 models x 3 learning rates x 20 epochs (the smoke study runs run.sh)",
    "bash tests/run.sh": "this suite itself",
    "python3 -m venv .venv && source .venv/bin/activate": "set-up: the suite runs in an environment made so",
    "pip install -r requirements-dev.txt": "the network (tests/test_sweep.py checks the set-up without it)",
    "pip install torch==2.15.0 --index-url https://download.pytorch.org/whl/cpu": "the network",
    "pip install -r requirements-cpu.txt": "the network",
    'MODELS="tohoku-nlp/bert-base-japanese-v3 FacebookAI/xlm-roberta-base" LRS="3e-5 5e-5" SEEDS="1 2 3" bash run.sh': (
        "12 runs of 20 epochs: the smoke study above is run.sh with the same variables"
    ),
    'GPU=1 TRAIN_ARGS="--epochs 10 --batch_size 32" bash run.sh': "a second GPU",
    "DATASET=/data/tickets OUTPUT_ROOT=/scratch/runs bash run.sh": "folders of the user's machine",
    "NPROC=4 bash run.sh": "4 GPUs (tests/test_distributed.py runs torchrun on the CPU)",
    'GPUS="0 1 2 3" bash run.sh': "4 GPUs (tests/test_sweep_parallel.py runs GPUS and WORKERS)",
    "WORKERS=2 bash run.sh": "the default study, two runs at a time (tests/test_sweep_parallel.py)",
    "SBATCH_PARTITION=gpu bash run.sh --slurm": "a Slurm cluster (tests/test_slurm.py starts one)",
    "python src/train.py --model_name llm-jp/llm-jp-3-7.2b --lora --lora_4bit --lr 2e-4 --gradient_checkpointing": (
        "a CUDA GPU and bitsandbytes (tests/test_decoders.py's GPU test)"
    ),
    'MODELS="Qwen/Qwen2.5-1.5B llm-jp/llm-jp-3-1.8b" LRS="1e-4 2e-4 5e-4" TRAIN_ARGS="--lora --gradient_checkpointing" '
    "bash run.sh": "18 LoRA runs of 20 epochs: each train.py line above runs, and the smoke study is run.sh",
}


def readme_commands(readme: str) -> list[str]:
    """The command lines of a README's bash blocks, without their comments."""
    text = (ROOT / readme).read_text(encoding="utf-8")
    blocks = re.findall(r"```(?:bash|sh)\n(.*?)```", text, flags=re.DOTALL)
    lines = [re.split(r"\s+# ", line)[0].strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line]


def test_readmes_give_the_same_commands():
    assert readme_commands("README.ja.md") == readme_commands("README.md")


def test_every_command_not_run_is_still_in_the_readme():
    """A reason for a command the README no longer gives would hide a new one that is not run."""
    assert set(NOT_RUN) <= set(readme_commands("README.md"))


def hub_cache(root: Path, models: dict[str, Path]) -> Path:
    """A Hugging Face cache in which each hub id is a snapshot of the given folder, as a download leaves it."""
    for hub_id, folder in models.items():
        repo = root / f"models--{hub_id.replace('/', '--')}"
        commit = "0" * 40
        shutil.copytree(folder, repo / "snapshots" / commit)
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text(commit)
    return root


def tiny_modernbert(roberta_dir: Path, out: Path) -> Path:
    """A tiny ModernBERT over the tiny RoBERTa's byte-level BPE tokenizer (sbintuitions' ModernBERTs have a
    tokenizer of their own; what this test needs is the architecture and a tokenizer that fits it)."""
    from transformers import AutoTokenizer, ModernBertConfig, ModernBertModel

    tokenizer = AutoTokenizer.from_pretrained(roberta_dir)
    tokenizer.save_pretrained(out)
    config = ModernBertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
        cls_token_id=tokenizer.cls_token_id,
        sep_token_id=tokenizer.sep_token_id,
    )
    torch.manual_seed(0)
    ModernBertModel(config).save_pretrained(out)
    return out


def write_users_files(repo: Path, dataset_dir: Path) -> None:
    """The files the README's lines name as the user's own, from the fixture corpus."""
    names = {i: name for name, i in json.loads((dataset_dir / "label2id.json").read_text()).items()}
    splits = {s: [json.loads(line) for line in (dataset_dir / f"{s}.jsonl").open()] for s in ("train", "val", "test")}
    for split, name in [("train", "a"), ("val", "b"), ("test", "c")]:
        with open(repo / f"{name}.jsonl", "w", encoding="utf-8") as f:
            for r in splits[split]:
                f.write(json.dumps({"title": r["title"], "body": r["body"], "label": names[r["label"]]}) + "\n")
    records = splits["test"][:5]
    with open(repo / "new.jsonl", "w", encoding="utf-8") as f:  # the last one with an empty body
        for r in records:
            record = {"id": f"n{r['id']}", "title": r["title"], "body": r["body"]}
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
        f.write(json.dumps({"id": "empty-body", "title": records[0]["title"], "body": ""}, ensure_ascii=False) + "\n")
    with open(repo / "tickets.csv", "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["title", "body"])
        writer.writerows([r["title"], r["body"]] for r in records)
    # Tags: each article gets its category and, for every third one, a second tag.
    tagged = [
        (r["title"] + r["body"], [names[r["label"]]] + (["pick"] if r["id"] % 3 == 0 else []))
        for r in sum(splits.values(), [])
    ]
    with open(repo / "tags.csv", "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "tags"])
        writer.writerows([text, ";".join(tags)] for text, tags in tagged)
    with open(repo / "tags.jsonl", "w", encoding="utf-8") as f:
        for text, tags in tagged:
            f.write(json.dumps({"text": text, "tags": tags}, ensure_ascii=False) + "\n")


@pytest.fixture
def new_users_checkout(tmp_path, corpus_archive, corpus_dir, dataset_dir, bert_dir, roberta_dir, sweep_python):
    """A copy of the repository as cloned (what git tracks), the user's files, and the environment."""
    repo = tmp_path / "repo"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True)
    if tracked.returncode == 0 and tracked.stdout:
        for name in tracked.stdout.rstrip("\0").split("\0"):
            if (ROOT / name).is_file() and not name.startswith(("tests/", "docs/")):
                (repo / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / name, repo / name)
    else:  # not a git checkout: what the scripts need
        shutil.copytree(ROOT / "src", repo / "src", ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copytree(ROOT / "datasets", repo / "datasets")
        for name in ("run.sh", ".envrc", "pyproject.toml"):
            shutil.copy(ROOT / name, repo / name)
    write_users_files(repo, dataset_dir)
    modernbert = tiny_modernbert(roberta_dir, tmp_path / "tiny-modernbert")
    qwen2 = save_decoder("qwen2", corpus_dir, tmp_path / "tiny-qwen2")
    gpt_neox = save_decoder("gpt_neox", corpus_dir, tmp_path / "tiny-gpt-neox")
    cache = hub_cache(
        tmp_path / "hub",
        {
            "tohoku-nlp/bert-base-japanese-v3": bert_dir,
            "studio-ousia/luke-japanese-base-lite": bert_dir,
            "sbintuitions/modernbert-ja-30m": modernbert,
            "Qwen/Qwen2.5-1.5B": qwen2,
            "rinna/japanese-gpt-neox-3.6b": gpt_neox,
        },
    )
    bin_dir = tmp_path / "bin"  # `python` is this suite's Python, as in the user's activated environment
    bin_dir.mkdir()
    (bin_dir / "python").write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')  # not a link: a venv's
    (bin_dir / "python").chmod(0o755)  # Python finds its packages from the path it was started by
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env |= {
        "PATH": f"{bin_dir}{os.pathsep}{env['PATH']}",
        "HF_HUB_CACHE": str(cache),
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "LIVEDOOR_URL": f"file://{corpus_archive}",
        "LIVEDOOR_EXPECTED_ARTICLES": str(ARTICLES_PER_CATEGORY * len(CATEGORIES)),
        "PYTHON": sweep_python,
    }
    return repo, env


def saved_model(repo: Path) -> Path:
    """The model folder a README line saved (train.py --save_model): outputs/.../model."""
    (model,) = [p / "model" for p in run_dirs(repo / "outputs") if (p / "model").is_dir()]
    return model


def run(line: str, repo: Path, env: dict) -> subprocess.CompletedProcess:
    result = subprocess.run(["bash", "-c", line], cwd=repo, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{line}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    assert "Traceback" not in result.stderr, f"{line}\n{result.stderr}"
    return result


def check_the_smoke_study(first: subprocess.CompletedProcess, repo: Path) -> None:
    """The first screen's study, from a clone with no data: the corpus fetched and prepared, a table with the
    model's row and the baseline's, printed at the end too. (The fixture corpus is smaller than the study's
    samples, so its run is of the whole splits, not a smoke run: tests/test_runs.py. That a second run.sh
    skips what is complete: tests/test_sweep.py.)"""
    assert (repo / "data" / "text").is_dir() and (repo / "datasets" / "livedoor" / "label2id.json").is_file()
    summary = first.stdout.split("=== Summary")[1]
    assert "modernbert-ja-30m" in summary and "tfidf-char-linear" in summary
    report = (repo / "results" / "livedoor" / "results.md").read_text(encoding="utf-8")
    assert "| [sbintuitions/modernbert-ja-30m](https://huggingface.co/sbintuitions/modernbert-ja-30m) |" in report
    assert "| tfidf-char-linear |" in report
    runs = run_dirs(repo / "outputs")
    assert len(runs) == 2
    (config,) = [json.loads((run / "config.json").read_text()) for run in runs if "modernbert" in str(run)]
    assert (config["max_train_samples"], config["max_train_samples_requested"]) == (None, 1000)


def test_every_command_of_the_readme_runs_as_written(new_users_checkout):
    repo, env = new_users_checkout
    outputs = {}
    for command in readme_commands("README.md"):
        if command in NOT_RUN:
            continue
        if "outputs/.../model" in command:
            outputs[command] = run(command.replace("outputs/.../model", str(saved_model(repo))), repo, env)
        else:
            outputs[command] = run(command, repo, env)
        if command.startswith("MODELS=sbintuitions/modernbert-ja-30m"):
            check_the_smoke_study(outputs[command], repo)

    # predict.py: one line per input, in input order, the input's id carried through; an empty body and
    # a text from stdin as the model's tokenizer encodes them (tests/test_tokenization.py compares the ids).
    predictions = [json.loads(line) for line in (repo / "predictions.jsonl").read_text().splitlines()]
    given = [json.loads(line) for line in (repo / "new.jsonl").read_text().splitlines()]
    assert [p["id"] for p in predictions] == [r["id"] for r in given]
    label_names = set(json.loads((repo / "datasets" / "livedoor" / "label2id.json").read_text()))
    assert all(p["predicted"] in label_names for p in predictions)
    piped = next(c for c in outputs if c.startswith("echo "))
    assert json.loads(outputs[piped].stdout)["predicted"] in label_names
    csv_command = next(c for c in outputs if "--input tickets.csv" in c)
    assert len(outputs[csv_command].stdout.splitlines()) == 5

    # Each dataset a line prepared is there, and each train.py line left a complete run.
    for name in ("livedoor", "reviews", "tickets", "tags"):
        assert (repo / "datasets" / name / "dataset.json").is_file()
    assert all((run / "test-metrics.json").is_file() for run in run_dirs(repo / "outputs"))

    # Your own data: the shipped CSV (a BOM, Japanese label names, one text column) trained with no text
    # fields given: every stage takes them from the dataset's manifest, as the baseline of livedoor did.
    manifest = json.loads((repo / "datasets" / "reviews" / "dataset.json").read_text())
    (reviews_run,) = [run for run in run_dirs(repo / "outputs") if run.parent.parent.parent.name == "reviews"]
    config = json.loads((reviews_run / "config.json").read_text())
    assert config["text_fields"] == ["text"]
    assert (config["dataset"], config["dataset_fingerprint"]) == ("reviews", manifest["fingerprint"])
    assert set(json.loads((reviews_run / "test-metrics.json").read_text())["per_class"]) == {"良い", "普通", "悪い"}
    baselines = sorted((repo / "outputs" / "livedoor" / "tfidf-char-linear").glob("*/*"))
    assert all(json.loads((b / "config.json").read_text())["text_fields"] == ["title", "body"] for b in baselines)
    aggregate = next(c for c in outputs if c.startswith("python src/aggregate.py"))
    assert (repo / "results" / "livedoor" / "results.md").read_text(encoding="utf-8") in outputs[aggregate].stdout
