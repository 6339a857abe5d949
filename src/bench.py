"""Measure how fast train.py's code paths run on this machine, and what a GPU would need from them.

    python src/bench.py                                  # offline: random BERT-base-shaped model
    python src/bench.py --model_name tohoku-nlp/bert-base-japanese-v3 --precisions fp32 auto

Everything measured here imports train.py's own code (tokenize, loaders, train_one_epoch, evaluate),
so the numbers describe what training does, not a copy of it. Sections:
1. tokenization, once per split before training: documents/s, MeCab (BertJapaneseTokenizer) and fast;
2. the input pipeline after tokenization: samples/s and padding, next to a naive pipeline that
   tokenizes every batch and pads random batches to their longest member;
3. the model step: samples/s, tokens/s and achieved FLOP/s against this machine's matmul peak;
4. what one H100 needs to stay busy at half its dense bf16 peak, and whether the pipeline delivers it;
5. torch.compile: eager against compiled (train.py --compile) on the BERT-base shape in fp32 (or
   --compile_precision bf16): the compilation's seconds, the steady-state speed-ups, and the livedoor
   epochs that pay for it;
6. accuracy: a small BERT trained by train.py in fp32 and in mixed precision;
7. long documents: the same small BERT at a short --max_seq_len (--long_seq_len), where truncation
   bites, reading each document's head, its head and tail, or 3 windows: accuracy and wall time.
The table is printed and written as JSON (--output). If a section fails, the report still holds every
section measured before it and names the failed one with its error ("failed"), and the exit status is 1.
"""

from pathlib import Path

from classopt import classopt, config

import cli
from paths import ROOT

SECTIONS = ["tokenization", "pipeline", "model_step", "compile", "precision_accuracy", "long_documents"]


@classopt(default_long=True, parser=cli.parser(__doc__))
class Args:
    model_name: str = config(default="", help="model to measure; empty: a randomly initialised BERT-base shape")
    dataset_dir: Path = config(default=ROOT / "datasets" / "livedoor", help="lengths from train.jsonl, if present")
    documents: int = config(default=2000, help="documents for the tokenization and pipeline sections")
    max_seq_len: int = config(default=512, help="as train.py --max_seq_len")
    batch_size: int = config(default=16, help="as train.py --batch_size, for the pipeline section")
    model_batch_size: int = config(default=8, help="batch size for the model step (small: CPUs are slow)")
    steps: int = config(default=3, help="timed training steps per precision (after one warm-up step)")
    precisions: list[str] = config(default=["fp32", "auto"], nargs="+", help="precisions to time the model in")
    compile_precision: str = config(default="fp32", choices=["fp32", "bf16"], help="precision of the compile section")
    accuracy_records: int = config(default=1100, help="documents for the accuracy sections (6 and 7)")
    long_seq_len: int = config(default=128, help="--max_seq_len of the long-documents section")
    output: Path = config(default=ROOT / "bench" / "bench.json", help="where the JSON report goes")
    sections: list[str] = config(
        default=SECTIONS,
        nargs="+",
        choices=SECTIONS,
        metavar="SECTION",
        help=f"the sections to run, in the order of: {' '.join(SECTIONS)}",
    )


if __name__ == "__main__":
    ARGS = Args.from_args()  # before torch and transformers are imported: --help answers at once

import csv
import json
import math
import random
import shutil
import sys
import tempfile
import time
from functools import partial

import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
from torch._dynamo.utils import counters
from torch.utils.data import DataLoader
from transformers import BertConfig, BertForSequenceClassification, BertJapaneseTokenizer, PreTrainedTokenizerFast
from transformers.models.bert_japanese.tokenization_bert_japanese import MecabTokenizer

import train
from dataset_files import read_jsonl, write_jsonl, write_label2id
from hardware import AUTOCAST_DTYPES, matmul_flops, resolve_precision
from inputs import Collator, eval_loader, tokenize, train_loader
from models import load_model

LIVEDOOR_EPOCH = (5895, 736)  # training and validation articles evaluated per epoch
H100_BF16_DENSE_PEAK = 989e12  # FLOP/s, H100 SXM, dense (NVIDIA's datasheet; 1,979 is with sparsity)
WORDS = (
    "今日 東京 映画 監督 公開 選手 試合 野球 スマートフォン アプリ 発表 新しい 機能 女性 結婚 仕事 会社 "
    "話題 ネット ユーザー 家電 テレビ 発売 価格 円 年 月 日 について 紹介 する した して いる ある "
    "こと もの よう ため 中 人 方 的 が の を に は と で も から まで より"
).split()
LABEL_WORDS = [
    ("独女", "恋愛"),
    ("パソコン", "ソフト"),
    ("掃除機", "冷蔵庫"),
    ("転職", "年収"),
    ("俳優", "上映"),
    ("美容", "スイーツ"),
    ("ドコモ", "端末"),
    ("サッカー", "監督"),
    ("事件", "政治"),
]


def synthetic_records(n: int, seed: int = 0, label_rate: float = 0.05) -> list[dict]:
    """Livedoor-like articles when no prepared dataset is present: titles of 15 to 45 characters,
    bodies log-normal in length with a median of 1,100 characters (sigma 0.55, 200 to 8,000), close
    to the livedoor corpus; words from a fixed list, so that MeCab sees real morphemes. Each of the
    9 labels has two words of its own, mixed in at label_rate per word, anywhere in the text, so that
    the texts can also be learned (the more of a text is read, the more of them are seen)."""
    rng = random.Random(seed)

    def text(chars: int, label: int) -> str:
        words, length = [], 0
        while length < chars:
            words.append(LABEL_WORDS[label][len(words) % 2] if rng.random() < label_rate else rng.choice(WORDS))
            length += len(words[-1])
        return "".join(words)

    records = []
    for i in range(n):
        body = min(8000, max(200, int(rng.lognormvariate(math.log(1100), 0.55))))
        records.append({"title": text(rng.randint(15, 45), i % 9), "body": text(body, i % 9), "label": i % 9})
    return records


def load_records(args: Args) -> tuple[list[dict], str]:
    path = args.dataset_dir / "train.jsonl"
    if path.is_file():
        return read_jsonl(path)[: args.documents], str(path)
    return synthetic_records(args.documents), "synthetic livedoor-like lengths (see synthetic_records)"


def local_tokenizers(records: list[dict], workdir: Path):
    """A MeCab + WordPiece BertJapaneseTokenizer (the tohoku-nlp kind) and a fast Unigram tokenizer
    (the SentencePiece kind), with vocabularies made from the texts: the code paths of the real ones,
    without a download."""
    sample = [r["title"] + r["body"] for r in records[:300]]
    mecab_words = MecabTokenizer(mecab_dic="unidic_lite")
    words = sorted({w for text in sample for w in mecab_words.tokenize(text)})
    chars = sorted({c for w in words for c in w})
    vocab = dict.fromkeys(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words, *chars, *(f"##{c}" for c in chars)])
    vocab_file = workdir / "mecab-vocab.txt"
    vocab_file.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    mecab = BertJapaneseTokenizer(
        str(vocab_file), word_tokenizer_type="mecab", mecab_kwargs={"mecab_dic": "unidic_lite"}
    )

    unigram = Tokenizer(models.Unigram())
    unigram.normalizer = normalizers.NFKC()
    unigram.pre_tokenizer = pre_tokenizers.Metaspace()
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    unigram.train_from_iterator(
        sample, trainers.UnigramTrainer(vocab_size=8000, special_tokens=specials, unk_token="<unk>")
    )
    unigram.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    specials = {
        "bos_token": "<s>",
        "eos_token": "</s>",
        "pad_token": "<pad>",
        "unk_token": "<unk>",
        "cls_token": "<s>",
        "sep_token": "</s>",
        "mask_token": "<mask>",
    }
    fast = PreTrainedTokenizerFast(tokenizer_object=unigram, **specials)
    return mecab, fast


def time_tokenization(records, tokenizer, max_seq_len) -> tuple[list[dict], float]:
    start = time.perf_counter()
    examples = tokenize(records, tokenizer, ["title", "body"], max_seq_len, segment_ids=True)
    return examples, len(records) / (time.perf_counter() - start)


def padding_fraction(loader: DataLoader) -> float:
    real = padded = 0
    for batch in loader:
        real += int(batch["attention_mask"].sum())
        padded += batch["attention_mask"].numel()
    return 1 - real / padded


def samples_per_second(loader: DataLoader, epochs: int = 3) -> float:
    start, samples = time.perf_counter(), 0
    for epoch in range(epochs):
        if hasattr(loader.batch_sampler, "set_epoch"):
            loader.batch_sampler.set_epoch(epoch)
        for batch in loader:
            samples += len(batch["labels"])
    return samples / (time.perf_counter() - start)


def naive_loader(records, tokenizer, batch_size, max_seq_len) -> DataLoader:
    """The pattern this template avoids: tokenize inside collate, every batch of every epoch, and pad
    random batches to their longest member."""

    def collate(batch):
        encoded = tokenizer(
            [r["title"] for r in batch],
            [r["body"] for r in batch],
            truncation="only_second",
            max_length=max_seq_len,
            padding="longest",
            return_tensors="pt",
        )
        return dict(encoded) | {"labels": torch.tensor([r["label"] for r in batch])}

    return DataLoader(records, batch_size=batch_size, shuffle=True, collate_fn=collate)


def random_batches_padding(examples, batch_size, seed=0) -> float:
    """Padding of shuffled, ungrouped batches, rounded up to a multiple of 8 like the Collator's."""
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    lengths = [len(e["input_ids"]) for e in examples]
    padded = sum(math.ceil(max(lengths[i] for i in b) / 8) * 8 * len(b) for b in batches)
    return 1 - sum(lengths) / padded


def pipeline_section(args: Args, records, examples, fast_tokenizer) -> dict:
    collate = Collator(fast_tokenizer.pad_token_id, args.max_seq_len)
    loader = train_loader(examples, args.batch_size, seed=0, collate=collate, pin_memory=False)
    naive = naive_loader(records, fast_tokenizer, args.batch_size, args.max_seq_len)
    titles = tokenize([r | {"body": ""} for r in records], fast_tokenizer, ["title"], args.max_seq_len, True)
    title_loader = train_loader(titles, args.batch_size, seed=0, collate=collate, pin_memory=False)
    result = {
        "pipeline_samples_per_s": samples_per_second(loader),
        "naive_samples_per_s": samples_per_second(naive, epochs=1),
        "padding_grouped": padding_fraction(loader),
        "padding_random": random_batches_padding(examples, args.batch_size),
        "titles_padding_grouped": padding_fraction(title_loader),
        "titles_padding_random": random_batches_padding(titles, args.batch_size),
    }
    result["pipeline_speedup_over_naive"] = result["pipeline_samples_per_s"] / result["naive_samples_per_s"]
    return result


def non_embedding_parameters(model) -> int:
    """Embedding lookups do no multiply-adds: only the other parameters count toward FLOPs."""
    return sum(p.numel() for name, p in model.named_parameters() if "embeddings" not in name)


def step_flops(lengths: list[int], config, non_embedding_params: int, training: bool) -> float:
    """2 FLOPs per parameter per token for a forward pass (x3 with the backward), plus attention:
    QK^T and attention x V, 2 * 2 * L^2 * hidden per layer and sequence, at each sequence's real length."""
    dense = 2 * non_embedding_params * sum(lengths)
    attention = 4 * config.hidden_size * config.num_hidden_layers * sum(n * n for n in lengths)
    return (dense + attention) * (3 if training else 1)


def model_step(args: Args, model, examples, pad_id: int, requested: str, variant: str, compile: bool = False) -> dict:
    """Training and evaluation throughput of train.py's train_one_epoch and evaluate, in one precision,
    compiled as train.py --compile compiles if asked. A first training batch and a first evaluation
    batch come first (compiling, with compile), untimed but for first_batches_seconds; the timed
    batches have other lengths, and compilations_while_timed counts any compilation they cause."""
    device = torch.device("cpu")
    non_embedding = non_embedding_parameters(model)
    collate = Collator(pad_id, args.max_seq_len)
    subset = examples[: args.model_batch_size * (args.steps + 1)]
    warm_up, timed = subset[: args.model_batch_size], subset[args.model_batch_size :]
    precision, reason = resolve_precision(requested, device)
    targs = train.Args(batch_size=args.model_batch_size, epochs=1, log_every=10**9, compile=compile)
    training, _ = train.build_training(model, targs, device, precision, args.steps + 1)
    labels = [str(i) for i in range(model.config.num_labels)]
    evaluate = partial(train.evaluate, training.eval_model, autocast=training.autocast, device=device, names=labels)
    start = time.perf_counter()
    train.train_one_epoch(training, train_loader(warm_up, args.model_batch_size, 0, collate, False), targs)
    evaluate(eval_loader(warm_up, args.model_batch_size, collate, False))
    first_batches_seconds = time.perf_counter() - start
    compiled_before = counters["frames"]["total"]
    start = time.perf_counter()
    train.train_one_epoch(training, train_loader(timed, args.model_batch_size, 0, collate, False), targs)
    train_seconds = time.perf_counter() - start
    start = time.perf_counter()
    evaluate(eval_loader(subset, args.model_batch_size, collate, False))
    eval_seconds = time.perf_counter() - start
    peak = matmul_flops(device, AUTOCAST_DTYPES[precision], size=2048, min_seconds=1.0)
    timed_lengths, lengths = [len(e["input_ids"]) for e in timed], [len(e["input_ids"]) for e in subset]
    train_flops = step_flops(timed_lengths, model.config, non_embedding, training=True) / train_seconds
    eval_flops = step_flops(lengths, model.config, non_embedding, training=False) / eval_seconds
    return {
        "precision": precision,
        "variant": variant,
        "reason": reason,
        "matmul_peak_flops": peak,
        "first_batches_seconds": first_batches_seconds,
        "compilations_while_timed": counters["frames"]["total"] - compiled_before,
        "train_samples_per_s": len(timed) / train_seconds,
        "train_tokens_per_s": sum(timed_lengths) / train_seconds,
        "train_flops": train_flops,
        "train_utilisation": train_flops / peak,
        "eval_samples_per_s": len(subset) / eval_seconds,
        "eval_tokens_per_s": sum(lengths) / eval_seconds,
        "eval_flops": eval_flops,
        "eval_utilisation": eval_flops / peak,
    }


def compile_section(args: Args, examples, pad_id: int) -> dict:
    """Eager against compiled (train.py --compile) on the BERT-base shape in --compile_precision, each
    in a fresh model: the compilation's cost (the first batches' extra seconds), the steady-state
    speed-ups, and after how many epochs on livedoor (LIVEDOOR_EPOCH: training and validation
    articles) the faster epochs have paid for the compilation. A third row, compiled without attention
    dropout, shows what the unfused attention costs."""
    torch._dynamo.reset()  # a cold start, as a new train.py process has (inductor's on-disk cache aside)
    precision = args.compile_precision
    eager = model_step(args, bert_base(), examples, pad_id, precision, "eager")
    compiled = model_step(args, bert_base(), examples, pad_id, precision, "compiled", compile=True)
    compile_seconds = compiled["first_batches_seconds"] - eager["first_batches_seconds"]
    # where the rest of the time goes: on CPUs, attention dropout keeps attention out of fused kernels
    no_dropout = bert_base(attention_dropout=0.0)
    fused = model_step(args, no_dropout, examples, pad_id, precision, "compiled, attention dropout 0", compile=True)

    def epoch_seconds(step: dict) -> float:
        train_examples, val_examples = LIVEDOOR_EPOCH
        return train_examples / step["train_samples_per_s"] + val_examples / step["eval_samples_per_s"]

    saved = epoch_seconds(eager) - epoch_seconds(compiled)
    return {
        "compile": [eager, compiled, fused],
        "compile_seconds": compile_seconds,
        "compiled_train_speedup": compiled["train_samples_per_s"] / eager["train_samples_per_s"],
        "compiled_eval_speedup": compiled["eval_samples_per_s"] / eager["eval_samples_per_s"],
        "livedoor_epoch_seconds_eager": epoch_seconds(eager),
        "livedoor_epoch_seconds_compiled": epoch_seconds(compiled),
        "compile_breaks_even_after_epochs": compile_seconds / saved if saved > 0 else "never",
    }


def small_task(records: list[dict], tokenizer, workdir: Path) -> tuple[Path, Path]:
    """A dataset of the records (train, val and test 8:1:1, in their order) and a small BERT, randomly
    initialised, for the tokenizer: what the accuracy sections train with train.py itself."""
    labels = sorted({str(r["label"]) for r in records})
    data = workdir / "dataset"
    data.mkdir(parents=True)
    write_label2id(data / "label2id.json", {label: i for i, label in enumerate(labels)})
    tenth = len(records) // 10
    splits = {"train": records[: -2 * tenth], "val": records[-2 * tenth : -tenth], "test": records[-tenth:]}
    for split, split_records in splits.items():
        write_jsonl(data / f"{split}.jsonl", [r | {"label": str(r["label"])} for r in split_records])
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=256,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=1024,
        max_position_embeddings=512,
        num_labels=len(labels),
    )
    BertForSequenceClassification(config).save_pretrained(workdir / "model")
    tokenizer.save_pretrained(workdir / "model")
    return data, workdir / "model"


def train_small(data: Path, model_dir: Path, output: Path, **options) -> tuple[dict, float]:
    """One train.py run at lr 3e-4: its config.json, val- and test-metrics.json and log.csv, and its
    wall seconds (tokenization, training and evaluation)."""
    start = time.perf_counter()
    train.main(train.Args(model_name=str(model_dir), dataset_dir=data, output_root=output, lr=3e-4, **options))
    seconds = time.perf_counter() - start
    (run_dir,) = output.glob("*/*/*/*")  # <dataset>/<model>/<date>/<time>
    run = {
        name: json.loads((run_dir / f"{name}.json").read_text()) for name in ("config", "val-metrics", "test-metrics")
    }
    with open(run_dir / "log.csv", newline="") as f:
        run["log"] = list(csv.DictReader(f))
    return run, seconds


def precision_accuracy(records: list[dict], tokenizer, workdir: Path) -> list[dict]:
    """Train a small BERT with train.py itself, once per precision, on the learnable synthetic task:
    mixed precision must not cost accuracy."""
    data, model_dir = small_task(records, tokenizer, workdir / "precision")
    rows = []
    for precision in ("fp32", "auto"):
        output = workdir / "precision" / f"outputs-{precision}"
        run, _ = train_small(data, model_dir, output, epochs=3, max_seq_len=64, precision=precision)
        seconds = [float(row["epoch_seconds"]) for row in run["log"]]
        rows.append(
            {
                "precision": run["config"]["precision_used"],
                "val_accuracy": run["val-metrics"]["accuracy"],
                "epoch_seconds": sum(seconds) / len(seconds),
            }
        )
    return rows


# What the long-documents section compares: train.py's options for each way of reading a long text.
LONG_DOCUMENT_MODES = {"head": {}, "head_tail": {"truncation": "head_tail"}, "windows 3": {"windows": 3}}


def long_documents(records: list[dict], tokenizer, max_seq_len: int, workdir: Path) -> list[dict]:
    """The same small BERT, seed and documents at a budget far below the documents' lengths, read in
    each of LONG_DOCUMENT_MODES (5 epochs, in fp32, so that only the mode differs): accuracy, macro-F1
    and wall time of each run."""
    data, model_dir = small_task(records, tokenizer, workdir / "long")
    rows = []
    for mode, options in LONG_DOCUMENT_MODES.items():
        output = workdir / "long" / f"outputs-{mode.replace(' ', '-')}"
        run, seconds = train_small(
            data, model_dir, output, epochs=5, max_seq_len=max_seq_len, precision="fp32", **options
        )
        config, val, test = run["config"], run["val-metrics"], run["test-metrics"]
        rows.append(
            {
                "mode": mode,
                "max_seq_len": config["max_seq_len_used"],
                "train_windows_per_document": config["num_windows"]["train"] / config["num_examples"]["train"],
                "val_accuracy": val["accuracy"],
                "test_accuracy": test["accuracy"],
                "test_f1": test["f1"],
                "seconds": seconds,
            }
        )
    return rows


def h100_section(model, examples, pipeline_samples_per_s: float) -> dict:
    non_embedding = non_embedding_parameters(model)
    lengths = [len(e["input_ids"]) for e in examples]
    per_sample = step_flops(lengths, model.config, non_embedding, training=True) / len(lengths)
    needed = 0.5 * H100_BF16_DENSE_PEAK / per_sample
    return {
        "h100_train_flops_per_sample": per_sample,
        "h100_samples_per_s_at_50pct": needed,
        "pipeline_keeps_up": pipeline_samples_per_s >= needed,
    }


def bert_base(attention_dropout: float = 0.1) -> BertForSequenceClassification:
    """BERT-base with the vocabulary size of tohoku-nlp BERT v3, randomly initialised."""
    torch.manual_seed(0)
    config = BertConfig(vocab_size=32768, num_labels=9, attention_probs_dropout_prob=attention_dropout)
    return BertForSequenceClassification(config)


def print_report(report: dict) -> None:
    for key, value in report.items():
        if isinstance(value, list):
            for row in value:
                print("  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
        else:
            print(f"{key:36} {value:.4g}" if isinstance(value, float) else f"{key:36} {value}")


def measure(args: Args, report: dict, started: list[str], workdir: Path) -> None:
    """Run the chosen sections in order, each adding its results to report as it completes; started
    names the sections begun, so that the last one is the one that failed."""
    started.append("setup")  # reading the texts and training the local tokenizers
    records, source = load_records(args)
    mecab, fast = local_tokenizers(records, workdir)
    report |= {"documents": len(records), "lengths_from": source, "torch_threads": torch.get_num_threads()}

    if "tokenization" in args.sections:
        started.append("tokenization")
        _, report["mecab_documents_per_s"] = time_tokenization(records, mecab, args.max_seq_len)
        examples, report["fast_documents_per_s"] = time_tokenization(records, fast, args.max_seq_len)
    else:  # the other sections run on the fast tokenizer's examples all the same
        examples = tokenize(records, fast, ["title", "body"], args.max_seq_len, segment_ids=True)

    if "pipeline" in args.sections:
        started.append("pipeline")
        report |= pipeline_section(args, records, examples, fast)

    if "model_step" in args.sections:
        started.append("model_step")
        if args.model_name:  # its own tokenizer's examples (the compile section keeps the BERT-base shape's)
            tokenizer, model = load_model(args.model_name, {str(i): i for i in range(9)})
            model_examples = tokenize(records, tokenizer, ["title", "body"], args.max_seq_len, segment_ids=True)
        else:
            tokenizer, model, model_examples = fast, bert_base(), examples
        report["model"] = args.model_name or "BERT-base shape, random weights"
        report["mean_tokens_per_example"] = sum(len(e["input_ids"]) for e in model_examples) / len(model_examples)
        if "pipeline_samples_per_s" in report:
            report |= h100_section(model, model_examples, report["pipeline_samples_per_s"])
        report["model_step"] = steps = []  # filled one precision at a time: a failure keeps the ones before
        for precision in args.precisions:
            steps.append(model_step(args, model, model_examples, tokenizer.pad_token_id, precision, "as train.py"))
        if not args.model_name:  # where the time goes: attention dropout forces PyTorch's unfused attention on CPUs
            no_dropout = bert_base(attention_dropout=0.0)
            steps.append(model_step(args, no_dropout, examples, fast.pad_token_id, "auto", "attention dropout 0"))

    if "compile" in args.sections:
        started.append("compile")
        report |= compile_section(args, examples, fast.pad_token_id)

    if "precision_accuracy" in args.sections:
        started.append("precision_accuracy")
        accuracy_records = synthetic_records(args.accuracy_records, seed=1)
        report["precision_accuracy"] = precision_accuracy(accuracy_records, fast, workdir)

    if "long_documents" in args.sections:
        started.append("long_documents")
        # Real documents if a prepared dataset is there; else synthetic ones whose label words are sparse
        # (1 word in 50), so that reading more of a text finds more of them.
        if source.endswith("train.jsonl"):
            long_records = records[: args.accuracy_records]
        else:
            long_records = synthetic_records(args.accuracy_records, seed=2, label_rate=0.02)
        report["long_documents"] = long_documents(long_records, fast, args.long_seq_len, workdir)


def one_line(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__


def main(args: Args) -> None:
    report, started = {}, []
    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    try:
        measure(args, report, started, workdir)
    except BaseException as e:  # also SystemExit (train.main exits on bad settings) and Ctrl-C
        # A late section's failure must not cost the minutes measured before it: keep them, say what failed.
        report["failed"] = {"section": started[-1], "error": one_line(e)}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print_report(report)
    print(f"-> {args.output}")
    if "failed" in report:
        failed = report["failed"]
        sys.exit(
            f"bench.py: error: section {failed['section']} failed ({failed['error']}); "
            f"the sections before it are in {args.output}"
        )


if __name__ == "__main__":
    main(ARGS)
