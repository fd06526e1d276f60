"""The report against real run logs: ``tests/report_logs`` holds the ``trainer_state.json`` of a tiny SFT run
(recipes/tiny/sft.yaml, 40 steps) and of a 2-step tiny GRPO run from it at ``max_completion_length: 64``, where
every completion is cut before ``</d_think>`` (format and self_distillation 0 at every step)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from wise_rl import report

LOGS = Path(__file__).resolve().parent / "report_logs"


def _runs(tmp_path):
    shutil.copytree(LOGS, tmp_path / "runs")
    return report.find_runs([tmp_path / "runs"])[0]


def test_the_concise_column_reads_the_key_the_recipes_log(tmp_path):
    runs = _runs(tmp_path)
    grpo = next(r for r in runs if report.is_rl_run(r))
    last = grpo.log_history[-2]["completions/think_tokens"]  # the last logged step (the final entry is the summary)
    row = next(line for line in report._training_table(runs) if line.startswith("| runs/grpo"))
    assert row.rstrip(" |").endswith(f"{last:.1f}")


def test_sft_and_grpo_losses_are_on_separate_axes(tmp_path):
    import matplotlib.image as mpimg

    runs = _runs(tmp_path)
    assert [report.is_rl_run(r) for r in sorted(runs, key=lambda r: r.name)] == [True, False]
    path = report.plot_loss(runs, tmp_path)
    height, width = mpimg.imread(path).shape[:2]
    assert width > 1.8 * height  # two panels side by side (one panel is ~4.6 × 3.3 in)
    only_sft = report.plot_loss([r for r in runs if not report.is_rl_run(r)], tmp_path)
    assert mpimg.imread(only_sft).shape[1] < 0.6 * width


def test_a_reward_that_never_scored_says_why(tmp_path):
    runs = _runs(tmp_path)
    note = report.never_scored(runs, "rewards/self_distillation/mean")
    assert note.startswith("never scored: 100% of the completions were cut at max_completion_length")
    assert report.never_scored(runs, "rewards/format/mean") == note
    assert report.never_scored(runs, "rewards/bbox_iou/mean") is None  # it scored
    result = report.build_report([tmp_path / "runs"], tmp_path / "out")
    md = Path(result["report"]).read_text(encoding="utf-8")
    assert f"- `self_distillation` {note}" in md and "- `bbox_iou`" not in md


def test_the_logs_are_what_the_docstring_says():
    grpo = json.loads((LOGS / "grpo/trainer_state.json").read_text())["log_history"]
    steps = [e for e in grpo if "rewards/format/mean" in e]
    assert len(steps) == 2 and all(e["completions/clipped_ratio"] == 1 for e in steps)
    assert all(e["rewards/self_distillation/mean"] == 0 and e["rewards/format/mean"] == 0 for e in steps)
