"""A model folder that asks to run Python code of its own (`auto_map` in its config.json) is refused in one
line by train.py and predict.py, and none of its code runs: transformers would otherwise stop mid-run to
ask "Do you wish to run the custom code? [y/N]" and run it on a "y"."""

import io
import json
import shutil
import sys

import pytest

import predict
import train

# Imported, it leaves a marker file: the proof that the folder's code ran.
MARKER_CODE = """from pathlib import Path

Path({marker!r}).write_text("the model folder's own code ran")

from transformers import BertConfig, BertForSequenceClassification


class MarkerConfig(BertConfig):
    model_type = "marker-bert"


class MarkerModel(BertForSequenceClassification):
    config_class = MarkerConfig
"""


@pytest.fixture
def custom_model(bert_dir, tmp_path):
    """The tiny BERT, with a config that names an architecture of its own, defined in the folder's marker.py."""
    folder = tmp_path / "custom-model"
    shutil.copytree(bert_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    auto_map = {"AutoConfig": "marker.MarkerConfig", "AutoModelForSequenceClassification": "marker.MarkerModel"}
    config |= {"model_type": "marker-bert", "auto_map": auto_map}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "marker.py").write_text(MARKER_CODE.format(marker=str(tmp_path / "marker")))
    settings = {"text_fields": ["title", "body"], "max_seq_len": 64, "normalize": True, "batch_size": 8}
    settings |= {"precision": "fp32", "truncation": {"mode": "head"}, "threshold": None}
    (folder / "predict.json").write_text(json.dumps(settings))  # as if train.py --save_model had written it
    return folder


@pytest.mark.parametrize("script", [train, predict], ids=["train", "predict"])
def test_a_model_with_code_of_its_own_is_one_line_and_none_of_its_code_runs(
    script, custom_model, dataset_dir, tmp_path, monkeypatch, in_process
):
    answer = io.StringIO("y\n")  # what transformers' question would read, and run the code on
    monkeypatch.setattr(sys, "stdin", answer)
    if script is train:
        argv = ["--model_name", custom_model, "--dataset_dir", dataset_dir, "--output_root", tmp_path / "outputs"]
    else:
        argv = [custom_model, "--input", dataset_dir / "test.jsonl"]
    result = in_process(script, *argv, check_args=script.check_args)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "[y/N]" not in result.stdout + result.stderr and answer.read() == "y\n"  # nothing asked, nothing read
    error = result.stderr.splitlines()[-1]  # after, on a machine without a GPU, the notice that the CPU is slow
    name = script.__name__
    assert error == (
        f"{name}.py: error: {custom_model}: it needs Python code of its own to load (auto_map in its config.json),"
        " which this pipeline never runs; choose a model that transformers supports without custom code"
    )
    assert not (tmp_path / "marker").exists()
    assert not (tmp_path / "outputs").exists() or not any((tmp_path / "outputs").iterdir())
