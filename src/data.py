"""The input pipeline that feeds the model (the files it reads are splits.py's).

The pipeline is built for speed without extra processes: every split is tokenized once, up front;
training batches group examples of similar length so that little of each batch is padding; batches
are padded only to their own longest example (rounded up to a multiple of 8 for tensor cores).
"""

import copy
import math
import random
from collections.abc import Iterator, Sequence
from functools import partial

import numpy as np
import torch
from more_itertools import chunked
from torch.utils.data import DataLoader
from tqdm import tqdm

from cli import first_line

# How many batches are pooled and sorted by length together: large enough that neighbours in the
# pool have nearly equal lengths, small enough that batches still differ from epoch to epoch.
POOL_BATCHES = 50


def tokenize(
    records: list[dict], tokenizer, text_fields: Sequence[str], max_seq_len: int, segment_ids: bool, split: str = ""
) -> list[dict]:
    """Tokenize once, before training. With two fields (title, body) they form a sentence pair; with
    three or more, the rest are joined into the second segment. Truncation is ours (fit_pair), the
    same for fast (Rust) and Python (MeCab) tokenizers: the tokenizers' own "only_second" raises for a
    title longer than the budget (fast) or returns an over-long sequence (MeCab's Python tokenizer).
    segment_ids asks for token_type_ids, which models with segment embeddings (BERT, ELECTRA) were
    pre-trained with. The attention mask is rebuilt per batch. A record the tokenizer fails on is
    named in a one-line ValueError."""
    budget = max_seq_len - tokenizer.num_special_tokens_to_add(pair=len(text_fields) > 1)
    if budget < 2:
        raise ValueError(f"--max_seq_len {max_seq_len} leaves no room for text after the special tokens")
    if tokenizer.is_fast:
        backend = copy.deepcopy(tokenizer.backend_tokenizer)  # a tokenizer.json may have been saved with
        backend.no_truncation()  # truncation or padding on: we cut ourselves, without changing the caller's
        backend.no_padding()
        encode = partial(encode_fast, backend)
    else:
        encode = partial(encode_python, tokenizer)
    examples = []
    for batch in tqdm(list(chunked(records, 256)), desc=f"tokenize {split}", leave=False, disable=None):
        texts = [[r[field] for r in batch] for field in text_fields]
        if len(texts) > 2:
            texts = [texts[0], ["\n".join(parts) for parts in zip(*texts[1:], strict=True)]]
        try:
            encoded = encode(texts, budget)
        except Exception as e:  # the Rust tokenizers raise bare Exceptions
            raise ValueError(tokenizer_failure(encode, batch, texts, budget, split, e)) from None
        for record, (input_ids, token_type_ids) in zip(batch, encoded, strict=True):
            example = {"input_ids": np.asarray(input_ids, dtype=np.int64)}
            if segment_ids:
                example["token_type_ids"] = np.asarray(token_type_ids, dtype=np.int64)
            example["label"] = record["label"]
            example["id"] = record.get("id", len(examples))  # the record's own id, or its line in the split
            examples.append(example)
    return examples


def fit_pair(first: int, second: int, budget: int) -> tuple[int, int]:
    """How many tokens of each segment to keep within `budget`: each segment is sure of half of it,
    and a segment shorter than its half gives the rest to the other. So a title is kept whole unless
    it is longer than half the budget, and then the body still gets the other half."""
    keep_first = min(first, max(budget - second, budget // 2))
    return keep_first, min(second, budget - keep_first)


def encode_fast(backend, texts: list[list[str]], budget: int) -> list[tuple[list[int], list[int]]]:
    """Rust tokenizers: encode each segment without special tokens, cut, then let the tokenizer's own
    post-processor add the special tokens and segment ids of the model's template."""
    segments = [backend.encode_batch(field, add_special_tokens=False) for field in texts]
    encoded = []
    for first, *second in zip(*segments, strict=True):
        second = second[0] if second else None
        keep_first, keep_second = fit_pair(len(first), len(second) if second else 0, budget)
        first.truncate(keep_first)
        if second is not None:
            second.truncate(keep_second)
        merged = backend.post_process(first, second, add_special_tokens=True)
        encoded.append((merged.ids, merged.type_ids))
    return encoded


def encode_python(tokenizer, texts: list[list[str]], budget: int) -> list[tuple[list[int], list[int]]]:
    """Python tokenizers (BertJapaneseTokenizer over MeCab): the same, through prepare_for_model."""
    # tokenize + convert, not encode: encode warns about every text longer than the model, before we cut it
    segments = [[tokenizer.convert_tokens_to_ids(tokenizer.tokenize(text)) for text in field] for field in texts]
    encoded = []
    for first, *second in zip(*segments, strict=True):
        second = second[0] if second else None
        keep_first, keep_second = fit_pair(len(first), len(second) if second else 0, budget)
        pair = (first[:keep_first], second[:keep_second] if second is not None else None)
        out = tokenizer.prepare_for_model(*pair, add_special_tokens=True, return_token_type_ids=True,
                                          return_attention_mask=False)  # fmt: skip
        encoded.append((out["input_ids"], out["token_type_ids"]))
    return encoded


def tokenizer_failure(encode, batch: list[dict], texts: list[list[str]], budget: int, split: str,
                      error: Exception) -> str:  # fmt: skip
    """Find the record of a failed batch that the tokenizer fails on, for a one-line message."""
    for i, record in enumerate(batch):
        try:
            encode([[field[i]] for field in texts], budget)
        except Exception as e:
            where = f"id {record['id']}" if "id" in record else f"line {i + 1} of its batch"
            return f"{split}.jsonl: the tokenizer failed on the record with {where}: {first_line(e)}"
    return f"{split}.jsonl: the tokenizer failed: {first_line(error)}"


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
        global_batches += chunked(by_length, global_size)
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
    return list(chunked(order, batch_size))[rank::num_replicas]


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
            if key in ("label", "id"):  # not model inputs
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
