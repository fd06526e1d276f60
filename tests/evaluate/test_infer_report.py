"""``wise-rl infer`` (overlay PNG) and ``wise-rl report`` (plots + report.md from synthetic logs)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from wise_rl import evaluate
from wise_rl.cli import main
from wise_rl.evaluate.overlay import draw_overlay


def test_draw_overlay_blends_mask_and_draws_box_and_points():
    image = Image.new("RGB", (40, 30), (0, 0, 200))
    mask = np.zeros((30, 40), dtype=np.uint8)
    mask[5:10, 5:10] = 1
    mask[20:25, 5:10] = 255  # ignore: not painted
    out = draw_overlay(image, mask=mask, bbox=[20, 5, 35, 25], points=[[28, 15]], color=(255, 0, 0), alpha=0.5)
    arr = np.asarray(out)
    assert tuple(arr[7, 7]) == (128, 0, 100)  # (1 − 0.5)·(0, 0, 200) + 0.5·(255, 0, 0), rounded
    assert tuple(arr[22, 7]) == (0, 0, 200)
    assert tuple(arr[5, 27]) == (255, 0, 0)  # top edge of the box
    assert tuple(arr[15, 28]) == (255, 0, 0)  # the point
    assert tuple(arr[0, 0]) == (0, 0, 200) and image.getpixel((7, 7)) == (0, 0, 200)  # input untouched
    with pytest.raises(ValueError, match="mask shape"):
        draw_overlay(image, mask=np.zeros((3, 3)))


def test_infer_cli_writes_png(tmp_path, tiny_model_dir, capsys):
    img = tmp_path / "photo.png"
    Image.new("RGB", (150, 90), (30, 120, 200)).save(img)
    out = tmp_path / "overlay.png"
    assert main(["infer", "--model", str(tiny_model_dir), "--image", str(img), "--query", "the blue sky",
                 "--max-new-tokens", "8", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "concise:" in printed and "answer" in printed
    with Image.open(out) as saved:  # enlarged 5× (shorter side 90 → ≥ 448) plus a caption bar
        assert saved.size[0] == 750 and 450 < saved.size[1] < 500 and saved.format == "PNG"


def test_infer_rescales_the_answer_and_draws_the_mask(tmp_path, tiny_model_dir, monkeypatch, capsys):
    # The tiny model answers in its 112 frame; the original is 224×56 → x·2, y·0.5.
    completion = '<think>sky</think><answer>{"bbox": [10, 20, 40, 60], "points_1": [20, 30], "points_2": [30, 50]}' \
                 "</answer>"
    monkeypatch.setattr(evaluate.HFGenerator, "__call__",
                        lambda self, images, queries: [evaluate.Generation(completion, 30, 0.01)])
    img = tmp_path / "wide.png"
    Image.new("RGB", (224, 56), (0, 0, 0)).save(img)
    out = tmp_path / "o.png"
    assert main(["infer", "--model", str(tiny_model_dir), "--image", str(img), "--query", "x", "--out",
                 str(out)]) == 0
    printed = capsys.readouterr().out
    assert "concise: sky" in printed and '"bbox": [20.0, 10.0, 80.0, 30.0]' in printed
    arr = np.asarray(Image.open(out).convert("RGB"))  # 8× (shorter side 56 → 448): pixel (x, y) → (8x+4, 8y+4)
    assert arr[20 * 8 + 4, 50 * 8 + 4, 0] < 50 and arr[20 * 8 + 4, 50 * 8 + 4, 2] > 100  # inside the mask: cyan
    assert tuple(arr[45 * 8 + 4, 150 * 8 + 4]) == (0, 0, 0)  # outside: untouched


def test_plain_names_for_plot_titles():
    from wise_rl.report import plain_name

    assert plain_name("rewards/bbox_iou/mean") == "box IoU with the ground truth"
    assert plain_name("completions/think_tokens") == "concise (<think>) tokens"
    assert plain_name("rewards/my_reward/mean") == "my reward"  # a plug-in: its name, readable
    assert plain_name("kl") == "kl"


def test_render_result_enlarges_and_puts_the_ground_truth_beside(tmp_path):
    from wise_rl.evaluate.overlay import GROUND_TRUTH_COLOUR, PREDICTION_COLOUR, render_result, scale_factor

    image = Image.new("RGB", (20, 10), (0, 0, 0))
    gt = np.zeros((10, 20), dtype=np.uint8)
    gt[2:5, 2:5] = 1
    out = render_result(image, bbox=[10, 2, 14, 6], points=[[12, 4], [13, 5]], gt_mask=gt, min_side=40)
    assert scale_factor((20, 10), 40) == 4 and scale_factor((900, 600), 448) == 1
    arr = np.asarray(out)
    assert out.width == 2 * 80 + 8 and out.height > 40  # two 80×40 panels, a gap, a caption bar
    assert tuple(arr[2 * 4, 12 * 4]) == PREDICTION_COLOUR  # the box's top edge, in the prediction colour
    assert tuple(arr[24, 70]) == (0, 0, 0)  # right of the box: the prediction panel's background stays the image
    gt_px = arr[3 * 4 + 1, 80 + 8 + 3 * 4 + 1]  # inside the ground-truth mask, second panel
    assert gt_px[0] > 100 and gt_px[0] == gt_px[2] and tuple(arr[3 * 4 + 1, 3 * 4 + 1]) == (0, 0, 0)
    assert GROUND_TRUTH_COLOUR != PREDICTION_COLOUR
    from wise_rl.testbed.shapeworld import COLOURS

    # the prediction colour is far from every ShapeWorld colour
    assert min(sum((a - b) ** 2 for a, b in zip(PREDICTION_COLOUR, c)) ** 0.5 for c in COLOURS.values()) > 150
    single = render_result(image, min_side=1)  # no prediction, no ground truth: one panel at the image's size
    assert single.width == 20


def _log_history(steps, scale):
    hist = []
    for s in range(1, steps + 1):
        hist.append({
            "step": s, "loss": 1.0 / s, "reward": 2 + scale * math.log(s),
            "rewards/format_reward/mean": min(1.0, 0.2 * s), "rewards/bbox_iou_reward/mean": 0.05 * s * scale,
            "rewards/self_distillation_reward/mean": 0.03 * s,
            "completions/mean_length": 120 - 3 * s, "self_distillation/concise_tokens_mean": 40 - 2 * s,
        })
    hist.append({"step": steps, "train_runtime": 12.0})  # a summary entry without the plotted keys
    return hist


def test_report_writes_pngs_and_markdown(tmp_path, capsys):
    run = tmp_path / "grpo"
    (run / "checkpoint-5").mkdir(parents=True)
    (run / "checkpoint-10").mkdir()
    (run / "checkpoint-5" / "trainer_state.json").write_text(json.dumps({"log_history": _log_history(5, 1.0)}))
    (run / "checkpoint-10" / "trainer_state.json").write_text(json.dumps({"log_history": _log_history(10, 1.0)}))
    sft = tmp_path / "sft"
    sft.mkdir()
    (sft / "trainer_state.json").write_text(json.dumps({"log_history": [{"step": s, "loss": 3 / s}
                                                                        for s in range(1, 8)]}))
    evals = tmp_path / "evals"
    for name, think, giou in (("wise", 12.0, 0.41), ("wise-s", 5.0, 0.40), ("verbose", 60.0, 0.42)):
        (evals / name).mkdir(parents=True)
        (evals / name / "metrics.json").write_text(json.dumps({
            "protocol": "lisa", "n": 16, "n_failed": 1, "gIoU": giou, "cIoU": giou - 0.02, "acc50": 0.4,
            "think_tokens_mean": think, "think_tokens_median": think, "completion_tokens_mean": think + 30,
            "latency_mean_s": 0.01 * think, "samples_per_s": 100 / think, "settings": {"prompt": name},
        }))
    # a verbose run whose format broke: no <think> block anywhere, its think cost was not measured
    (evals / "broken").mkdir()
    (evals / "broken" / "metrics.json").write_text(json.dumps({
        "protocol": "lisa", "n": 16, "n_failed": 16, "gIoU": 0.0, "cIoU": 0.0, "acc50": 0.0, "think_tokens_n": 0,
        "think_tokens_mean": None, "settings": {"prompt": "verbose"}}))
    out = tmp_path / "report"
    assert main(["report", str(run), str(sft), str(evals), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "2 training run(s), 4 eval run(s)" in printed
    for name in ("rewards.png", "lengths.png", "loss.png", "eval_cost_accuracy.png"):
        with Image.open(out / name) as im:
            assert im.format == "PNG" and im.size[0] > 300
    md = (out / "report.md").read_text()
    assert "| grpo | 10 |" in md  # the last checkpoint's log was read
    assert "format_reward=1.000" in md and "| evals/wise-s | wise-s | 16 | 1 | 40.00 |" in md
    assert "![rewards](rewards.png)" in md
    assert "– / – (not measured: no <think> block in any of the 16 samples)" in md
    with pytest.raises(FileNotFoundError, match="no trainer_state.json"):
        main(["report", str(tmp_path / "report")])
