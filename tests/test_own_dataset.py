"""A user's own data through the whole pipeline, with the README's commands and nothing else: prepare.py
writes datasets/<name>/ with a manifest, and every later stage finds the text fields and keeps the
dataset's runs and results apart from every other dataset's."""

import json
import shutil

import pytest

from conftest import ROOT, run_dirs, run_script

TINY = ["--epochs", "2", "--max_seq_len", "32", "--batch_size", "8", "--lr", "3e-3"]


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A fresh copy of the repository with the shipped example CSV and no prepared data."""
    repo = tmp_path_factory.mktemp("repo")
    shutil.copytree(ROOT / "src", repo / "src")
    (repo / "datasets").mkdir()
    shutil.copy(ROOT / "datasets" / "reviews.csv", repo / "datasets")
    return repo


def in_repo(repo, script, *argv):
    return run_script(repo / "src" / script, *argv, cwd=repo)


def test_two_datasets_in_one_outputs_folder_give_two_separate_tables(repo, bert_dir, tmp_path):
    """A TSV with a single text column, and pre-split JSONL with integer labels, in one outputs folder. (The
    README's walkthrough of the shipped CSV runs in tests/test_readme_examples.py.)"""
    tsv = tmp_path / "news.tsv"
    rows = [
        f"{i}\t{'サッカーの試合' if i % 2 else '新しいスマートフォン'}の話題 {i}\t{'sports' if i % 2 else 'it'}"
        for i in range(30)
    ]
    tsv.write_text("id\tbody\tcategory\n" + "\n".join(rows) + "\n", encoding="utf-8")
    in_repo(
        repo, "prepare.py", "--input", tsv, "--text_columns", "body", "--label_column", "category", "--name", "news"
    )
    for split, n in (("train", 24), ("val", 6), ("test", 6)):
        lines = [
            json.dumps(
                {"title": f"{'良い' if i % 3 else '悪い'}商品 {i}", "body": "本文", "label": 1 + i % 3},
                ensure_ascii=False,
            )
            for i in range(n)
        ]
        (tmp_path / f"{split}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    splits = [f"--{split}={tmp_path / split}.jsonl" for split in ("train", "val", "test")]
    columns = ["--text_columns", "title", "body", "--label_column", "label"]
    in_repo(repo, "prepare.py", *splits, *columns, "--name", "stars")
    assert json.loads((repo / "datasets" / "stars" / "label2id.json").read_text()) == {"1": 0, "2": 1, "3": 2}
    for name in ("news", "stars"):
        in_repo(repo, "train.py", "--dataset", name, "--model_name", bert_dir, *TINY)
        in_repo(repo, "baseline.py", "--dataset", name)
        in_repo(repo, "aggregate.py", "--dataset", name)
    tables = {name: (repo / "results" / name / "results.md").read_text() for name in ("news", "stars")}
    for name, table in tables.items():  # each table: its own dataset's runs only, the baseline included
        assert table.count(f"| {bert_dir.name} |") == 1 and table.count("| tfidf-char-linear |") == 1, name
        fingerprint = json.loads((repo / "datasets" / name / "dataset.json").read_text())["fingerprint"]
        assert fingerprint[:12] in table and all(
            json.loads((repo / "datasets" / other / "dataset.json").read_text())["fingerprint"][:12] not in table
            for other in tables
            if other != name
        )
    stars_run = next(p for p in run_dirs(repo / "outputs") if p.parent.parent.parent.name == "stars")
    config = json.loads((stars_run / "config.json").read_text())
    assert config["text_fields"] == ["title", "body"] and config["label2id"] == {"1": 0, "2": 1, "3": 2}
