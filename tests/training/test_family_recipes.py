"""The Qwen3-VL and Qwen3.5 recipes parse with the recipe parser, and every WISE GRPO recipe states the official KL
objective (no importance-ratio correction) instead of TRL's default."""

from __future__ import annotations

import glob
from pathlib import Path

import pytest
import yaml

from wise_rl import training

ROOT = Path(__file__).resolve().parents[2]
FAMILY_SETS = ("qwen3-vl-8b", "qwen3.5-9b")
GRPO_RECIPES = sorted(p for p in glob.glob(str(ROOT / "recipes" / "**" / "grpo*.yaml"), recursive=True))


def test_each_new_family_has_the_four_recipes():
    for folder in FAMILY_SETS:
        assert sorted(p.name for p in (ROOT / "recipes" / folder).glob("*.yaml")) == [
            "grpo_qlora.yaml", "grpo_zero3.yaml", "sft_qlora.yaml", "sft_zero3.yaml"]


def _has_kl_term(config: dict) -> bool:
    """A recipe with a KL term: a positive beta of its own, or the wise-paper preset's 5e-3."""
    beta = config.get("beta", 5e-3 if config.get("preset") == "wise-paper" else 0.0)
    return float(beta) > 0


def test_every_wise_grpo_recipe_with_a_kl_term_sets_the_official_objective():
    checked = []
    for path in GRPO_RECIPES:
        config = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        if _has_kl_term(config):
            assert config.get("use_bias_correction_kl") is False, f"{path}: use_bias_correction_kl must be false"
            checked.append(Path(path).parent.name)
    assert {"qwen2.5-vl-3b", "qwen2.5-vl-7b", *FAMILY_SETS} <= set(checked)


@pytest.mark.parametrize("folder", FAMILY_SETS)
@pytest.mark.parametrize("recipe", ["sft_qlora", "sft_zero3", "grpo_qlora", "grpo_zero3"])
def test_family_recipes_parse_with_the_native_frame(folder, recipe, tmp_path):
    path = ROOT / "recipes" / folder / f"{recipe}.yaml"
    argv = ["--config", str(path), "--output_dir", str(tmp_path / "out"), "--bf16", "false", "--use_cpu", "true"]
    parse = training.parse_grpo_args if recipe.startswith("grpo") else training.parse_sft_args
    script_args, args, model_args = parse(argv)
    assert script_args.frame is None  # the family's native frame (rel1000), resolved from the checkpoint
    assert script_args.image_min_pixels == script_args.image_max_pixels == 832 * 832
    assert model_args.model_name_or_path
    if recipe.startswith("grpo"):
        assert args.use_bias_correction_kl is False and args.beta == pytest.approx(5e-3)
        assert args.num_generations == 8 and args.max_completion_length == 1300
