"""Results that are safe to open and never half-replaced: user-supplied names escaped for CSV and
Markdown, and a results folder that is always one complete set, whatever happens mid-write."""

import csv
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import aggregate
import test_results
from conftest import ROOT
from livedoor_classification import results_plots, results_tables
from test_results import DATASET, FINGERPRINT, make_run, saved_figures

# A spreadsheet runs a cell that starts with = + - @ tab or CR as a formula (OWASP: CSV injection); in
# Markdown a | ends a table cell and <script> is HTML.
FORMULA = "=cmd|' /C calc'!A0"
SCRIPT = "<script>alert(1)</script>"
MODEL = "+SUM(1,2)|<b>$5 \\frac$</b>"  # $...$: a formula to matplotlib
DATASET_NAME = "-2+3|<i>set"
TEXT_FIELD = "@title"
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def read_csv(path: Path) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def html_text(text: str) -> str:
    """Text as a CommonMark renderer writes it in HTML."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def test_names_are_escaped_for_csv_and_markdown_and_left_as_they_are_elsewhere(tmp_path, monkeypatch):
    monkeypatch.setattr(test_results, "LABELS", {FORMULA: 0, SCRIPT: 1})  # make_run's label2id and predictions
    settings = {"dataset_dir": f"/data/{DATASET_NAME}", "text_fields": [TEXT_FIELD]}
    make_run(tmp_path, MODEL, 3e-5, 1, 0.9, 0.9, "00-00-00.000000", **settings)
    make_run(tmp_path, "org/bert", 3e-5, 1, 0.8, 0.8, "00-00-00.000000", **settings)
    figures = saved_figures(monkeypatch)
    aggregate.main(aggregate.Args(output_root=tmp_path, results_dir=tmp_path / "results"))
    results = tmp_path / "results" / DATASET

    # CSV, read back as a spreadsheet or pandas would: the names with a quote in front where they would be
    # a formula; numbers as they are (org/bert's difference from the best row is negative).
    per_class = read_csv(results / f"per_class_{FINGERPRINT[:12]}.csv")
    assert [row["class"] for row in per_class] == [f"'{FORMULA}", SCRIPT]
    runs = {row["model"]: row for row in read_csv(results / "all.csv")}
    assert set(runs) == {f"'{MODEL}", "org/bert"}
    assert runs["org/bert"]["dataset"] == f"'{DATASET_NAME}" and runs["org/bert"]["text_fields"] == f"'{TEXT_FIELD}"
    best = {row["model"]: row for row in read_csv(results / "best.csv")}
    assert float(best["org/bert"]["f1_vs_best"]) == pytest.approx(-0.1)
    formulas = [
        (name, column, value)
        for name in ("all.csv", "best.csv", f"per_class_{FINGERPRINT[:12]}.csv")
        for row in read_csv(results / name)
        for column, value in row.items()
        if value.startswith(FORMULA_START) and not is_number(value)
    ]
    assert formulas == []

    # Markdown, rendered as GitHub does (CommonMark and its tables): every name whole in its cell, no HTML.
    markdown_it = pytest.importorskip("markdown_it")
    table = (results / "results.md").read_text()
    html = markdown_it.MarkdownIt("commonmark").enable("table").render(table)
    assert "<script>" not in html and "<b>" not in html and "<i>" not in html
    for name in (FORMULA, SCRIPT, MODEL):
        assert f"<td>{html_text(name)}</td>" in html, name
    assert f"<h2>{html_text(DATASET_NAME)} (dataset {FINGERPRINT[:12]})</h2>" in html
    for rows in re.findall(r"(?:^\|.*\n)+", table, flags=re.MULTILINE):  # each table's rows: as many cells
        cells = {len(re.sub(r"\\.", "", row).split("|")) for row in rows.splitlines()}  # \| is no separator
        assert len(cells) == 1, rows

    # Elsewhere the names are as given: on the confusion matrix's axes.
    (axes,) = figures[-1].axes
    assert [t.get_text() for t in axes.get_xticklabels()] == [FORMULA, SCRIPT]


def test_a_cell_is_neutralised_only_where_a_spreadsheet_would_run_it():
    for text in ("=1+2", "+1+2", "-2+3", "@SUM(A1)", "\tx", "\rx", "-", "+", "=", "-inf"):
        assert results_tables.spreadsheet_cell(text) == "'" + text
    for value in ("-1", "+1", "-0.5", "-1e-05", "a=b", "bert", "", -0.5, 3, None, True):
        assert results_tables.spreadsheet_cell(value) == value


def snapshot(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in folder.iterdir()}


def aggregate_in_a_process(outputs: Path, results: Path, after_best_csv: str) -> subprocess.Popen:
    """aggregate.py in a process of its own that sends itself a signal (SIGSTOP) when it has written
    best.csv: the other files of its set are still to come."""
    code = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "import aggregate\n"
        "write_text = aggregate.write_text\n"
        "def write_then_signal(path, text):\n"
        "    write_text(path, text)\n"
        "    if path.name == 'best.csv':\n"
        "        os.kill(os.getpid(), getattr(signal, sys.argv[1]))\n"
        "aggregate.write_text = write_then_signal\n"
        "aggregate.main(aggregate.Args(output_root=Path(sys.argv[2]), results_dir=Path(sys.argv[3])))\n"
    )
    argv = [sys.executable, "-c", code, after_best_csv, str(outputs), str(results)]
    return subprocess.Popen(argv, cwd=ROOT / "src", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def other_entries(results: Path) -> set[str]:
    """What results/ holds beside the dataset's folder: the staging folders of aggregate.py."""
    return {path.name for path in results.iterdir()} - {DATASET}


@pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="needs POSIX signals")
def test_aggregate_killed_mid_write_leaves_the_previous_set_and_the_next_run_removes_the_debris(tmp_path):
    outputs, results = tmp_path / "outputs", tmp_path / "results"
    make_run(outputs, "org/bert", 3e-5, 1, 0.9, 0.9, "00-00-00.000000")
    aggregate.main(aggregate.Args(output_root=outputs, results_dir=results))
    previous = snapshot(results / DATASET)
    assert other_entries(results) == set()
    make_run(outputs, "org/other", 3e-5, 1, 0.8, 0.8, "00-00-00.000000")  # a new set has two rows

    # Stopped mid-write, then killed: the folder holds a complete set all the while.
    stopped = aggregate_in_a_process(outputs, results, "SIGSTOP")
    try:
        _, status = os.waitpid(stopped.pid, os.WUNTRACED)
        assert os.WIFSTOPPED(status), status
        assert snapshot(results / DATASET) == previous  # not a new best.csv beside the old results.md
        live = other_entries(results)
        assert live  # its staging folder

        aggregate.main(aggregate.Args(output_root=outputs, results_dir=results))  # meanwhile, another run
        assert other_entries(results) == live  # a live process's staging folder is left alone
        current = snapshot(results / DATASET)
        assert len(read_csv(results / DATASET / "best.csv")) == 2
    finally:
        stopped.kill()
    assert stopped.wait(timeout=60) == -signal.SIGKILL
    assert snapshot(results / DATASET) == current and other_entries(results) == live  # the debris of a kill

    aggregate.main(aggregate.Args(output_root=outputs, results_dir=results))
    assert other_entries(results) == set()  # the next run removes it
    assert snapshot(results / DATASET) == current


def test_a_fault_mid_write_is_one_line_and_leaves_the_previous_set(tmp_path, monkeypatch):
    outputs, results = tmp_path / "outputs", tmp_path / "results"
    make_run(outputs, "org/bert", 3e-5, 1, 0.9, 0.9, "00-00-00.000000")
    aggregate.main(aggregate.Args(output_root=outputs, results_dir=results))
    previous = snapshot(results / DATASET)
    make_run(outputs, "org/other", 3e-5, 1, 0.8, 0.8, "00-00-00.000000")
    write_text = aggregate.write_text

    def write_then_fail(path, text):
        write_text(path, text)
        if path.name == "best.csv":
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(aggregate, "write_text", write_then_fail)
    with pytest.raises(SystemExit) as error:
        aggregate.main(aggregate.Args(output_root=outputs, results_dir=results))
    assert error.value.code == (
        f"aggregate.py: error: cannot write the results to {results / DATASET} (No space left on device): "
        "give --results_dir a folder you may write to, on a disk with room"
    )
    assert snapshot(results / DATASET) == previous and other_entries(results) == set()


def test_the_new_set_replaces_the_old_one_whole_and_keeps_the_files_of_others(tmp_path):
    """A confusion matrix of a dataset no longer in the table goes with the old set; a file aggregate.py
    does not write (someone's notes) stays."""
    outputs, folder = tmp_path / "outputs", tmp_path / "results" / DATASET
    make_run(outputs, "org/bert", 3e-5, 1, 0.9, 0.9, "00-00-00.000000")
    folder.mkdir(parents=True)
    (folder / "confusion_matrix_ffffffffffff.png").write_bytes(b"an older dataset's")
    (folder / "notes.txt").write_text("our notes\n")
    (folder / "per_class_notes.csv").write_text("our own table, named like aggregate.py's\n")
    (folder / ".results.md.0123456789abcdef.tmp").write_text("a killed write_text's\n")
    (folder / "drafts").mkdir()
    (folder / "drafts" / "figure.svg").write_text("<svg/>\n")
    aggregate.main(aggregate.Args(output_root=outputs, results_dir=folder.parent))
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [
            "all.csv",
            "best.csv",
            "results.md",
            "test_f1.png",
            "val_f1_per_epoch.png",
            f"confusion_matrix_{FINGERPRINT[:12]}.png",
            f"reliability_{FINGERPRINT[:12]}.png",
            f"per_class_{FINGERPRINT[:12]}.csv",
            "notes.txt",
            "per_class_notes.csv",
            "drafts",
        ]
    )
    assert (folder / "notes.txt").read_text() == "our notes\n"
    assert (folder / "drafts" / "figure.svg").read_text() == "<svg/>\n"


def test_plots_draw_names_with_dollar_signs_as_they_are():
    """matplotlib reads $...$ as a formula: a label such as "$5 \\frac$" would fail the whole results."""
    names = ("$5 \\frac$", "b")
    fig = results_plots.confusion_figure(np.eye(2, dtype=int), names, "$model: test")
    fig.canvas.draw()
    (axes,) = fig.axes
    assert [t.get_text() for t in axes.get_xticklabels()] == list(names)
    results_plots.plt.close(fig)
