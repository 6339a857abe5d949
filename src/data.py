"""Datasets on disk (JSONL + label2id.json) and the input pipeline that feeds the model.

The pipeline is built for speed without extra processes: every split is tokenized once, up front;
training batches group examples of similar length so that little of each batch is padding; batches
are padded only to their own longest example (rounded up to a multiple of 8 for tensor cores).
"""

import json
import math
import random
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

# How many batches are pooled and sorted by length together: large enough that neighbours in the
# pool have nearly equal lengths, small enough that batches still differ from epoch to epoch.
POOL_BATCHES = 50


def write_jsonl(path: Path, records: Sequence[dict]) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")


def read_jsonl(path: Path) -> list[dict]:
    records = []
    with open(path, encoding="utf-8") as f:
        for line_number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                message = f"{path}:{line_number}: not valid JSON ({e.msg}); run `python src/prepare.py` again"
                raise ValueError(message) from None
            if not isinstance(record, dict):
                raise ValueError(f"{path}:{line_number}: expected a JSON object per line")
            records.append(record)
    return records


def write_label2id(path: Path, label2id: dict[str, int]) -> None:
    path.write_text(json.dumps(label2id, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def load_label2id(dataset_dir: Path) -> dict[str, int]:
    path = dataset_dir / "label2id.json"
    if not path.is_file():
        raise ValueError(f"{path} not found: run `python src/prepare.py` first (or give --dataset_dir)")
    try:
        label2id = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e.msg}); run `python src/prepare.py` again") from None
    if not isinstance(label2id, dict) or sorted(label2id.values()) != list(range(len(label2id))):
        raise ValueError(f"{path}: must map each label name to a distinct id 0..n-1")
    return label2id


def load_split(dataset_dir: Path, split: str, label2id: dict[str, int], text_fields: Sequence[str]) -> list[dict]:
    """Records of <dataset_dir>/<split>.jsonl, checked: the text fields are strings and each label
    (an id, or a label name from label2id.json) is known."""
    path = dataset_dir / f"{split}.jsonl"
    if not path.is_file():
        raise ValueError(f"{path} not found: run `python src/prepare.py` first (or give --dataset_dir)")
    records = read_jsonl(path)
    if not records:
        raise ValueError(f"{path} is empty: every split needs at least one example")
    ids = set(label2id.values())
    for line_number, record in enumerate(records, start=1):
        for field in text_fields:
            if not isinstance(record.get(field), str):
                known = ", ".join(k for k, v in record.items() if isinstance(v, str))
                raise ValueError(f"{path}:{line_number}: no text field {field!r} (text fields here: {known})")
        label = record.get("label")
        label = label2id.get(label) if isinstance(label, str) else label
        if label not in ids or isinstance(label, bool):
            raise ValueError(f"{path}:{line_number}: label {record.get('label')!r} is not in label2id.json")
        record["label"] = label
    return records


def tokenize(
    records: list[dict], tokenizer, text_fields: Sequence[str], max_seq_len: int, segment_ids: bool
) -> list[dict]:
    """Tokenize once, before training. With two fields (title, body) they form a sentence pair and only
    the second is truncated, so the title always survives; with three or more, the rest are joined
    into the second segment. segment_ids asks for token_type_ids, which models with segment embeddings
    (BERT, ELECTRA) were pre-trained with; tokenizers do not always return them by default
    (BertJapaneseTokenizer in transformers 5 does not). The attention mask is rebuilt per batch."""
    truncation = "only_second" if len(text_fields) > 1 else True
    examples = []
    chunk = 256
    for start in tqdm(range(0, len(records), chunk), desc="tokenize", unit_scale=chunk, leave=False):
        batch = records[start : start + chunk]
        texts = [[r[field] for r in batch] for field in text_fields]
        if len(texts) > 2:
            texts = [texts[0], ["\n".join(parts) for parts in zip(*texts[1:], strict=True)]]
        encoded = tokenizer(
            *texts, truncation=truncation, max_length=max_seq_len,
            return_token_type_ids=segment_ids, return_attention_mask=False,
        )  # fmt: skip
        for i, record in enumerate(batch):
            example = {key: np.asarray(values[i], dtype=np.int64) for key, values in encoded.items()}
            example["label"] = record["label"]
            examples.append(example)
    return examples


def length_grouped_batches(
    lengths: Sequence[int], batch_size: int, seed: int, epoch: int, num_replicas: int = 1, rank: int = 0
) -> list[list[int]]:
    """This rank's training batches for one epoch: a fresh seeded shuffle, then pools of POOL_BATCHES
    batches sorted by length, cut into global batches of batch_size * num_replicas that are dealt out
    round-robin to the ranks. Every example is used exactly once per epoch, every rank gets the same
    number of batches, and every rank computes the same shuffle from (seed, epoch)."""
    rng = random.Random(seed * 1_000_003 + epoch)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    global_size = batch_size * num_replicas
    pool = global_size * POOL_BATCHES
    global_batches = []
    for start in range(0, len(order), pool):
        by_length = sorted(order[start : start + pool], key=lambda i: -lengths[i])
        global_batches += [by_length[j : j + global_size] for j in range(0, len(by_length), global_size)]
    # A last global batch too small to give every rank an example joins the one before it.
    if len(global_batches) > 1 and len(global_batches[-1]) < num_replicas:
        last = global_batches.pop()
        global_batches[-1] += last
    rng.shuffle(global_batches)
    return [batch[rank::num_replicas] for batch in global_batches]


class LengthGroupedBatchSampler:
    """Batch sampler for DataLoader; call set_epoch() before each epoch for a new shuffle."""

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int, num_replicas: int = 1, rank: int = 0):
        self.lengths, self.batch_size, self.seed = lengths, batch_size, seed
        self.num_replicas, self.rank, self.epoch = num_replicas, rank, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[list[int]]:
        args = (self.lengths, self.batch_size, self.seed, self.epoch, self.num_replicas, self.rank)
        return iter(length_grouped_batches(*args))

    def __len__(self) -> int:
        global_batches = math.ceil(len(self.lengths) / (self.batch_size * self.num_replicas))
        last = len(self.lengths) - (global_batches - 1) * self.batch_size * self.num_replicas
        return global_batches - (global_batches > 1 and last < self.num_replicas)


def sorted_batches(lengths: Sequence[int], batch_size: int, num_replicas: int = 1, rank: int = 0) -> list[list[int]]:
    """Evaluation batches: examples sorted by length so that padding is minimal; order does not
    matter for metrics. Under DDP each rank takes every num_replicas-th batch."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    return batches[rank::num_replicas]


class Collator:
    """Pads a list of tokenized examples into tensors, to the batch's longest example rounded up to
    a multiple of 8 (tensor cores work on tiles of 8), never beyond max_seq_len."""

    def __init__(self, pad_token_id: int, max_seq_len: int, multiple_of: int = 8):
        self.pad_token_id, self.max_seq_len, self.multiple_of = pad_token_id, max_seq_len, multiple_of

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        lengths = np.array([len(e["input_ids"]) for e in examples])
        longest = int(lengths.max())
        # round up to a multiple of 8, but not past max_seq_len (the model's position limit)
        width = max(longest, min(math.ceil(longest / self.multiple_of) * self.multiple_of, self.max_seq_len))
        batch = {"attention_mask": torch.from_numpy((np.arange(width) < lengths[:, None]).astype(np.int64))}
        for key in examples[0]:
            if key == "label":
                continue
            padded = np.full((len(examples), width), self.pad_token_id if key == "input_ids" else 0, np.int64)
            for row, example in zip(padded, examples, strict=True):
                row[: len(example[key])] = example[key]
            batch[key] = torch.from_numpy(padded)
        batch["labels"] = torch.tensor([e["label"] for e in examples])
        return batch


def train_loader(examples: list[dict], batch_size: int, seed: int, collate: Collator, pin_memory: bool,
                 num_replicas: int = 1, rank: int = 0) -> DataLoader:  # fmt: skip
    """Length-grouped, shuffled anew each epoch (call loader.batch_sampler.set_epoch). No worker
    processes: batches come from pre-tokenized arrays far faster than a GPU consumes them, and
    workers would only add start-up time and memory."""
    sampler = LengthGroupedBatchSampler([len(e["input_ids"]) for e in examples], batch_size, seed, num_replicas, rank)
    return DataLoader(examples, batch_sampler=sampler, collate_fn=collate, pin_memory=pin_memory)


def eval_loader(examples: list[dict], batch_size: int, collate: Collator, pin_memory: bool,
                num_replicas: int = 1, rank: int = 0) -> DataLoader:  # fmt: skip
    batches = sorted_batches([len(e["input_ids"]) for e in examples], batch_size, num_replicas, rank)
    return DataLoader(examples, batch_sampler=batches, collate_fn=collate, pin_memory=pin_memory)
