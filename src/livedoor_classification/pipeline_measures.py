"""How fast an input pipeline delivers batches and how much of them is padding, measured on any DataLoader
of input_ids, attention_mask and labels; and the pipeline this template avoids (naive_loader), to compare.

    samples_per_second(loader), padding_fraction(loader)
    random_batches_padding(examples, batch_size)   # the padding of shuffled, ungrouped batches of the same examples
"""

import math
import random
import time

import torch
from torch.utils.data import DataLoader


def padding_fraction(loader: DataLoader) -> float:
    """The share of the loader's token positions that are padding (attention_mask 0), over one epoch."""
    real = padded = 0
    for batch in loader:
        real += int(batch["attention_mask"].sum())
        padded += batch["attention_mask"].numel()
    return 1 - real / padded


def samples_per_second(loader: DataLoader, epochs: int = 3) -> float:
    """Batches drawn as a training loop draws them, each epoch reshuffled where the sampler can be."""
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
