"""Model families: detected from config.json, tiny models of each in hub layout that load without torchvision, the
processor's visual token count, LoRA targets over the language model only, SFT labels only on the answer."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from wise_rl.errors import ConfigError
from wise_rl.models import load_model, load_processor, lora_config
from wise_rl.models.families import FAMILIES, detect_family, family_named
from wise_rl.testbed.fixtures.tiny_model import FAMILY_NAMES, build_tiny_model

HUB_FILES = {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
             "chat_template.jinja", "preprocessor_config.json"}


@pytest.fixture(scope="module")
def family_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    return {name: build_tiny_model(root / name, family=name) for name in FAMILY_NAMES}


def test_every_supported_family_has_a_tiny_model():
    assert set(FAMILY_NAMES) == set(FAMILIES)


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_tiny_model_is_a_hub_folder_of_its_family(family_dirs, name):
    folder = family_dirs[name]
    family = detect_family(folder)
    assert family.name == name
    files = {p.name for p in folder.iterdir()}
    assert HUB_FILES <= files
    pre = json.loads((folder / "preprocessor_config.json").read_text())
    assert pre["processor_class"] == family.processor_class
    assert (pre["patch_size"], pre["merge_size"]) == (family.patch_size, family.merge_size)
    assert ("video_preprocessor_config.json" in files) == (family.processor_class == "Qwen3VLProcessor")
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == [family.model_class]
    # the chat template is the family's (TRL's file; Qwen2.5-VL keeps the project's copy, the same text)
    assert (folder / "chat_template.jinja").read_text() == family.chat_template()


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_processor_and_model_load_and_answer_without_torchvision(family_dirs, name):
    folder = family_dirs[name]
    family = family_named(name)
    processor = load_processor(folder)
    assert type(processor).__name__ == f"ImageOnly{family.processor_class}"
    model = load_model(folder).eval()
    assert type(model).__name__ == family.model_class
    text = processor.apply_chat_template([{"role": "user", "content": [{"type": "image"},
                                                                       {"type": "text", "text": "the red one"}]}],
                                         add_generation_prompt=True, tokenize=False)
    side = 2 * family.px_per_token * 2  # a square of 4 × 4 visual tokens, kept as it is by the processor
    inputs = processor(text=[text], images=[Image.new("RGB", (side, side), "red")], return_tensors="pt")
    assert inputs["image_grid_thw"].tolist() == [[1, side // family.patch_size, side // family.patch_size]]
    assert int((inputs["input_ids"] == processor.image_token_id).sum()) == 16
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 3


@pytest.mark.parametrize("name", FAMILY_NAMES)
@pytest.mark.parametrize("size", [(840, 840), (640, 480)])
def test_visual_tokens_match_the_processor(name, size):
    """Family.visual_tokens is what the family's image processor gives at the real checkpoints' pixel bounds:
    840² → 30² = 900 tokens at 28 px per token, 26² = 676 at 32 px (840 rounds to 832)."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    family = family_named(name)
    ip = Qwen2VLImageProcessorPil(patch_size=family.patch_size, merge_size=family.merge_size)
    grid = ip(images=[Image.new("RGB", size)], return_tensors="pt")["image_grid_thw"][0]
    assert family.visual_tokens(*size) == int(grid.prod()) // family.merge_size ** 2
    if size == (840, 840):
        assert family.visual_tokens(840, 840) == (900 if family.px_per_token == 28 else 676)


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_lora_targets_every_linear_of_the_language_model_and_nothing_else(family_dirs, name):
    from peft.tuners.tuners_utils import check_target_module_exists

    model = load_model(family_dirs[name])
    cfg = lora_config(family=detect_family(family_dirs[name]))
    linears = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    hit = {n for n in linears if check_target_module_exists(cfg, n)}
    language = {n for n in linears if ".language_model." in n and ".mlp.gate" != n[-9:] and "experts" not in n
                and not n.endswith("shared_expert_gate")}
    assert hit and all(".language_model.layers." in n for n in hit)
    assert hit == {n for n in language if check_target_module_exists(cfg, n)}
    kinds = {n.rsplit(".", 1)[-1] for n in hit}
    assert {"q_proj", "k_proj", "v_proj", "o_proj"} <= kinds
    if name.startswith("qwen3_5"):
        assert {"in_proj_qkv", "in_proj_z", "out_proj"} <= kinds  # the gated-delta-net layers too


def test_unsupported_or_missing_config_is_one_line(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llava"}))
    with pytest.raises(ConfigError) as info:
        detect_family(tmp_path)
    message = str(info.value)
    assert "\n" not in message and "llava" in message and all(name in message for name in FAMILIES)
    with pytest.raises(ConfigError, match="no config.json"):
        detect_family(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="not supported"):
        family_named("qwen4")


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_sft_labels_only_the_answer(family_dirs, name):
    """Completion-only loss through TRL's VLM collator: no prompt token and no image token is labelled; the
    labelled tokens are the assistant's answer and the end of its turn."""
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    processor = load_processor(family_dirs[name])
    answer = '<think>red</think><answer>{"bbox": [1, 2, 3, 4]}</answer>'
    example = {"images": [Image.new("RGB", (64, 64), "blue")],
               "prompt": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "find it"}]}],
               "completion": [{"role": "assistant", "content": [{"type": "text", "text": answer}]}]}
    batch = DataCollatorForVisionLanguageModeling(processor=processor, completion_only_loss=True)([example])
    ids, labels = batch["input_ids"][0], batch["labels"][0]
    labelled = labels != -100
    assert not labelled[ids == processor.image_token_id].any()
    text = processor.tokenizer.decode(ids[labelled])
    assert text.startswith(answer) and text.removeprefix(answer).strip() in ("<|im_end|>", "")
    first = int(labelled.nonzero()[0])
    assert processor.tokenizer.decode(ids[:first]).endswith("assistant\n") or "</think>" in processor.tokenizer.decode(
        ids[:first])
