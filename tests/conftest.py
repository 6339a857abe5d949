"""Offline fixtures: a small corpus with the real livedoor layout, its archive, the prepared dataset,
and two tiny models saved to local directories (nothing is ever downloaded).

- bert_dir: BERT with BertJapaneseTokenizer over MeCab (fugashi + unidic-lite) and WordPiece, the
  tokenizer of the tohoku-nlp models, with a vocabulary made from the fixture corpus;
- roberta_dir: RoBERTa with a byte-level BPE tokenizer trained here on the same corpus;
- char_bert_dir: BERT with a character-level BertJapaneseTokenizer (MeCab words, then characters),
  the tokenizer of tohoku-nlp's -char models: long titles in few characters' budget.
"""

import argparse
import os
import signal
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent

# A suite started in the background by a shell without job control inherits SIGINT ignored, and so would
# every process it starts (an ignored signal stays ignored across exec): the Ctrl-C tests would send a
# signal nobody receives. A handled signal is reset to the default at exec, so this restores what a
# terminal gives.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# tests/run.sh runs one test per core (pytest-xdist), and most tests start Python processes that train
# tiny models: torch's thread pool on top of that puts several busy threads on each core, and on such
# small matrices they cost more than they save. Measured on 2 cores, the whole suite with 2 workers: 384 s
# with torch's default threads, 284 s with one. The processes the tests start inherit it.
if "PYTEST_XDIST_WORKER" in os.environ and "OMP_NUM_THREADS" not in os.environ:
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
CATEGORIES = {  # real category names; each gets words of its own so that the task is learnable
    "dokujo-tsushin": ["結婚", "恋愛", "独女"],
    "it-life-hack": ["パソコン", "ソフト", "ネット"],
    "kaden-channel": ["家電", "テレビ", "掃除機"],
    "livedoor-homme": ["仕事", "転職", "年収"],
    "movie-enter": ["映画", "監督", "公開"],
    "peachy": ["美容", "料理", "スイーツ"],
    "smax": ["スマートフォン", "アプリ", "ドコモ"],
    "sports-watch": ["野球", "サッカー", "選手"],
    "topic-news": ["事件", "政治", "ネットユーザー"],
}
ARTICLES_PER_CATEGORY = 20
FILLER = ["今日", "話題", "について", "紹介", "します", "最新", "情報", "記事"]


def article_text(category: str, number: int) -> str:
    """One article in the corpus format: URL, date, title, body; with full-width letters and digits,
    half-width katakana, full-width spaces and blank lines, as the real corpus has."""
    words = CATEGORIES[category]
    body = [
        f"　{words[number % 3]}の{FILLER[number % len(FILLER)]}です。",
        "",
        f"{words[(number + 1) % 3]}と{words[(number + 2) % 3]}の話題、ＡＢＣ{number}番。ｶﾀｶﾅ　も。",
        "　　",
        f"{FILLER[(number * 3) % len(FILLER)]}{words[number % 3]}{FILLER[(number + 5) % len(FILLER)]}。",
    ]
    title = f"　【{words[0]}】第１２回　ＮＥＷＳ{number}　ﾆｭｰｽ "
    lines = [f"http://news.livedoor.com/article/detail/{7000000 + number}/", "2012-09-18T18:23:00+0900", title]
    return "\n".join(lines + body) + "\n"


def write_corpus(root: Path, articles_per_category: int = ARTICLES_PER_CATEGORY) -> Path:
    text = root / "text"
    for category in CATEGORIES:
        folder = text / category
        folder.mkdir(parents=True)
        (folder / "LICENSE.txt").write_text("Creative Commons BY-ND 2.1 JP\n", encoding="utf-8")
        for number in range(articles_per_category):
            name = f"{category}-{6000000 + number * 37}.txt"
            (folder / name).write_text(article_text(category, number), encoding="utf-8")
    (text / "README.txt").write_text("livedoor news corpus\n", encoding="utf-8")
    (text / "CHANGES.txt").write_text("2014-02-09\n", encoding="utf-8")
    return text


def run_dirs(output_root: Path) -> list[Path]:
    """The run folders under an --output_root: <root>/<dataset>/<model>/<date>/<time>/."""
    return sorted(p for p in output_root.glob("*/*/*/*") if p.is_dir())


def train_argv(model_dir, dataset_dir, output_root, *options) -> list[str]:
    """train.py's arguments for a run of a tiny model: the model, the dataset, the output root, then options."""
    argv = ["--model_name", model_dir, "--dataset_dir", dataset_dir, "--output_root", output_root, *options]
    return list(map(str, argv))


def train_run(model_dir, dataset_dir, output_root, *options) -> Path | None:
    """`python src/train.py` with train_argv run in this process (no second torch import), as its `__main__`
    block does but for the argument checks (tests of those use in_process). Returns the run folder it made;
    None if it made none (--skip_if_done found one complete). On a CPU, train.main has malloc keep freed memory
    (hardware.keep_freed_memory) in this process as in a run's own: the worker's training is faster for it, and
    the worker holds its largest heap until it exits."""
    import train

    before = set(run_dirs(Path(output_root)))
    train.main(train.Args.from_args(train_argv(model_dir, dataset_dir, output_root, *options)))
    made = sorted(set(run_dirs(Path(output_root))) - before)
    return made[-1] if made else None


# run.sh first checks that its Python imports the dependencies (src/environment.sh), which costs each
# run.sh the seconds of importing torch. This Python does import them (this session has), so the PYTHON
# given to the sweeps of the tests answers that one command itself; everything else it runs in this
# Python. The check has tests of its own (test_sweep.py's fresh_clone tests), with the real import.
ANSWER_IMPORT_CHECK = 'if [[ "$*" == "-c import torch, transformers, classopt" ]]; then exit 0; fi\n'


@pytest.fixture(scope="session")
def sweep_python(tmp_path_factory) -> str:
    """PYTHON for run.sh in the tests: this Python, but for the import check (ANSWER_IMPORT_CHECK)."""
    script = tmp_path_factory.mktemp("python") / "python"
    script.write_text(f'#!/usr/bin/env bash\n{ANSWER_IMPORT_CHECK}exec {sys.executable} "$@"\n')
    script.chmod(0o755)
    return str(script)


def tiny_sweep(bert_dir: Path, dataset_dir: Path, output_root: Path, python: str) -> dict:
    """run.sh's variables for a real sweep that is quick: the tiny BERT, 2 seeds, 1 epoch on a few examples."""
    return {
        "MODELS": str(bert_dir),
        "LRS": "2e-3",
        "SEEDS": "1 2",
        "PYTHON": python,
        "DATASET": str(dataset_dir),
        "OUTPUT_ROOT": str(output_root),
        "TRAIN_ARGS": "--epochs 1 --max_seq_len 32 --max_train_samples 24 --max_eval_samples 12",
    }


# For the tests that must stop before anything runs: with these, a run.sh that went on anyway would
# fail at once instead of sweeping the default models.
NOTHING_RUNS = {"PYTHON": "false", "MODELS": "none", "LRS": "1", "SEEDS": "1"}


def fake_python(tmp_path: Path, train: str) -> Path:
    """A PYTHON for run.sh whose src/train.py is the bash code given; anything else runs in this Python
    (but for the import check, as sweep_python)."""
    script = tmp_path / "python"
    script.write_text(
        f'#!/usr/bin/env bash\n{ANSWER_IMPORT_CHECK}if [[ "$1" == src/train.py ]]; then\n{train}\nfi\n'
        f'exec {sys.executable} "$@"\n'
    )
    script.chmod(0o755)
    return script


def run_script(*argv, cwd=ROOT, env=None, check=True) -> subprocess.CompletedProcess:
    """Run a pipeline stage as users do, in a fresh process."""
    environment = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    environment.pop("PYTHONPATH", None)  # the scripts find their modules themselves
    command = ["bash", *map(str, argv)] if str(argv[0]).endswith(".sh") else [sys.executable, *map(str, argv)]
    result = subprocess.run(command, cwd=cwd, env=environment | (env or {}), capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{argv} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="session")
def corpus_archive(corpus_dir) -> Path:
    archive = corpus_dir.parent / "ldcc-20140209.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(corpus_dir, arcname="text")
    return archive


@pytest.fixture(scope="session")
def dataset_dir(corpus_dir, tmp_path_factory) -> Path:
    from prepare import Args, main

    output = tmp_path_factory.mktemp("datasets") / "livedoor"
    main(Args(input_dir=corpus_dir, output_dir=output, seed=42))
    return output


def corpus_sentences(corpus_dir: Path) -> list[str]:
    from livedoor_classification.dataset_files import normalize

    paths = sorted(corpus_dir.glob("*/*.txt"))
    return [normalize(line) for p in paths if p.name != "LICENSE.txt" for line in p.read_text().splitlines()[2:]]


@pytest.fixture(scope="session")
def bert_dir(corpus_dir, tmp_path_factory) -> Path:
    from transformers.models.bert_japanese.tokenization_bert_japanese import MecabTokenizer

    out = tmp_path_factory.mktemp("tiny-bert-japanese")

    mecab = MecabTokenizer(do_lower_case=False, mecab_dic="unidic_lite")
    words = sorted({w for s in corpus_sentences(corpus_dir) for w in mecab.tokenize(s)})
    chars = sorted({c for w in words for c in w})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words, *(f"##{c}" for c in chars), *chars]
    (out / "vocab.txt").write_text("\n".join(dict.fromkeys(vocab)) + "\n", encoding="utf-8")
    return save_tiny_bert(out, subword_tokenizer_type="wordpiece")


def save_tiny_bert(out: Path, subword_tokenizer_type: str, layers: int = 2) -> Path:
    """A tiny BERT with a BertJapaneseTokenizer (MeCab words, then subwords) over out/vocab.txt."""
    from transformers import BertConfig, BertJapaneseTokenizer, BertModel

    tokenizer = BertJapaneseTokenizer(
        str(out / "vocab.txt"),
        word_tokenizer_type="mecab",
        subword_tokenizer_type=subword_tokenizer_type,
        mecab_kwargs={"mecab_dic": "unidic_lite"},
        model_max_length=128,
    )
    tokenizer.save_pretrained(out)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    torch.manual_seed(0)  # the "pre-trained" weights are random: fix them so that every session gets the same
    BertModel(config).save_pretrained(out)  # an encoder without a head, as on the Hub
    return out


@pytest.fixture(scope="session")
def roberta_dir(corpus_dir, tmp_path_factory) -> Path:
    import json

    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import RobertaConfig, RobertaModel, RobertaTokenizer

    out = tmp_path_factory.mktemp("tiny-roberta")
    # byte-level BPE as RoBERTa uses; unlike the Unigram trainer, the BPE trainer is deterministic
    trained = Tokenizer(models.BPE())
    trained.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    trained.train_from_iterator(corpus_sentences(corpus_dir), trainer)
    model = json.loads(trained.to_str())["model"]
    merges = [tuple(m.split(" ") if isinstance(m, str) else m) for m in model["merges"]]
    tokenizer = RobertaTokenizer(vocab=model["vocab"], merges=merges, model_max_length=128)
    tokenizer.save_pretrained(out)
    config = RobertaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=130,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    RobertaModel(config).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def char_bert_dir(corpus_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny-bert-japanese-char")
    chars = sorted({c for s in corpus_sentences(corpus_dir) for c in s})
    (out / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars]) + "\n")
    return save_tiny_bert(out, subword_tokenizer_type="character")


@pytest.fixture(params=["bert_dir", "roberta_dir", "char_bert_dir"])
def tokenizer(request):
    """Each kind of tokenizer in turn: MeCab + WordPiece (Python), byte-level BPE (Rust), MeCab +
    characters (Python)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(request.getfixturevalue(request.param))


@pytest.fixture
def own_filesystem(tmp_path):
    """mount(size, read_only) -> a folder on a small tmpfs of its own: a real full disk or read-only
    folder (tests run as root, whom chmod does not stop). Skips where mounting is not allowed."""
    mounted = []

    def mount(size: str = "1m", read_only: bool = False) -> Path:
        target = tmp_path / f"fs{len(mounted)}"
        target.mkdir()
        options = f"size={size}" + (",ro" if read_only else "")
        if subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", target], capture_output=True).returncode:
            pytest.skip("mounting a tmpfs needs root")
        mounted.append(target)
        return target

    yield mount
    for target in mounted:
        subprocess.run(["umount", target], check=True)


def fill(folder: Path) -> None:
    """Write to a file in folder until the disk is full."""
    with open(folder / "filler", "wb", buffering=0) as f:
        try:
            while True:
                f.write(bytes(4096))
        except OSError:
            pass


@pytest.fixture
def in_process(monkeypatch, capsys):
    """in_process(module, *argv, check_args=None) -> CompletedProcess: `python src/<module>.py argv` run
    in this process (no second torch import), as the script's `__main__` block does: cli.parse(Args,
    check_args), then main(). A SystemExit becomes the exit status and stderr Python would give it. For
    what a script prints, exits with and writes; process-level behaviour (signals, a fresh interpreter,
    the environment) still needs run_script."""
    from livedoor_classification import cli

    def run(module, *argv, check_args=None) -> subprocess.CompletedProcess:
        script = f"src/{module.__name__}.py"
        monkeypatch.setattr(sys, "argv", [script, *map(str, argv)])
        # A fresh parser, as in a new process: classopt adds the options to the script's parser on every
        # call, and a positional argument added twice is required twice. And argparse names a parser
        # after sys.argv[0] when it is made: the parser made at import was named after pytest.
        for cell in module.Args.from_args.__func__.__closure__ or ():
            if isinstance(cell.cell_contents, argparse.ArgumentParser):
                monkeypatch.setattr(cell, "cell_contents", cli.parser(module.__doc__))
        capsys.readouterr()
        returncode, message = 0, ""
        try:
            module.main(cli.parse(module.Args, check_args))
        except SystemExit as e:  # as the interpreter exits: a string is printed and means status 1
            if isinstance(e.code, str):
                returncode, message = 1, e.code + "\n"
            else:
                returncode = e.code or 0
        captured = capsys.readouterr()
        return subprocess.CompletedProcess([script, *argv], returncode, captured.out, captured.err + message)

    return run
