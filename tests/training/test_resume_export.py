"""Resume (a run stopped mid-way continues its step count; half-written checkpoints are skipped) and LoRA export."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from wise_rl import formats, training

ROOT = Path(__file__).resolve().parents[2]


def lora_sft_argv(model_dir, data_dir, out, max_steps):
    return ["--config", str(ROOT / "recipes/tiny/sft.yaml"), "--model_name_or_path", str(model_dir),
            "--dataset", str(data_dir), "--dataset_split", "train", "--dataset_limit", "16",
            "--output_dir", str(out), "--report_to", "none", "--sample_log_every", "0",
            "--per_device_train_batch_size", "2", "--learning_rate", "1e-2", "--logging_steps", "1",
            "--max_steps", str(max_steps), "--save_steps", "2", "--save_total_limit", "5",
            "--use_peft", "true", "--lora_r", "4", "--lora_alpha", "8", "--lora_dropout", "0.0"]


@pytest.fixture(scope="module")
def resumed_run(tiny_model_dir, shapeworld_dir, tmp_path_factory):
    """Train LoRA to step 2 (the 'killed' run), leave a half-written checkpoint-3 behind, re-run to step 4."""
    from wise_rl.scripts import sft

    out = tmp_path_factory.mktemp("resume") / "run"
    first = sft.main(*training.parse_sft_args(lora_sft_argv(tiny_model_dir, shapeworld_dir, out, 2)))
    assert first["global_step"] == 2 and first["resumed_from"] is None
    # a save interrupted at step 3: weights written, trainer_state.json (written last) missing
    half = out / "checkpoint-3"
    shutil.copytree(out / "checkpoint-2", half)
    (half / "trainer_state.json").unlink()
    second = sft.main(*training.parse_sft_args(lora_sft_argv(tiny_model_dir, shapeworld_dir, out, 4)))
    return out, first, second


def test_rerun_continues_the_step_count_from_the_last_complete_checkpoint(resumed_run):
    out, _, second = resumed_run
    assert second["resumed_from"] == str(out / "checkpoint-2")
    assert second["global_step"] == 4
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 4
    logged_steps = [h["step"] for h in state["log_history"] if "loss" in h]
    assert logged_steps == [1, 2, 3, 4]  # steps 1-2 come from the first run's checkpoint
    assert (out / "checkpoint-4" / "trainer_state.json").is_file()
    assert list(out.glob("incomplete/checkpoint-3.*")), "the half-written checkpoint was not set aside"


def test_resume_from_an_explicit_checkpoint_and_refuse_incomplete_ones(resumed_run, tmp_path):
    out, _, _ = resumed_run
    args = training.parse_sft_args(["--output_dir", str(out), "--resume_from_checkpoint", str(out / "checkpoint-2"),
                                    "--use_cpu", "true"])
    assert training.resolve_resume(args[0], args[1]) == str(out / "checkpoint-2")
    incomplete = next(out.glob("incomplete/checkpoint-3.*"))
    args = training.parse_sft_args(["--output_dir", str(out), "--resume_from_checkpoint", str(incomplete),
                                    "--use_cpu", "true"])
    with pytest.raises(training.ConfigError, match="not a complete checkpoint"):
        training.resolve_resume(args[0], args[1])
    fresh = training.parse_sft_args(["--output_dir", str(out), "--resume", "false", "--use_cpu", "true"])
    assert training.resolve_resume(fresh[0], fresh[1]) is None


def _inputs(processor, image, query="the red circle"):
    from trl.data_utils import prepare_multimodal_messages

    messages = prepare_multimodal_messages(
        [{"role": "user", "content": formats.render_prompt("wise-train", query)},
         {"role": "assistant", "content": "<think>red</think>"}], images=[image])
    text = processor.apply_chat_template(messages, tokenize=False)
    return processor(text=[text], images=[image], return_tensors="pt")


def test_export_merges_the_adapter_into_a_standalone_model(resumed_run, tiny_model_dir, shapeworld_dir, tmp_path):
    from peft import PeftModel

    from wise_rl.cli import main as cli
    from wise_rl.data.loaders import load_source
    from wise_rl.models import load_model, load_processor

    adapter, _, _ = resumed_run
    merged_dir = tmp_path / "merged"
    assert cli(["export", "--adapter", str(adapter), "--out", str(merged_dir)]) == 0
    assert (merged_dir / "model.safetensors").is_file() and not (merged_dir / "adapter_config.json").exists()
    # how to prompt it travels with the weights
    from wise_rl.models.folder_check import weights_digest

    exported = json.loads((merged_dir / "wise_rl.json").read_text())
    assert exported.pop("weights_digest") == weights_digest(merged_dir)
    trained = json.loads((adapter / "wise_rl.json").read_text())
    trained.pop("weights_digest", None)
    assert exported == trained

    image = load_source(str(shapeworld_dir), split="test", limit=1)[0]["image"]
    processor = load_processor(merged_dir)
    inputs = _inputs(processor, image)
    peft_model = PeftModel.from_pretrained(load_model(tiny_model_dir, dtype="float32"), str(adapter)).eval()
    merged = load_model(merged_dir, dtype="float32").eval()
    base = load_model(tiny_model_dir, dtype="float32").eval()
    with torch.no_grad():
        want = peft_model(**inputs).logits
        got = merged(**inputs).logits
        plain = base(**inputs).logits
    assert not torch.allclose(want, plain, atol=1e-4), "the adapter did not change the model"
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)

    with pytest.raises(FileExistsError, match="not empty"):
        cli(["export", "--adapter", str(adapter), "--out", str(merged_dir)])
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        cli(["export", "--adapter", str(tiny_model_dir), "--out", str(tmp_path / "x")])
