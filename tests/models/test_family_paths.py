"""The whole path on the newer families (Qwen3-VL and Qwen3.5, from hub-layout tiny folders): SFT records the native
frame, GRPO with the WISE rewards moves every trainable parameter, RLOO runs, QLoRA trains only the adapter on the
family's LoRA targets, a LoRA run resumes and exports (adapter and merged), and eval / score / infer read the frame
from the model with the box and the SAM2 decoders. Tiny sizes and 1-2 steps: about a minute on two cores."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from wise_rl import training
from wise_rl.testbed.fixtures.tiny_model import build_tiny_model

FAMILIES = ("qwen3_vl", "qwen3_5")
WISE = ["format", "answer_schema", "bbox_iou", "bbox_l1", "points", "self_distillation", "mask_iou"]


def completion_chars(completions, **kwargs):
    """A reward that differs within a group of a random model's samples: the completion's length in characters."""
    return [float(len(c[0]["content"] if isinstance(c, list) else c)) for c in completions]


def grpo_argv(model_dir, data_dir, out, *extra):
    return ["--model_name_or_path", str(model_dir), "--dataset", str(data_dir), "--dataset_split", "train",
            "--dataset_limit", "4", "--output_dir", str(out), "--use_cpu", "true", "--report_to", "none",
            "--per_device_train_batch_size", "4", "--num_generations", "2", "--gradient_accumulation_steps", "1",
            "--max_completion_length", "12", "--logging_steps", "1", "--save_strategy", "no",
            "--learning_rate", "1e-2", "--seed", "0", "--gradient_checkpointing", "false", *extra]


def sft_argv(model_dir, data_dir, out, *extra):
    return ["--model_name_or_path", str(model_dir), "--dataset", str(data_dir), "--dataset_split", "train",
            "--dataset_limit", "8", "--output_dir", str(out), "--use_cpu", "true", "--report_to", "none",
            "--sample_log_every", "0", "--per_device_train_batch_size", "2", "--learning_rate", "1e-2",
            "--logging_steps", "1", "--prompt_template", "wise-train-compact", *extra]


@pytest.fixture(scope="module", params=FAMILIES)
def family_model(request, tmp_path_factory):
    return request.param, build_tiny_model(tmp_path_factory.mktemp(request.param), family=request.param)


def test_sft_trains_in_the_native_frame_and_records_it(family_model, shapeworld_dir, tmp_path):
    from safetensors.torch import load_file

    from wise_rl.scripts import sft

    name, model_dir = family_model
    out = tmp_path / "sft"
    result = sft.main(*training.parse_sft_args(sft_argv(model_dir, shapeworld_dir, out, "--max_steps", "2",
                                                        "--save_strategy", "no")))
    assert result["global_step"] == 2
    record = json.loads((out / "wise_rl.json").read_text())
    assert record["frame"] == "rel1000"
    before, after = load_file(str(model_dir / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert sum(not torch.equal(before[k], after[k]) for k in before) > len(before) // 2
    # the trained folder carries the family's training template, so eval prompts as training did
    from wise_rl.models.families import family_named

    assert (out / "chat_template.jinja").read_text() == family_named(name).chat_template()


def test_grpo_with_the_wise_rewards_moves_every_trainable_parameter(family_model, shapeworld_dir, tmp_path,
                                                                    monkeypatch):
    from wise_rl.scripts import grpo

    _, model_dir = family_model
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    argv = grpo_argv(model_dir, shapeworld_dir, tmp_path / "grpo", "--max_steps", "1", "--temperature", "1.0",
                     "--beta", "0.0", "--reward_funcs", *WISE, f"{__name__}:completion_chars")
    parsed = training.parse_grpo_args(argv)
    training.validate_grpo_args(*parsed)
    trainer, _, rows = grpo.build_trainer(*parsed)
    assert set(rows["frame"]) == {"rel1000"}  # the rewards compare in the native frame
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    trainer.train()
    steps = [h for h in trainer.state.log_history if "reward_std" in h]
    assert steps and all(f"rewards/{name}/mean" in steps[0] for name in WISE)
    unchanged = [n for n, p in before.items() if torch.equal(p, trainer.model.get_parameter(n))]
    assert not unchanged, f"{len(unchanged)} of {len(before)} trainable parameters did not change: {unchanged[:5]}"


def test_rloo_and_qlora_on_the_family_lora_targets(family_model, shapeworld_dir, tmp_path):
    pytest.importorskip("bitsandbytes")
    from safetensors.torch import load_file

    from wise_rl.models.families import detect_family
    from wise_rl.scripts import grpo

    name, model_dir = family_model
    rloo = grpo.main(*training.parse_grpo_args(grpo_argv(
        model_dir, shapeworld_dir, tmp_path / "rloo", "--algorithm", "rloo", "--max_steps", "1",
        "--reward_funcs", "format", "bbox_iou", "--beta", "0.0")))
    assert rloo["global_step"] == 1
    out = tmp_path / "qlora"
    result = grpo.main(*training.parse_grpo_args(grpo_argv(
        model_dir, shapeworld_dir, out, "--max_steps", "1", "--reward_funcs", "format", "bbox_iou",
        "--load_in_4bit", "true", "--use_peft", "true", "--lora_r", "4", "--lora_alpha", "8")))
    assert result["quantized"] == "4bit" and result["peft"]
    cfg = json.loads((out / "adapter_config.json").read_text())
    assert cfg["target_modules"] == detect_family(model_dir).lora_regex
    adapter = load_file(str(out / "adapter_model.safetensors"))
    assert adapter and all(".language_model.layers." in k for k in adapter)
    if name == "qwen3_5":
        assert any(".linear_attn." in k for k in adapter)  # the gated-delta-net layers are adapted too


def test_lora_resume_export_and_eval_score_infer_in_the_native_frame(family_model, shapeworld_dir, tmp_path):
    from wise_rl.cli import main as cli
    from wise_rl.scripts import sft
    from wise_rl.testbed.fixtures.tiny_sam2 import build_tiny_sam2

    _, model_dir = family_model
    out = tmp_path / "lora"
    lora = ("--use_peft", "true", "--lora_r", "4", "--lora_alpha", "8", "--save_strategy", "steps", "--save_steps",
            "2")
    first = sft.main(*training.parse_sft_args(sft_argv(model_dir, shapeworld_dir, out, "--max_steps", "2", *lora)))
    second = sft.main(*training.parse_sft_args(sft_argv(model_dir, shapeworld_dir, out, "--max_steps", "3", *lora)))
    assert first["global_step"] == 2 and second["global_step"] == 3
    assert str(second["resumed_from"]).endswith("checkpoint-2")
    merged = tmp_path / "merged"
    assert cli(["export", "--adapter", str(out), "--out", str(merged)]) == 0
    assert json.loads((merged / "wise_rl.json").read_text())["frame"] == "rel1000"

    sam2 = build_tiny_sam2(tmp_path / "sam2", seed=0)
    for decoder in (["--mask-decoder", "box"], ["--mask-decoder", "sam2", "--sam2", str(sam2)]):
        folder = tmp_path / f"eval-{decoder[1]}"
        assert cli(["eval", "--model", str(merged), "--dataset", str(shapeworld_dir), "--split", "test", "--limit",
                    "2", "--max-new-tokens", "8", "--out", str(folder), "--quiet", *decoder]) == 0
        run = json.loads((folder / "run.json").read_text())
        assert run["frame"] == "rel1000" and run["mask_decoder"] == decoder[1]
    # score re-reads the completions; told the model, it needs no --frame
    preds = tmp_path / "preds.jsonl"
    samples = [json.loads(line) for line in (tmp_path / "eval-box" / "samples.jsonl").read_text().splitlines()]
    preds.write_text("".join(json.dumps({"id": s["id"], "completion": s["completion"]}) + "\n" for s in samples))
    scored = tmp_path / "scored.json"
    assert cli(["score", "--dataset", str(shapeworld_dir), "--split", "test", "--limit", "2", "--predictions",
                str(preds), "--tokenizer", str(merged), "--out", str(scored), "--quiet"]) == 0
    result = json.loads(scored.read_text())
    assert result["settings"]["frame"] == "rel1000"
    evaluated = json.loads((tmp_path / "eval-box" / "metrics.json").read_text())
    assert result["gIoU"] == pytest.approx(evaluated["gIoU"])
    image = tmp_path / "wide.png"
    Image.new("RGB", (200, 100), (0, 0, 200)).save(image)
    assert cli(["infer", "--model", str(merged), "--image", str(image), "--query", "the blue one",
                "--max-new-tokens", "8", "--out", str(tmp_path / "o.png")]) == 0
    assert (tmp_path / "o.png").is_file()


def test_infer_reads_a_rel1000_answer_on_a_non_square_image(family_model, tmp_path, monkeypatch):
    from wise_rl import evaluate
    from wise_rl.commands.infer import infer

    _, model_dir = family_model
    completion = ('<think>sky</think><answer>{"bbox": [100, 200, 500, 1000], "points_1": [250, 500], '
                  '"points_2": [300, 600]}</answer>')
    seen = []
    monkeypatch.setattr(evaluate.HFGenerator, "__call__", lambda self, images, queries: seen.extend(images) or [
        evaluate.Generation(completion, 30, 0.01)])
    image = tmp_path / "wide.png"
    Image.new("RGB", (400, 100)).save(image)
    result = infer(model_dir, image, "x", prompt="wise")
    assert result["frame"] == "rel1000" and seen[0].size == (400, 100)  # the image as given: the processor resizes
    np.testing.assert_allclose(result["answer_original"]["bbox"], [40, 20, 200, 100])
    np.testing.assert_allclose(result["answer_original"]["points_1"], [100, 50])


def test_a_moe_model_after_sft_still_generates_and_trains_with_grpo(shapeworld_dir, tmp_path):
    """TRL's SFT saves an MoE config with output_router_logits on (its load-balancing loss); generation with it on
    fails in transformers, so loading for eval and the GRPO trainer turn it off (GRPO asks for router logits in
    its loss forward itself)."""
    from wise_rl.models import load_model, load_processor
    from wise_rl.scripts import grpo, sft

    base = build_tiny_model(tmp_path / "moe", family="qwen3_vl_moe")
    out = tmp_path / "sft"
    sft.main(*training.parse_sft_args(sft_argv(base, shapeworld_dir, out, "--max_steps", "1",
                                               "--save_strategy", "no")))
    assert json.loads((out / "config.json").read_text())["text_config"]["output_router_logits"] is True
    model, processor = load_model(out).eval(), load_processor(out)
    assert model.config.get_text_config().output_router_logits is False
    text = processor.apply_chat_template([{"role": "user", "content": [{"type": "image"},
                                                                       {"type": "text", "text": "x"}]}],
                                         add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[text], images=[Image.new("RGB", (64, 64))], return_tensors="pt")
    with torch.no_grad():
        assert model.generate(**inputs, max_new_tokens=4, do_sample=False).shape[1] == inputs["input_ids"].shape[1] + 4
    result = grpo.main(*training.parse_grpo_args(grpo_argv(out, shapeworld_dir, tmp_path / "grpo", "--max_steps", "1",
                                                           "--reward_funcs", "format", "bbox_iou")))
    assert result["global_step"] == 1
