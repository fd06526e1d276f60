"""Eval and infer know which model they run: by its weights, not its path, and say when its records are missing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from wise_rl import evaluate
from wise_rl.data.loaders import load_source
from wise_rl.errors import EvalError
from wise_rl.models import info as model_info


class Scripted:
    def __call__(self, images, queries):
        return [evaluate.Generation("<think>a</think><answer>{}</answer>", 3, 0.01) for _ in images]


class KilledAfter(Scripted):
    def __init__(self, n):
        self.n = n

    def __call__(self, images, queries):
        if self.n <= 0:
            raise KeyboardInterrupt
        self.n -= len(images)
        return super().__call__(images, queries)


def _eval(model, data, out, generator):
    cfg = evaluate.EvalConfig(model=str(model), dataset=str(data), split="test", prompt="wise", batch_size=2, limit=4)
    rows = load_source(str(data), split="test", with_original_mask=True, limit=4)
    return evaluate.run_eval(cfg, out, generator=generator, dataset=rows, progress=False)


def test_an_eval_resumed_after_the_model_was_retrained_at_the_same_path_is_refused(tiny_model_dir, shapeworld_dir,
                                                                                  tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    out = tmp_path / "eval"
    with pytest.raises(KeyboardInterrupt):
        _eval(model, shapeworld_dir, out, KilledAfter(2))  # 2 of 4 samples done
    assert json.loads((out / evaluate.RUN_FILE).read_text())["model_weights"]
    state = load_file(str(model / "model.safetensors"))
    name = sorted(state)[0]
    save_file({**state, name: state[name] + 1.0}, str(model / "model.safetensors"))  # retrained in place
    with pytest.raises(EvalError, match=r"holds a run with model_weights='[0-9a-f]{8}.*but this run has "):
        _eval(model, shapeworld_dir, out, Scripted())
    assert len(evaluate.read_samples(out / evaluate.SAMPLES_FILE)) == 2  # nothing of the new model was mixed in


def test_the_same_weights_moved_to_another_path_resume(tiny_model_dir, shapeworld_dir, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    out = tmp_path / "eval"
    with pytest.raises(KeyboardInterrupt):
        _eval(model, shapeworld_dir, out, KilledAfter(2))
    moved = tmp_path / "moved"
    model.rename(moved)
    assert _eval(moved, shapeworld_dir, out, Scripted())["n"] == 4


def test_a_model_without_its_records_or_with_stale_ones_is_named(tiny_model_dir, tmp_path, capsys):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    assert model_info.prompt_for_command(model, None, "eval") == "wise"
    err = capsys.readouterr().err
    assert f"{model} has no wise_rl.json" in err and "default prompt wise" in err
    record = model_info.training_record(["wise-train-compact"], "sft")
    model_info.write(model, record | {"weights_digest": "0" * 64})
    assert model_info.prompt_for_command(model, None, "infer") == record["infer_prompt"]
    err = capsys.readouterr().err
    assert "describes other weights than the ones beside it" in err and "has no wise_rl.json" not in err
    model_info.write(model, record | {"weights_digest": model_info.weights_digest(model)})
    model_info.prompt_for_command(model, None, "infer")
    assert capsys.readouterr().err == ""


def test_info_weights_digest_is_the_folder_checks(tiny_model_dir):
    from wise_rl.models.folder_check import weights_digest

    assert model_info.weights_digest(tiny_model_dir) == weights_digest(tiny_model_dir) is not None
    assert model_info.weights_digest(Path(tiny_model_dir) / "absent") is None
