"""The input pipeline: tokenized examples (long texts cut as --truncation says), batches grouped by length, padding.

The pipeline is built for speed without extra processes: every split is tokenized once, up front;
training batches group examples of similar length so that little of each batch is padding; batches
are padded only to their own longest example (rounded up to a multiple of 8 for tensor cores).
"""

from livedoor_classification.cli import first_line

import copy
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from more_itertools import chunked
from tokenizers import Encoding
from torch.utils.data import DataLoader
from tqdm import tqdm

# How many batches are pooled and sorted by length together: large enough that neighbours in the
# pool have nearly equal lengths, small enough that batches still differ from epoch to epoch.
POOL_BATCHES = 50


@dataclass(frozen=True)
class Truncation:
    """Which tokens of a text longer than its room the model sees (train.py's options of these names).
    Only the last text field (the body) is cut this way; the first of a pair (the title) keeps its head.

    - "head": the first tokens, as every published livedoor result;
    - "tail": the last ones;
    - "head_tail": head_tokens from the start and the rest from the end: Sun et al. 2019 ("How to
      Fine-Tune BERT for Text Classification?") found this best on long IMDb reviews, with 128 + 382 of
      510 tokens, so the default head is a quarter of the room;
    - windows > 1 (with "head"): up to that many windows of the room's size, window_stride tokens apart
      (default half the room, so windows overlap by half), each with the title; every window is a
      training example, and a document's prediction averages its windows' logits (average_windows).
    """

    mode: str = "head"
    head_tokens: int | None = None
    windows: int = 1
    window_stride: int | None = None


def keep_spans(length: int, room: int, truncation: Truncation) -> list[list[tuple[int, int]]]:
    """The parts of a text of `length` tokens to keep in `room` tokens: a list of windows (one unless
    truncation.windows > 1), each a list of (start, end) spans in order."""
    if length <= room:
        return [[(0, length)]]
    if truncation.mode == "tail":
        return [[(length - room, length)]]
    if truncation.mode == "head_tail":
        head = min(room, room // 4 if truncation.head_tokens is None else truncation.head_tokens)
        return [[span for span in ((0, head), (length - room + head, length)) if span[0] < span[1]]]
    stride = min(room, truncation.window_stride or max(1, room // 2))  # never a gap between windows
    starts = list(range(0, length - room, stride))[: truncation.windows]
    if len(starts) < truncation.windows:
        starts.append(length - room)  # the last window ends with the text, and is as long as the others
    return [[(start, start + room)] for start in starts]


def windows_of(first: int, second: int | None, budget: int, truncation: Truncation):
    """For segments of `first` and (a pair) `second` tokens, each window's spans of each segment:
    the pair shares the budget as fit_pair says, and the last segment is cut as truncation says."""
    if second is None:
        return [(spans, None) for spans in keep_spans(first, budget, truncation)]
    keep_first, _ = fit_pair(first, second, budget)
    return [([(0, keep_first)], spans) for spans in keep_spans(second, budget - keep_first, truncation)]


def subset(records: list[dict], size: int | None) -> list[dict]:
    """`size` records (all for None), in their order, drawn at random with a fixed seed rather than the
    first ones, which are one class in a file sorted by label; the same whatever --seed, and nested (a
    smaller subset is part of a larger one), so that smoke runs of different sizes compare."""
    if size is None or size >= len(records):
        return records
    order = list(range(len(records)))
    random.Random(0).shuffle(order)
    return [records[i] for i in sorted(order[:size])]


def tokenize(
    records: list[dict],
    tokenizer,
    text_fields: Sequence[str],
    max_seq_len: int,
    segment_ids: bool,
    split: str = "",
    truncation: Truncation = Truncation(),
) -> list[dict]:
    """Tokenize once, before training. With two fields (title, body) they form a sentence pair; with
    three or more, the rest are joined into the second segment. Truncation is ours (fit_pair, then
    keep_spans), the same for fast (Rust) and Python (MeCab) tokenizers: the tokenizers' own
    "only_second" raises for a title longer than the budget (fast) or returns an over-long sequence
    (MeCab's Python tokenizer). A record whose second text is "" is encoded as the tokenizer encodes it
    (empty_second_dropped). segment_ids asks for token_type_ids, which models with segment embeddings
    (BERT, ELECTRA) were pre-trained with. The attention mask is rebuilt per batch.

    An example per window (one per record unless truncation.windows > 1), in record order, each with
    "document", the index of its record in the split. A record the tokenizer fails on is named in a
    one-line ValueError."""
    pair = len(text_fields) > 1
    budgets = {p: max_seq_len - tokenizer.num_special_tokens_to_add(pair=p) for p in (False, True)}
    if budgets[pair] < 2:
        raise ValueError(f"--max_seq_len {max_seq_len} leaves no room for text after the special tokens")
    steps = fast_tokenizer_steps(tokenizer, pair) if tokenizer.is_fast else python_tokenizer_steps(tokenizer)
    alone = pair and empty_second_dropped(tokenizer)
    encode = partial(encode_texts, steps, budgets=budgets, truncation=truncation, alone_if_empty=alone)
    examples, document, checked = [], 0, set()
    for batch in tqdm(list(chunked(records, 256)), desc=f"tokenize {split}", leave=False, disable=None):
        texts = [[r[field] for r in batch] for field in text_fields]
        if len(texts) > 2:
            texts = [texts[0], ["\n".join(parts) for parts in zip(*texts[1:], strict=True)]]
        try:
            encoded = encode(texts)
        except Exception as e:  # the Rust tokenizers raise bare Exceptions
            raise ValueError(tokenizer_failure(encode, batch, texts, split, e)) from None
        for i in range(len(batch)):
            layout = tuple(field[i] == "" for field in texts)  # which texts are empty
            if layout not in checked:
                check_against_tokenizer(tokenizer, encode, [field[i] for field in texts], max_seq_len)
                checked.add(layout)
        for record, windows in zip(batch, encoded, strict=True):
            for input_ids, token_type_ids in windows:
                example = {"input_ids": np.asarray(input_ids, dtype=np.int64)}
                if segment_ids:
                    example["token_type_ids"] = np.asarray(token_type_ids, dtype=np.int64)
                example["label"] = record["label"]
                example["id"] = record.get("id", document)  # the record's own id, or its line in the split
                example["document"] = document
                examples.append(example)
            document += 1
    return examples


def check_against_tokenizer(tokenizer, encode, texts: list[str], max_seq_len: int) -> None:
    """The start of a record's texts, short enough not to be cut, must come out exactly as the tokenizer's
    own `tokenizer(a, b)`: for a split's first record with each layout of empty and non-empty texts, it
    stops a run whose special tokens we placed wrongly (as every title once was, and a title without
    body once was), whatever the lengths of the real texts."""
    for chars in (32, 16, 8, 4, 2, 1):
        short = [text[:chars] for text in texts]
        [[(input_ids, token_type_ids), *more]] = encode([[text] for text in short])
        if not more and len(input_ids) < max_seq_len:
            own = tokenizer(*short, return_token_type_ids=True)
            if (own["input_ids"], own["token_type_ids"]) != (input_ids, token_type_ids):
                where = f"{tokenizer.name_or_path}: its tokenizer's special tokens are not where we put them"
                raise ValueError(f"{where}; please report this model at the project's issues")
            return


def encode_texts(
    steps, texts: list[list[str]], budgets: dict[bool, int], truncation: Truncation, alone_if_empty: bool = False
) -> list[list]:
    """Per text (or pair), its windows as (input_ids, token_type_ids): each segment is tokenized
    without special tokens, cut (windows_of) to the budget of a single text or a pair (budgets[pair]),
    then given the model's special tokens and segment ids. alone_if_empty: a pair whose second text is ""
    is its first text alone. steps: (token_ids, add_special_tokens) of python_tokenizer_steps or
    fast_tokenizer_steps."""
    token_ids, add_special_tokens = steps
    segments = [token_ids(field) for field in texts]
    if len(segments) == 1:
        segments.append([None] * len(segments[0]))
    elif alone_if_empty:
        segments[1] = [None if text == "" else ids for text, ids in zip(texts[1], segments[1], strict=True)]
    encoded = []
    for first, second in zip(*segments, strict=True):
        lengths = (len(first), None if second is None else len(second))
        windows = windows_of(*lengths, budgets[second is not None], truncation)
        encoded.append([add_special_tokens(cut(first, a), None if b is None else cut(second, b)) for a, b in windows])
    return encoded


def empty_second_dropped(tokenizer) -> bool:
    """Whether the tokenizer encodes a pair whose second text is "" as the first text alone. transformers'
    fast tokenizers do (`if text_pair`), its Python ones (MeCab's) give a pair with an empty second segment
    (`if text_pair is not None`): asked of the tokenizer, not inferred from its class."""
    return tokenizer("a", "")["input_ids"] == tokenizer("a")["input_ids"]


def python_tokenizer_steps(tokenizer):
    """Python tokenizers (BertJapaneseTokenizer over MeCab): token ids, then prepare_for_model."""

    def token_ids(texts: list[str]) -> list[list[int]]:
        # tokenize + convert, not encode: encode warns about every text longer than the model, before we cut it
        return [tokenizer.convert_tokens_to_ids(tokenizer.tokenize(text)) for text in texts]

    def add_special_tokens(first: list[int], second: list[int] | None) -> tuple[list[int], list[int]]:
        out = tokenizer.prepare_for_model(
            first, second, add_special_tokens=True, return_token_type_ids=True, return_attention_mask=False
        )
        return out["input_ids"], out["token_type_ids"]

    return token_ids, add_special_tokens


def fast_tokenizer_steps(tokenizer, pair: bool):
    """Rust tokenizers: token ids from the backend, batched, then the special tokens and segment ids of
    the backend's own post-processor (special_token_template). We cut plain id lists rather than
    Encodings because Encoding.truncate keeps every cut-off piece as an "overflowing" Encoding, which
    post-processing then pairs up: 100 times slower for --truncation head_tail."""
    backend = copy.deepcopy(tokenizer.backend_tokenizer)  # a tokenizer.json may have been saved with
    backend.no_truncation()  # truncation or padding on: we cut ourselves, without changing the caller's
    backend.no_padding()
    # a pair's template, and a single text's for records without a second text (empty_second_dropped)
    templates = {p: special_token_template(backend, p, set(tokenizer.all_special_ids)) for p in {False, pair}}

    def token_ids(texts: list[str]) -> list[list[int]]:
        return [encoding.ids for encoding in backend.encode_batch(texts, add_special_tokens=False)]

    def add_special_tokens(first: list[int], second: list[int] | None) -> tuple[list[int], list[int]]:
        ids, type_ids = [], []
        for token, segment, type_id in templates[second is not None]:
            part = [token] if segment is None else (first, second)[segment]
            ids += part
            type_ids += [type_id] * len(part)
        return ids, type_ids

    return token_ids, add_special_tokens


def special_token_template(backend, pair: bool, special_ids: set[int]) -> list[tuple[int, int | None, int]]:
    """The post-processor's layout as (token id, segment, type id) items: segment None for a token it adds,
    0 or 1 for where the first or second segment goes. Read by post-processing probe segments made of an
    ordinary token, 1 token for the first segment and 2 for the second, so that each content position
    belongs to one segment even where a template puts them side by side. The probe's own id tells content
    from added tokens: Encoding.sequence_ids cannot, as tokenizers 0.23 leaves the first segment's None
    after post_process (which made the whole title one special token, issue #20)."""
    probe = ordinary_token(backend, special_ids)
    segments = [probe, Encoding.merge([probe, probe])] if pair else [probe]
    merged = backend.post_process(*segments, add_special_tokens=True)
    template, seen = [], 0
    for token, type_id in zip(merged.ids, merged.type_ids, strict=True):
        if token != probe.ids[0]:
            template.append((token, None, type_id))
            continue
        segment = min(seen, 1)  # the first content token is the first segment's, the next two the second's
        if seen in (0, 1):
            template.append((token, segment, type_id))
        seen += 1
    if seen != (3 if pair else 1):
        raise ValueError("the tokenizer's post-processor does not keep its segments whole: unsupported")
    return template


def ordinary_token(backend, special_ids: set[int]) -> Encoding:
    """An Encoding of one token that is not special: the first in the vocabulary that a text encodes to."""
    for token_id in range(backend.get_vocab_size()):
        if token_id in special_ids:
            continue
        encoding = backend.encode(backend.decode([token_id]), add_special_tokens=False)
        if encoding.ids == [token_id]:
            return encoding
    raise ValueError("the tokenizer encodes no text to a single ordinary token: unsupported")


def cut(ids: list[int], spans: list[tuple[int, int]]) -> list[int]:
    return [i for start, end in spans for i in ids[start:end]]


def fit_pair(first: int, second: int, budget: int) -> tuple[int, int]:
    """How many tokens of each segment to keep within `budget`: each segment is sure of half of it,
    and a segment shorter than its half gives the rest to the other. So a title is kept whole unless
    it is longer than half the budget, and then the body still gets the other half."""
    keep_first = min(first, max(budget - second, budget // 2))
    return keep_first, min(second, budget - keep_first)


def tokenizer_failure(encode, batch: list[dict], texts: list[list[str]], split: str, error: Exception) -> str:
    """Find the record of a failed batch that the tokenizer fails on, for a one-line message."""
    for i, record in enumerate(batch):
        try:
            encode([[field[i]] for field in texts])
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
            if key in ("label", "id", "document"):  # not model inputs
                continue
            padded = np.full((len(examples), width), self.pad_token_id if key == "input_ids" else 0, np.int64)
            for row, example in zip(padded, examples, strict=True):
                row[: len(example[key])] = example[key]
            batch[key] = torch.from_numpy(padded)
        # ids (single-label) or multi-hot float rows (multi-label), through one array: torch.tensor over a
        # list of numpy rows copies them element by element
        batch["labels"] = torch.from_numpy(np.array([e["label"] for e in examples]))
        return batch


def train_loader(
    examples: list[dict],
    batch_size: int,
    seed: int,
    collate: Collator,
    pin_memory: bool,
    num_replicas: int = 1,
    rank: int = 0,
) -> DataLoader:
    """Length-grouped, shuffled anew each epoch (call loader.batch_sampler.set_epoch). No worker
    processes: batches come from pre-tokenized arrays far faster than a GPU consumes them, and
    workers would only add start-up time and memory."""
    sampler = LengthGroupedBatchSampler([len(e["input_ids"]) for e in examples], batch_size, seed, num_replicas, rank)
    return DataLoader(examples, batch_sampler=sampler, collate_fn=collate, pin_memory=pin_memory)


def eval_loader(
    examples: list[dict], batch_size: int, collate: Collator, pin_memory: bool, num_replicas: int = 1, rank: int = 0
) -> DataLoader:
    batches = sorted_batches([len(e["input_ids"]) for e in examples], batch_size, num_replicas, rank)
    return DataLoader(examples, batch_sampler=batches, collate_fn=collate, pin_memory=pin_memory)


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    # non_blocking copies from pinned memory overlap with the GPU's work instead of stalling it
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}
