"""The four-column dataset of one's own (problem, solution, image, bbox; 320×200, 200×300, 400×240 images, boxes in
their own pixels), saved with ``save_to_disk`` and as jsonl: it evaluates with ``wise-rl eval`` / ``score`` and
trains with ``build-sft`` + ``recipes/sft.py`` and ``recipes/grpo.py`` with only a column mapping, and its metrics
equal those of the same data converted by hand. SAM2 at scoring segments the original image."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from datasets import Dataset, Features

from wise_rl import evaluate, frames, training
from wise_rl.cli import main
from wise_rl.data.schema import sample_features
from wise_rl.testbed.fixtures.own_data import own_rows, write_own_data

ROOT = Path(__file__).resolve().parents[2]
COLUMNS = "query=problem,detailed=solution"
SHIFT = 10  # every prediction is the true box moved 10 px to the right, in the original image


@pytest.fixture(scope="module")
def own(tmp_path_factory):
    return write_own_data(tmp_path_factory.mktemp("own"))


def _expected():
    """Hand-computed from the boxes of own_rows(): a w×h box moved by SHIFT px overlaps (w − 10)·h of (w + 10)·h."""
    sizes = [(r["bbox"][2] - r["bbox"][0] + 1, r["bbox"][3] - r["bbox"][1] + 1) for r in own_rows()]
    assert sizes == [(100, 100), (80, 60), (120, 80)]
    ious = [(w - SHIFT) / (w + SHIFT) for w, _ in sizes]
    ciou = sum((w - SHIFT) * h for w, h in sizes) / sum((w + SHIFT) * h for w, h in sizes)
    return sum(ious) / 3, ciou


def _by_hand(out: Path, ids: list[str], size: int = 840) -> Path:
    """What a user had to do before: every image resized to size², boxes and points rescaled into that square."""
    rows = own_rows()
    data = {
        "id": ids, "image": [frames.image_to_model(r["image"], size) for r in rows],
        "query": [r["problem"] for r in rows], "image_size": [[r["width"], r["height"]] for r in rows],
        "model_size": [size] * 3,
        "gt_bbox": [frames.bbox_to_model(r["bbox"], (r["width"], r["height"]), size) for r in rows],
        "gt_points": [frames.points_to_model([[(r["bbox"][0] + r["bbox"][2]) / 2, (r["bbox"][1] + r["bbox"][3]) / 2]]
                                             * 2, (r["width"], r["height"]), size) for r in rows],
        "gt_mask": [None] * 3, "detailed": [r["solution"] for r in rows], "concise": [None] * 3,
        "source": ["by-hand"] * 3,
    }
    features = Features({k: v for k, v in sample_features().items() if k in data})
    Dataset.from_dict(data, features=features).save_to_disk(str(out))
    return out


def _completions(rows) -> dict[str, str]:
    """query → the shifted answer in the 840² model frame (floats: they map back to original pixels exactly)."""
    out = {}
    for r in rows:
        x1, y1, x2, y2 = r["bbox"]
        box = frames.bbox_to_model([x1 + SHIFT, y1, x2 + SHIFT, y2], (r["width"], r["height"]), 840)
        centre = [(box[0] + box[2]) / 2, (box[1] + box[3]) / 2]
        answer = json.dumps({"bbox": box, "points_1": centre, "points_2": centre})
        out[r["problem"]] = f"<think>the one</think><answer>{answer}</answer>"
    return out


def _ids(path) -> list[str]:
    from wise_rl.data.loaders import load_source

    return load_source(str(path), columns=COLUMNS)["id"]


def test_the_shipped_example_is_this_dataset(own):
    example = ROOT / "examples" / "own-data"
    assert (example / "data.jsonl").read_text() == own["jsonl"].read_text()
    for name in ("wide", "tall", "mid"):
        from PIL import Image

        shipped = np.asarray(Image.open(example / "images" / f"{name}.png").convert("RGB"))
        assert np.array_equal(shipped, np.asarray(Image.open(own["jsonl"].parent / "images" / f"{name}.png")))


@pytest.mark.parametrize("saved", ["jsonl", "hf"])
def test_score_with_a_column_mapping_equals_the_data_converted_by_hand(own, saved, tmp_path):
    ids = _ids(own[saved])
    assert ids == _ids(own["jsonl"])  # stable ids: the same rows saved either way
    by_query = _completions(own_rows())
    preds = tmp_path / "preds.jsonl"
    preds.write_text("".join(json.dumps({"id": i, "completion": by_query[r["problem"]]}) + "\n"
                             for i, r in zip(ids, own_rows())))
    results = {}
    for name, dataset, extra in (("mapped", own[saved], ["--columns", COLUMNS]),
                                 ("by-hand", _by_hand(tmp_path / "hand", ids), [])):
        out = tmp_path / f"{name}.json"
        assert main(["score", "--dataset", str(dataset), "--predictions", str(preds), "--out", str(out),
                     "--quiet", *extra]) == 0
        results[name] = json.loads(out.read_text())
    giou, ciou = _expected()
    for m in results.values():
        assert m["n"] == 3 and m["n_failed"] == 0
        assert m["gIoU"] == pytest.approx(giou, abs=1e-9) and m["cIoU"] == pytest.approx(ciou, abs=1e-9)
    assert results["mapped"]["settings"]["columns"] == COLUMNS


def test_eval_with_a_column_mapping_equals_the_data_converted_by_hand(own, tmp_path):
    by_query = _completions(own_rows())

    def generator(images, queries):
        assert all(image.size == (840, 840) for image in images)
        return [evaluate.Generation(by_query[q], 5, 0.01) for q in queries]

    hand = _by_hand(tmp_path / "hand", _ids(own["hf"]))
    mapped = evaluate.run_eval(evaluate.EvalConfig(model="scripted", dataset=str(own["hf"]), columns=COLUMNS),
                               tmp_path / "mapped", generator=generator, progress=False)
    by_hand = evaluate.run_eval(evaluate.EvalConfig(model="scripted", dataset=str(hand)), tmp_path / "by-hand",
                                generator=generator, progress=False)
    giou, ciou = _expected()
    for m in (mapped, by_hand):
        assert m["gIoU"] == pytest.approx(giou, abs=1e-9) and m["cIoU"] == pytest.approx(ciou, abs=1e-9)


def test_wise_rl_eval_runs_on_both_saves_with_only_the_mapping(own, tiny_model_dir, tmp_path):
    metrics = {}
    for saved in ("jsonl", "hf"):
        out = tmp_path / saved
        assert main(["eval", "--model", str(tiny_model_dir), "--dataset", str(own[saved]), "--columns", COLUMNS,
                     "--prompt", "wise", "--max-new-tokens", "4", "--out", str(out), "--quiet"]) == 0
        metrics[saved] = json.loads((out / "metrics.json").read_text())
        assert metrics[saved]["n"] == 3
    same = ("gIoU", "cIoU", "n_failed", "failures")
    assert {k: metrics["jsonl"][k] for k in same} == {k: metrics["hf"][k] for k in same}


def test_sam2_at_scoring_segments_the_original_image(own, tmp_path, monkeypatch):
    from wise_rl.masks import Sam2Decoder
    from wise_rl.testbed.fixtures.tiny_sam2 import build_tiny_sam2

    seen = []
    decode_batch = Sam2Decoder.decode_batch

    def spy(self, images, answers):
        seen.extend(np.asarray(image.convert("RGB")) for image in images)
        return decode_batch(self, images, answers)

    monkeypatch.setattr(Sam2Decoder, "decode_batch", spy)
    ids = _ids(own["jsonl"])
    by_query = _completions(own_rows())
    preds = tmp_path / "preds.jsonl"
    preds.write_text("".join(json.dumps({"id": i, "completion": by_query[r["problem"]]}) + "\n"
                             for i, r in zip(ids, own_rows())))
    sam2 = build_tiny_sam2(tmp_path / "sam2")
    assert main(["score", "--dataset", str(own["jsonl"]), "--columns", COLUMNS, "--predictions", str(preds),
                 "--out", str(tmp_path / "m.json"), "--mask-decoder", "sam2", "--sam2", str(sam2), "--quiet"]) == 0
    originals = [np.asarray(r["image"]) for r in own_rows()]
    assert [a.shape for a in seen] == [o.shape for o in originals]  # (200, 320, 3), (300, 200, 3), (240, 400, 3)
    assert all(np.array_equal(a, o) for a, o in zip(seen, originals))  # the photo itself, not 840² resized back


def test_build_sft_then_sft_and_grpo_train_on_it(own, tiny_model_dir, tmp_path):
    from wise_rl.scripts import grpo, sft

    sft_data = tmp_path / "sft-data"
    assert main(["build-sft", "--mode", "compress", "--source", str(own["hf"]), "--columns", COLUMNS,
                 "--model-size", "112", "--out", str(sft_data)]) == 0
    built = Dataset.load_from_disk(str(sft_data))
    assert built["detailed"] == [r["solution"] for r in own_rows()] and all(built["concise"])
    assert built["gt_points"] == [None] * 3  # box-only rows: SFT targets use the box centre
    argv = ["--config", str(ROOT / "recipes/tiny/sft.yaml"), "--model_name_or_path", str(tiny_model_dir),
            "--dataset", str(sft_data), "--output_dir", str(tmp_path / "sft"), "--report_to", "none",
            "--sample_log_every", "0", "--max_steps", "2", "--per_device_train_batch_size", "2",
            "--save_strategy", "no", "--logging_steps", "1"]
    assert sft.main(*training.parse_sft_args(argv))["global_step"] == 2
    # box-only data cannot score the points reward: the run refuses it by name, before training
    from wise_rl.data.loaders import load_source
    from wise_rl.errors import ConfigError

    rows = load_source(str(own["jsonl"]), columns=COLUMNS, model_size=112)
    default = training.build_reward_funcs(training.GRPOScriptArguments(dataset="x"), None)
    with pytest.raises(ConfigError, match="'points' needs column 'gt_points'"):
        training.check_reward_columns(default, rows)
    no_points = [r for r in training.GRPOScriptArguments().reward_funcs if r != "points"]
    argv = ["--model_name_or_path", str(tiny_model_dir), "--dataset", str(own["jsonl"]), "--dataset_columns",
            COLUMNS, "--reward_funcs", *no_points,
            "--model_size", "112", "--output_dir", str(tmp_path / "grpo"), "--use_cpu", "true",
            "--report_to", "none", "--per_device_train_batch_size", "2", "--num_generations", "2",
            "--max_completion_length", "8", "--logging_steps", "1", "--save_strategy", "no", "--max_steps", "2",
            "--gradient_checkpointing", "false"]
    assert grpo.main(*training.parse_grpo_args(argv))["global_step"] == 2
    history = json.loads((tmp_path / "grpo" / "trainer_state.json").read_text())["log_history"]
    assert [h for h in history if "reward" in h], "no reward logged"
