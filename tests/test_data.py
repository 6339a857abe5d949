"""The input pipeline: dataset checks, length-grouped batches, padding."""

import json
import random

import numpy as np
import pytest

from livedoor_classification.dataset_files import load_label2id, load_split, write_jsonl
from livedoor_classification.inputs import Collator, LengthGroupedBatchSampler, length_grouped_batches, sorted_batches

_rng = random.Random(0)
LENGTHS = [_rng.randint(5, 512) for _ in range(1001)]


def padding_fraction(batches, lengths, multiple_of=8):
    padded = sum(-(-max(lengths[i] for i in b) // multiple_of) * multiple_of * len(b) for b in batches)
    return 1 - sum(lengths) / padded


def test_every_example_once_per_epoch_and_a_new_order_each_epoch():
    epoch1 = length_grouped_batches(LENGTHS, 16, seed=42, epoch=1)
    assert sorted(i for b in epoch1 for i in b) == list(range(len(LENGTHS)))
    assert epoch1 == length_grouped_batches(LENGTHS, 16, seed=42, epoch=1)
    assert epoch1 != length_grouped_batches(LENGTHS, 16, seed=42, epoch=2)
    assert epoch1 != length_grouped_batches(LENGTHS, 16, seed=43, epoch=1)


def test_grouping_removes_most_padding():
    grouped = length_grouped_batches(LENGTHS, 16, seed=42, epoch=1)
    order = list(range(len(LENGTHS)))
    random.Random(1).shuffle(order)
    shuffled = [order[i : i + 16] for i in range(0, len(order), 16)]
    assert padding_fraction(grouped, LENGTHS) < 0.05 < 0.3 < padding_fraction(shuffled, LENGTHS)


@pytest.mark.parametrize("num_replicas", [2, 3, 4])
def test_ranks_share_the_epoch_exactly_once_with_equal_batch_counts(num_replicas):
    per_rank = [length_grouped_batches(LENGTHS, 16, 42, 3, num_replicas, rank) for rank in range(num_replicas)]
    assert len({len(batches) for batches in per_rank}) == 1
    assert all(len(b) > 0 for batches in per_rank for b in batches)
    used = [i for batches in per_rank for b in batches for i in b]
    assert sorted(used) == list(range(len(LENGTHS)))


@pytest.mark.parametrize("n, batch_size, num_replicas", [(1001, 16, 1), (33, 16, 2), (17, 8, 2), (7, 2, 4), (1, 4, 1)])
def test_sampler_length_matches_its_batches(n, batch_size, num_replicas):
    sampler = LengthGroupedBatchSampler(LENGTHS[:n], batch_size, seed=0, num_replicas=num_replicas)
    assert len(sampler) == len(list(sampler))


def test_sorted_batches_cover_every_example_once_across_ranks():
    batches = [b for rank in range(3) for b in sorted_batches(LENGTHS, 64, num_replicas=3, rank=rank)]
    assert sorted(i for b in batches for i in b) == list(range(len(LENGTHS)))


def test_collator_pads_to_multiple_of_8_within_max_len():
    examples = [
        {"input_ids": np.array([2, 5, 6, 3]), "token_type_ids": np.array([0, 0, 1, 1]), "label": 1},
        {"input_ids": np.arange(2, 13), "token_type_ids": np.zeros(11, np.int64), "label": 0},
    ]
    batch = Collator(pad_token_id=0, max_seq_len=512)(examples)
    assert batch["input_ids"].shape == (2, 16)
    assert batch["input_ids"][0].tolist() == [2, 5, 6, 3] + [0] * 12
    assert batch["attention_mask"].sum(dim=1).tolist() == [4, 11]
    assert batch["token_type_ids"][0, :4].tolist() == [0, 0, 1, 1]
    assert batch["labels"].tolist() == [1, 0]
    # never wider than the model's limit, even when that is not a multiple of 8
    assert Collator(pad_token_id=0, max_seq_len=13)(examples)["input_ids"].shape == (2, 13)


@pytest.fixture
def small_dataset(tmp_path):
    (tmp_path / "label2id.json").write_text(json.dumps({"neg": 0, "pos": 1}))
    write_jsonl(tmp_path / "train.jsonl", [{"text": "よい", "label": "pos"}, {"text": "わるい", "label": 0}])
    return tmp_path


def test_labels_may_be_ids_or_names(small_dataset):
    records = load_split(small_dataset, "train", load_label2id(small_dataset), ["text"], multi_label=False)
    assert [r["label"] for r in records] == [1, 0]


@pytest.mark.parametrize(
    "content, fields, message",
    [
        (None, ["text"], "train.jsonl not found: run `python src/prepare.py` first"),
        ("", ["text"], "train.jsonl is empty"),
        ('{"text": "a", "label": 0}\n{"text": "b", "lab', ["text"], "train.jsonl:2: not valid JSON"),
        ('{"text": "a", "label": "unknown"}\n', ["text"], "train.jsonl:1: label 'unknown' is not in label2id.json"),
        ('{"text": "a", "label": 2}\n', ["text"], "label 2 is not in label2id.json"),
        ('{"text": "a", "label": 0}\n', ["title"], "no text field 'title' (text fields here: text)"),
    ],
)
def test_dataset_errors_name_file_and_problem(small_dataset, content, fields, message):
    path = small_dataset / "train.jsonl"
    path.unlink() if content is None else path.write_text(content)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_split(small_dataset, "train", load_label2id(small_dataset), fields, multi_label=False)


def test_label2id_must_be_a_mapping_to_0_n(small_dataset):
    (small_dataset / "label2id.json").write_text('{"a": 0, "b": 2}')
    with pytest.raises(ValueError, match="distinct id 0..n-1"):
        load_label2id(small_dataset)


def test_a_prepared_dataset_opened_once_answers_as_its_files_do(tmp_path):
    """PreparedDataset (what every stage opens in main) against the functions that read each file alone."""
    from livedoor_classification.dataset_files import (
        PreparedDataset,
        dataset_fingerprint,
        label_names,
        load_label2id,
        load_split,
    )

    for split in ("train", "val", "test"):
        lines = [{"id": i, "title": f"t{i}", "body": "b", "label": ["x", "y"][i % 2]} for i in range(3)]
        (tmp_path / f"{split}.jsonl").write_text("\n".join(json.dumps(r) for r in lines) + "\n\n", encoding="utf-8")
    (tmp_path / "label2id.json").write_text('{"y": 1, "x": 0}', encoding="utf-8")
    dataset = PreparedDataset(tmp_path)
    assert dataset.fingerprint == dataset_fingerprint(tmp_path)
    assert dataset.names == label_names(load_label2id(tmp_path)) == ["x", "y"]
    assert dataset.text_fields == ["title", "body"] and dataset.multi_label is False  # no manifest: livedoor's
    assert dataset.split("val") == load_split(tmp_path, "val", load_label2id(tmp_path), ["title", "body"], False)
    assert dataset.split_size("test") == 3
    (tmp_path / "train.jsonl").write_text("", encoding="utf-8")  # hashed once: a later change is not seen
    assert dataset.fingerprint != dataset_fingerprint(tmp_path)
    (tmp_path / "dataset.json").write_text('{"text_fields": ["body"], "multi_label": true}', encoding="utf-8")
    assert (PreparedDataset(tmp_path).text_fields, PreparedDataset(tmp_path).multi_label) == (["body"], True)
