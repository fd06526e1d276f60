"""The base card (``model_card.md``) and the demo report (``report.md``) are rendered from jinja2 templates shipped
as package data; on fixed inputs they must read, byte for byte, as the markdown recorded in ``golden/`` (written by
the string-building functions the templates replaced)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

GOLDEN = Path(__file__).resolve().parent / "golden"


def _cards() -> dict[str, dict]:
    """The shipped base's card (every section), one bare card (no baselines, lineage, optional sections) and one
    with a description share, naming and a learning curve but no prompt mix."""
    full = json.loads((GOLDEN / "base_card.json").read_text(encoding="utf-8"))
    bare = copy.deepcopy(full)
    for key in ("lineage", "note", "metrics_by_prompt", "naming", "vision_probe", "metrics_by_family", "stages",
                "curve", "examples", "baselines"):
        bare.pop(key, None)
    bare |= {"prompt_mix": None, "describe_share": 0.0, "name_share": 0.0, "init": None, "preset": None,
             "metrics": {k: None for k in full["metrics"]} | {"n": 0}}
    bare["machine"] = {k: v for k, v in full["machine"].items() if k != "cpu_model"} | {"cuda": None}
    bare["throughput"] = {k: None for k in full["throughput"]}
    described = copy.deepcopy(full)
    described |= {"prompt_mix": {"answer-only": 0.5, "wise-compact": 0.5}, "named_box_share": 0.5,
                  "described_box_share": 0.0, "reasoned_box_share": 0.0, "lineage": [], "note": None}
    described["stages"] = [dict(st, vision_lr_scale=0, merger_lr_scale=0.5, family_weights={})
                           for st in full["stages"] if st["stage"] != "vision"][:2]
    unnamed = copy.deepcopy(full) | {"named_box_share": 0.0, "describe_share": 0.15, "name_share": 0.0}
    return {"full": full, "bare": bare, "described": described, "unnamed": unnamed}


def _reports() -> dict[str, dict]:
    """A demo report with every section (targets of each value type, a GRPO trend, the same-prompts pairing, arm
    wall times, figures) and a bare one (official prompts, no base perception, no GRPO log)."""
    side = {"sft_steps": 4, "sft_targets": 64, "grpo_steps": 2, "grpo_completions": 32, "grpo_prompts": 8,
            "num_generations": 4}
    variant = {"prompt": "wise-s-compact", "acc50": 0.63, "box_acc50": 0.8, "gIoU": 0.511, "cIoU": 0.464,
               "format_valid": 1.0, "think_tokens_mean": 6.8, "completion_tokens_mean": 58.9, "latency_s_mean": 0.014}
    full = {
        "profile": {"name": "default", "eval_n": 100, "seed": 0, "image_size": 112, "prompt_style": "compact"},
        "base_model": "wise_rl/assets/shapeworld-base", "date": "2026-11-30 05:22 UTC", "machine": "AMD EPYC, 2 CPUs",
        "base": {"source": "card", "prompt": "answer-only", "acc50": 0.687, "box_acc50": 0.823, "gIoU": 0.554,
                 "cIoU": 0.514, "format_valid": 1.0, "think_tokens_mean": 0.0, "completion_tokens_mean": 48.1,
                 "latency_s_mean": 0.01,
                 "naming": {"n": 300, "name_acc": 0.85, "name_in_scene": 0.97, "random_shape": 0.36,
                            "random_guess": 0.098},
                 "vision_probe": {"n_scored": 600, "colour_acc": 0.991, "colour_majority": 0.18, "kind_acc": 0.958,
                                  "kind_majority": 0.22},
                 "by_family": {"attribute": {"box_acc50": 0.94, "random_shape_acc50": 0.39},
                               "counting": {"box_acc50": 0.93, "random_shape_acc50": 0.39}}},
        "variants": {"verbose": variant | {"prompt": "verbose-compact", "think_tokens_mean": 154.7},
                     "wise-s": variant, "wise-s-sft": variant | {"box_acc50": None, "think_tokens_mean": None}},
        "random_shape_acc50": 0.36,
        "targets": {"wise_s_box_acc50": {"value": 0.8, "threshold": ">= 0.6", "pass": True},
                    "think_tokens": {"value": {"first": 6.64, "last": 6.39}, "threshold": "shorter", "pass": False,
                                     "note": "within noise"},
                    "runs": {"value": 3, "threshold": ">= 1", "pass": True},
                    "missing": {"value": None, "threshold": "-", "pass": False}},
        "budget": {"rule": "same sequences", "sequences_per_step": 16, "verbose": side, "wise": side},
        "grpo_trend": {"logged_steps": 16, "window": 4,
                       "rewards/bbox_iou/mean": {"first": 0.48, "last": 0.52, "first_se": 0.02, "last_se": 0.03},
                       "completion_length": {"first": 58.0, "last": 57.5}},
        "grpo_same_prompts": {"before": "wise-s-sft", "after": "wise-s", "n": 100, "identical": 0.43,
                              "box_acc50": {"before": 0.78, "after": 0.8, "gained": 3, "lost": 1},
                              "think_tokens": {"before": 6.8, "after": 6.81, "diff": 0.01, "diff_se": 0.02,
                                               "n": 100}},
        "stages": {"data": {"wall_s": 12.3, "status": "done"}, "sft_wise": {"wall_s": None, "status": "skipped"}},
        "arms_wall_s": {"verbose": 80.25, "wise": 95.5},
        "figures": ["runs/demo/rewards.png", "runs/demo/lengths.png"],
    }
    bare = copy.deepcopy(full)
    bare["profile"]["prompt_style"] = "official"
    bare["base"] = {"source": "eval"}
    bare |= {"variants": {}, "targets": {}, "grpo_trend": {}, "grpo_same_prompts": {}, "stages": {}, "figures": [],
             "random_shape_acc50": None}
    bare.pop("arms_wall_s")
    no_think = copy.deepcopy(full)
    no_think["grpo_same_prompts"].pop("think_tokens")
    ablations = copy.deepcopy(full)  # the ablation section: variants with standard errors, paired differences
    ablations["variants"] |= {"concise-s": variant | {"box_acc50": 0.76, "box_acc50_se": 0.0429},
                              "no-sd-s": variant | {"box_acc50": 0.81, "box_acc50_se": 0.0394}}
    ablations["variants"]["wise-s"]["box_acc50_se"] = 0.04
    ablations["ablations"] = [
        {"wise": "wise-s", "ablation": "concise-s", "before": "concise-s", "after": "wise-s", "n": 100,
         "identical": 0.2, "box_acc50": {"before": 0.76, "after": 0.8, "gained": 7, "lost": 3, "diff": 0.04,
                                         "diff_se": 0.0315},
         "think_tokens": {"before": 6.5, "after": 6.8, "diff": 0.3, "diff_se": 0.1, "n": 100}},
        {"wise": "wise-s", "ablation": "no-sd-s", "before": "no-sd-s", "after": "wise-s", "n": 100, "identical": 0.9,
         "box_acc50": {"before": 0.81, "after": 0.8, "gained": 1, "lost": 2, "diff": -0.01, "diff_se": 0.0172}}]
    return {"full": full, "bare": bare, "no_think": no_think, "ablations": ablations}


@pytest.mark.parametrize("name", ["full", "bare", "described", "unnamed"])
def test_the_base_card_reads_as_before(name):
    from wise_rl.testbed.pretrain.base_card import model_card_markdown

    expected = (GOLDEN / f"card_{name}.md").read_text(encoding="utf-8")
    assert model_card_markdown(_cards()[name]) == expected


@pytest.mark.parametrize("name", ["full", "bare", "no_think", "ablations"])
def test_the_demo_report_reads_as_before(name):
    from wise_rl.testbed.demo.report import report_markdown

    expected = (GOLDEN / f"report_{name}.md").read_text(encoding="utf-8")
    assert report_markdown(_reports()[name]) == expected


def test_the_goldens_cover_the_optional_sections():
    """The fixtures exercise what they claim to: the full card has every section, the bare one none."""
    full, bare = ((GOLDEN / f"card_{n}.md").read_text(encoding="utf-8") for n in ("full", "bare"))
    for section in ("## Stages", "## Learning curve", "## Examples", "Vision probe", "Naming (", "per query family"):
        assert section in full and section not in bare, section
    report = (GOLDEN / "report_full.md").read_text(encoding="utf-8")
    assert "## GRPO on the same prompts" in report and "## Figures" in report and "What the base sees" in report
    assert "## Ablations" not in report and "## Ablations" in (GOLDEN / "report_ablations.md").read_text("utf-8")
