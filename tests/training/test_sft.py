"""SFT recipe: prompt–completion rows, the tiny model learns (loss falls, weights move), QLoRA runs on CPU."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from wise_rl import formats, training

ROOT = Path(__file__).resolve().parents[2]


def sft_argv(model_dir, data_dir, out, *extra):
    return ["--config", str(ROOT / "recipes/tiny/sft.yaml"), "--model_name_or_path", str(model_dir),
            "--dataset", str(data_dir), "--dataset_split", "train", "--output_dir", str(out),
            "--report_to", "none", "--sample_log_every", "0", *extra]


@pytest.fixture(scope="module")
def train_ds(shapeworld_dir):
    from wise_rl.data.loaders import load_source

    return load_source(str(shapeworld_dir), split="train", limit=8)


def test_sft_rows_are_prompt_completion_pairs_with_the_wise_target(train_ds):
    rows = training.sft_rows(train_ds, "wise-train", "wise")
    assert set(rows.column_names) == {"image", "prompt", "completion"}
    row, src = rows[0], train_ds[0]
    assert row["prompt"] == [{"role": "user", "content": formats.render_prompt("wise-train", src["query"])}]
    (turn,) = row["completion"]
    assert turn["role"] == "assistant"
    parsed = formats.parse_completion(turn["content"], "three-stage")
    assert parsed.ok and parsed.concise == src["concise"].strip() and parsed.detailed == src["detailed"].strip()
    assert parsed.bbox == [float(round(v)) for v in src["gt_bbox"]]
    assert row["image"].size == src["image"].size


def test_verbose_rows_put_the_detailed_rationale_in_think(train_ds):
    rows = training.sft_rows(train_ds, "verbose", "verbose")
    parsed = formats.parse_completion(rows[0]["completion"][0]["content"], "think-answer")
    assert parsed.ok and parsed.concise == train_ds[0]["detailed"].strip()
    assert "<d_think>" not in rows[0]["completion"][0]["content"]


def test_a_template_list_cycles_prompts_over_rows_with_the_same_target(train_ds):
    rows = training.sft_rows(train_ds, "wise-train, wise-s", "wise")
    single = training.sft_rows(train_ds, "wise-train", "wise")
    for i in range(4):
        name = ("wise-train", "wise-s")[i % 2]
        assert rows[i]["prompt"][0]["content"] == formats.render_prompt(name, train_ds[i]["query"])
        assert rows[i]["completion"] == single[i]["completion"]


def test_grounding_share_keeps_the_base_task_on_an_even_share_of_rows(train_ds):
    rows = training.sft_rows(train_ds, "wise-train", "wise", grounding_share=0.25)
    grounding = [i for i in range(len(rows)) if rows[i]["prompt"][0]["content"]
                 == formats.render_prompt("answer-only", train_ds[i]["query"])]
    assert grounding == [3, 7]  # floor((i + 1) / 4) steps up at i = 3 and 7: 2 of 8 rows
    parsed = formats.parse_for_prompt(rows[3]["completion"][0]["content"], "answer-only")
    assert parsed.ok and parsed.bbox == [float(round(v)) for v in train_ds[3]["gt_bbox"]]
    assert "<think>" in rows[2]["completion"][0]["content"]
    assert [training.is_grounding_row(i, 0.3) for i in range(10)].count(True) == 3
    with pytest.raises(ValueError, match="grounding_share"):
        training.sft_rows(train_ds, "wise-train", "wise", grounding_share=1.0)


def test_rows_without_a_rationale_fail_naming_the_row(train_ds):
    broken = train_ds.map(lambda r, i: {"concise": "" if i == 3 else r["concise"]}, with_indices=True)
    bad_id = broken[3]["id"]
    with pytest.raises(ValueError, match=rf"1 of {len(broken)} rows have an empty 'concise' rationale \(first: row 3, "
                                         rf"id '{bad_id}'\).*build-sft"):
        training.sft_rows(broken, "wise-train", "wise")
    # answer-only targets need no rationale
    assert len(training.sft_rows(broken, "answer-only", "answer")) == len(broken)


def test_tiny_sft_lowers_the_loss_and_changes_the_weights(tiny_model_dir, shapeworld_dir, tmp_path):
    from wise_rl.scripts import sft

    out = tmp_path / "sft"
    steps = 24
    argv = sft_argv(tiny_model_dir, shapeworld_dir, out, "--max_steps", str(steps), "--per_device_train_batch_size",
                    "4", "--learning_rate", "1e-2", "--logging_steps", "1", "--save_strategy", "no",
                    "--sample_log_every", str(steps), "--sample_log_count", "1", "--report_to", "tensorboard")
    t0 = time.perf_counter()
    result = sft.main(*training.parse_sft_args(argv))
    elapsed = time.perf_counter() - t0
    assert result["global_step"] == steps

    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    losses = [h["loss"] for h in history if "loss" in h]
    assert len(losses) == steps
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < first - 1.0, f"loss did not fall: {first:.3f} → {last:.3f}"

    before = load_file(str(Path(tiny_model_dir) / "model.safetensors"))
    after = load_file(str(out / "model.safetensors"))
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert len(changed) > len(before) // 2, f"only {len(changed)} of {len(before)} tensors changed"
    # the final folder is a loadable model + processor; tensorboard events and sample generations were written
    from wise_rl.models import load_processor

    assert load_processor(out).tokenizer is not None
    assert list(out.glob("runs/*/events.out.tfevents.*")), "report_to tensorboard wrote no event file"
    sample = json.loads((out / "samples.jsonl").read_text().splitlines()[0])
    assert sample["step"] == steps and "completion" in sample and sample["target"].startswith("<think>")
    # the folder says how to prompt the model it holds (wise-rl eval / infer read it)
    record = json.loads((out / "wise_rl.json").read_text())
    assert (record["target_mode"], record["eval_prompt"], record["infer_prompt"]) == (
        "wise", "wise-compact", "wise-s-compact")  # recipes/tiny/sft.yaml trains on wise-train-compact
    print(f"\ntiny SFT: {steps} steps of batch 4 in {elapsed:.1f} s ({elapsed / steps:.2f} s/step incl. setup)")


def test_qlora_sft_step_runs_on_cpu_and_trains_only_lora(tiny_model_dir, shapeworld_dir, tmp_path):
    pytest.importorskip("bitsandbytes")
    from wise_rl.scripts import sft

    out = tmp_path / "qlora"
    argv = sft_argv(tiny_model_dir, shapeworld_dir, out, "--max_steps", "2", "--per_device_train_batch_size", "2",
                    "--learning_rate", "1e-2", "--save_strategy", "no", "--load_in_4bit", "true",
                    "--use_peft", "true", "--lora_r", "4", "--lora_alpha", "8", "--dataset_limit", "8")
    result = sft.main(*training.parse_sft_args(argv))
    assert result["global_step"] == 2
    assert result["quantized"] == "4bit" and result["peft"]
    assert 0 < result["trainable_params"] < result["total_params"] / 10
    adapter = load_file(str(out / "adapter_model.safetensors"))
    cfg = json.loads((out / "adapter_config.json").read_text())
    assert "language_model" in str(cfg["target_modules"])  # language model only by default
    lora_b = {k: v for k, v in adapter.items() if "lora_B" in k}
    assert lora_b and all("language_model" in k for k in adapter)
    # LoRA B starts at zero: any non-zero entry means the adapter was trained
    assert any(v.abs().sum() > 0 for v in lora_b.values())
    assert not (out / "model.safetensors").exists()  # only the adapter is saved


def test_freeze_vision_tower_trains_only_the_language_side(tiny_model_dir, shapeworld_dir, tmp_path):
    from wise_rl.scripts import sft

    out = tmp_path / "sft"
    argv = sft_argv(tiny_model_dir, shapeworld_dir, out, "--max_steps", "3", "--per_device_train_batch_size", "2",
                    "--learning_rate", "1e-2", "--save_strategy", "no", "--freeze_vision_tower", "true")
    result = sft.main(*training.parse_sft_args(argv))
    before = load_file(str(Path(tiny_model_dir) / "model.safetensors"))
    after = load_file(str(out / "model.safetensors"))
    vision = [k for k in before if ".visual." in k or k.startswith("visual.")]
    language = [k for k in before if k not in vision]
    assert vision and all(torch.equal(before[k], after[k]) for k in vision)
    assert any(not torch.equal(before[k], after[k]) for k in language)
    assert result["trainable_params"] == result["total_params"] - sum(before[k].numel() for k in vision)


def test_freeze_vision_tower_refuses_lora_on_the_vision_tower(tiny_model_dir, shapeworld_dir, tmp_path):
    argv = sft_argv(tiny_model_dir, shapeworld_dir, tmp_path / "x", "--freeze_vision_tower", "true",
                    "--use_peft", "true", "--lora_target", "all")
    with pytest.raises(training.ConfigError, match="freeze_vision_tower.*lora_target: all"):
        training.validate_sft_args(*training.parse_sft_args(argv))
    with pytest.raises(training.ConfigError, match="no submodule named visual"):
        training.freeze_vision_tower(torch.nn.Sequential(torch.nn.Linear(2, 2)))
