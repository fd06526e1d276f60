"""Processor and model loaders (wise_rl.models) on the tiny preset and on real checkpoint layouts: reload, generate,
LoRA, quantization, clear errors for missing folders."""

from __future__ import annotations

import json
import re

import pytest
import torch
from PIL import Image

from wise_rl import formats
from wise_rl.models import (
    EOS_TOKEN,
    PAD_TOKEN,
    SPECIAL_TOKENS,
    chat_template,
    load_model,
    load_processor,
    lora_config,
    quantization_config,
)
from wise_rl.testbed.fixtures.tokenizer import train_tokenizer


def _image(size=112, colour=(200, 30, 30)):
    img = Image.new("RGB", (size, size), (255, 255, 255))
    img.paste(colour, (10, 20, 40, 60))
    return img


def _messages(query="the red square"):
    return [{"role": "user", "content": [{"type": "image"},
                                         {"type": "text", "text": formats.render_prompt("wise", query)}]}]


@pytest.fixture(scope="module")
def processor(tiny_model_dir):
    return load_processor(tiny_model_dir)


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    from transformers import AutoModelForImageTextToText

    return AutoModelForImageTextToText.from_pretrained(tiny_model_dir).eval()


# ----------------------------------------------------------------------------------------------------------------
# build → save → reload → generate
# ----------------------------------------------------------------------------------------------------------------
def test_folder_has_safetensors_and_processor_files(tiny_model_dir):
    names = {p.name for p in tiny_model_dir.iterdir()}
    assert "model.safetensors" in names and not any(n.endswith(".bin") for n in names)
    assert {"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"} <= names
    # The folder names the stock classes so that AutoProcessor loads it where torchvision exists.
    proc_cfg = json.loads((tiny_model_dir / "processor_config.json").read_text())
    assert proc_cfg["processor_class"] == "Qwen2_5_VLProcessor"
    assert proc_cfg["image_processor"]["image_processor_type"] == "Qwen2VLImageProcessor"
    assert json.loads((tiny_model_dir / "tokenizer_config.json").read_text())["processor_class"] == (
        "Qwen2_5_VLProcessor"
    )


def test_reload_and_generate_from_chat_prompt(tiny_model_dir, model, processor):
    from transformers import ProcessorMixin, Qwen2_5_VLForConditionalGeneration

    assert isinstance(model, Qwen2_5_VLForConditionalGeneration)
    assert isinstance(processor, ProcessorMixin)
    text = processor.apply_chat_template(_messages(), add_generation_prompt=True, tokenize=False)
    assert text.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n")
    assert text.endswith("<|im_end|>\n<|im_start|>assistant\n")
    assert "<|vision_start|><|image_pad|><|vision_end|>" in text
    batch = processor(text=[text, text], images=[_image(), _image(colour=(0, 0, 255))], return_tensors="pt",
                      padding=True)
    assert batch["image_grid_thw"].tolist() == [[1, 8, 8], [1, 8, 8]]
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=4, min_new_tokens=4, do_sample=False)
    prompt_len = batch["input_ids"].shape[1]
    assert out.shape == (2, prompt_len + 4)
    assert torch.equal(out[:, :prompt_len], batch["input_ids"])  # generation appends, never rewrites
    assert all(isinstance(s, str) for s in processor.batch_decode(out[:, prompt_len:], skip_special_tokens=True))


def test_image_gives_sixteen_image_tokens(model, processor):
    text = processor.apply_chat_template(_messages(), add_generation_prompt=True, tokenize=False)
    batch = processor(text=[text], images=[_image(112)], return_tensors="pt", padding=True)
    assert int((batch["input_ids"] == model.config.image_token_id).sum()) == 16
    assert batch["pixel_values"].shape[0] == 64  # 8×8 patches of 14 px, not resized
    # A larger image is bounded by the saved min/max pixels (= 112²) to the same 16 tokens.
    batch = processor(text=[text], images=[_image(224)], return_tensors="pt", padding=True)
    assert int((batch["input_ids"] == model.config.image_token_id).sum()) == 16


def test_pixel_bounds_override(tiny_model_dir, model):
    proc = load_processor(tiny_model_dir, min_pixels=224 * 224, max_pixels=224 * 224)
    text = proc.apply_chat_template(_messages(), add_generation_prompt=True, tokenize=False)
    batch = proc(text=[text], images=[_image(112)], return_tensors="pt")
    assert int((batch["input_ids"] == model.config.image_token_id).sum()) == 64  # upscaled to 224²
    with pytest.raises(ValueError, match="min_pixels"):
        load_processor(tiny_model_dir, min_pixels=10_000, max_pixels=100)


def test_chat_template_is_the_official_one(processor):
    import importlib.resources

    trl_template = importlib.resources.files("trl") / "chat_templates" / "qwen2_5_vl.jinja"
    assert chat_template() == trl_template.read_text()
    assert processor.chat_template == chat_template()


def test_config_token_ids_match_tokenizer(model, processor):
    tok, cfg = processor.tokenizer, model.config
    assert cfg.image_token_id == tok.convert_tokens_to_ids("<|image_pad|>") == processor.image_token_id
    assert cfg.video_token_id == tok.convert_tokens_to_ids("<|video_pad|>")
    assert cfg.vision_start_token_id == tok.convert_tokens_to_ids("<|vision_start|>")
    assert cfg.vision_end_token_id == tok.convert_tokens_to_ids("<|vision_end|>")
    assert tok.eos_token == EOS_TOKEN and tok.pad_token == PAD_TOKEN
    assert cfg.text_config.eos_token_id == tok.eos_token_id == model.generation_config.eos_token_id
    assert cfg.text_config.pad_token_id == tok.pad_token_id == model.generation_config.pad_token_id
    assert cfg.text_config.vocab_size == len(tok)
    assert model.get_input_embeddings().weight.shape[0] == len(tok)
    # Every Qwen special token is one token, with a distinct id inside the embedding table.
    ids = [tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS]
    assert len(set(ids)) == len(SPECIAL_TOKENS) and max(ids) < len(tok)
    for t in SPECIAL_TOKENS:
        assert tok(t, add_special_tokens=False)["input_ids"] == [tok.convert_tokens_to_ids(t)]


# ----------------------------------------------------------------------------------------------------------------
# Real checkpoint layouts
# ----------------------------------------------------------------------------------------------------------------
def _write_real_style_checkpoint(folder, processor_class, model_type):
    """A folder laid out like the hub's Qwen2-VL / Qwen2.5-VL checkpoints (legacy preprocessor_config.json,
    chat_template.json, tokenizer files), built from the offline tokenizer."""
    tok = train_tokenizer()
    tok.save_pretrained(folder)
    cfg_path = folder / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.pop("processor_class", None)
    cfg_path.write_text(json.dumps(cfg))
    (folder / "chat_template.json").write_text(json.dumps({"chat_template": chat_template()}))
    for leftover in ("chat_template.jinja",):
        if (folder / leftover).exists():
            (folder / leftover).unlink()
    (folder / "preprocessor_config.json").write_text(json.dumps({
        "min_pixels": 3136, "max_pixels": 12845056, "patch_size": 14, "temporal_patch_size": 2, "merge_size": 2,
        "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
        "image_processor_type": "Qwen2VLImageProcessor", "processor_class": processor_class,
    }))
    (folder / "config.json").write_text(json.dumps({"model_type": model_type}))
    return folder


@pytest.mark.parametrize("processor_class,model_type", [("Qwen2_5_VLProcessor", "qwen2_5_vl"),
                                                        ("Qwen2VLProcessor", "qwen2_vl")])
def test_real_checkpoint_folder_loads_as_a_processor(tmp_path, processor_class, model_type):
    import transformers
    from transformers import PreTrainedTokenizerBase, ProcessorMixin

    folder = _write_real_style_checkpoint(tmp_path / "ckpt", processor_class, model_type)
    proc = load_processor(folder)
    assert isinstance(proc, ProcessorMixin) and not isinstance(proc, PreTrainedTokenizerBase)
    assert isinstance(proc, getattr(transformers, processor_class))
    assert proc.chat_template == chat_template()
    text = proc.apply_chat_template(_messages(), add_generation_prompt=True, tokenize=False)
    image_id = proc.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    # Real defaults (min 56², max 12.8 M pixels): 196 px → 7×7 merged tokens = 49.
    batch = proc(text=[text], images=[_image(196)], return_tensors="pt", padding=True)
    assert int((batch["input_ids"] == image_id).sum()) == 49
    # With a pixel cap, the same image is scaled down to 112² → 16 tokens.
    capped = load_processor(folder, max_pixels=112 * 112)
    batch = capped(text=[text], images=[_image(196)], return_tensors="pt", padding=True)
    assert int((batch["input_ids"] == image_id).sum()) == 16
    # save_pretrained keeps the stock class name, so the copy reloads the same way.
    proc.save_pretrained(tmp_path / "copy")
    saved = json.loads((tmp_path / "copy" / "processor_config.json").read_text())
    assert saved["processor_class"] == processor_class
    assert isinstance(load_processor(tmp_path / "copy"), getattr(transformers, processor_class))


def test_unknown_processor_class_is_a_clear_error(tmp_path):
    folder = _write_real_style_checkpoint(tmp_path / "ckpt", "LlavaProcessor", "llava")
    with pytest.raises(ValueError, match=r"LlavaProcessor.*Qwen2"):
        load_processor(folder)


# ----------------------------------------------------------------------------------------------------------------
# TRL compatibility: the calls its trainers make on a processing_class
# ----------------------------------------------------------------------------------------------------------------
def test_trl_sft_collator_and_grpo_prompt_path(model, processor):
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    completion = formats.build_target("red", formats.answer_dict([10, 20, 40, 60], [[20, 30], [30, 50]]), "red.")
    examples = [
        {"images": [_image()], "prompt": _messages(), "completion": [{"role": "assistant", "content": completion}]}
        for _ in range(2)
    ]
    collator = DataCollatorForVisionLanguageModeling(processor, completion_only_loss=True)
    batch = collator(examples)
    # The completion turn renders as "completion<|im_end|>\n"; only those tokens carry labels.
    completion_ids = processor.tokenizer(completion + EOS_TOKEN + "\n", add_special_tokens=False)["input_ids"]
    labelled = batch["labels"][0][batch["labels"][0] != -100].tolist()
    assert labelled == completion_ids
    out = model(**batch)
    assert torch.isfinite(out.loss)

    # GRPOTrainer tokenises conversational prompts with images through apply_chat_template(tokenize=True).
    prompts = [[{"role": "user", "content": [{"type": "image", "image": _image()},
                                             {"type": "text", "text": "the red square"}]}]] * 2
    tokenized = processor.apply_chat_template(conversation=prompts, add_generation_prompt=True, tokenize=True,
                                              return_dict=True)
    assert len(tokenized["input_ids"]) == 2
    assert sum(i == model.config.image_token_id for i in tokenized["input_ids"][0]) == 16
    assert tokenized["image_grid_thw"].tolist() == [[1, 8, 8], [1, 8, 8]]


# ----------------------------------------------------------------------------------------------------------------
# LoRA and quantization helpers
# ----------------------------------------------------------------------------------------------------------------
def test_lora_targets_only_the_language_model(tiny_model_dir):
    from peft import get_peft_model

    model = load_model(tiny_model_dir)
    peft_model = get_peft_model(model, lora_config(r=4, alpha=8, dropout=0.0))
    wrapped = sorted({n.rsplit(".lora_A", 1)[0] for n, _ in peft_model.named_modules() if n.endswith(".lora_A")})
    n_layers = model.config.text_config.num_hidden_layers
    assert len(wrapped) == n_layers * 7  # q, k, v, o, gate, up, down per decoder layer
    pattern = re.compile(r".*\.language_model\.layers\.\d+\.(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj)$")
    assert all(pattern.fullmatch(n) for n in wrapped), wrapped
    assert not any("visual" in n for n in wrapped)
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)

    full = get_peft_model(load_model(tiny_model_dir), lora_config(r=4, target="all"))
    wrapped_all = {n.rsplit(".lora_A", 1)[0] for n, _ in full.named_modules() if n.endswith(".lora_A")}
    assert any("visual.blocks" in n for n in wrapped_all) and set(wrapped) < wrapped_all
    with pytest.raises(ValueError, match="lora target"):
        lora_config(target=3)


def test_quantization_config_and_nf4_load(tiny_model_dir):
    assert quantization_config(None) is None and quantization_config("none") is None
    q = quantization_config("nf4", torch.float32)
    assert q.load_in_4bit and q.bnb_4bit_quant_type == "nf4" and q.bnb_4bit_use_double_quant
    assert q.bnb_4bit_compute_dtype == torch.float32
    with pytest.raises(ValueError, match="unknown quantization"):
        quantization_config("int3")
    pytest.importorskip("bitsandbytes")
    import bitsandbytes as bnb
    from peft import get_peft_model

    model = load_model(tiny_model_dir, quantization="nf4", dtype=torch.float32)
    linear4 = [n for n, m in model.named_modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert any("language_model.layers.0.self_attn.q_proj" in n for n in linear4)
    # The QLoRA path: LoRA on the 4-bit language model, one backward pass reaches the adapters. (Train mode: the
    # CPU inference kernel of bitsandbytes packs weights in blocks of 32 output features, which the tiny
    # preset's 8- and 16-wide projections are not.)
    peft_model = get_peft_model(model, lora_config(r=4, alpha=8, dropout=0.0))
    peft_model.train()
    ids = torch.tensor([[1, 2, 3, 4, 5, 6]])
    out = peft_model(input_ids=ids, labels=ids)
    assert out.logits.shape == (1, 6, model.config.text_config.vocab_size) and torch.isfinite(out.loss)
    out.loss.backward()
    grads = [p.grad for n, p in peft_model.named_parameters() if "lora_B" in n]
    assert grads and all(g is not None for g in grads)


def test_processor_pickles_and_deep_copies(processor):
    import copy
    import pickle

    for clone in (pickle.loads(pickle.dumps(processor)), copy.deepcopy(processor)):
        assert type(clone) is type(processor)
        text = "<think>a</think>"
        assert clone.tokenizer(text)["input_ids"] == processor.tokenizer(text)["input_ids"]
        assert clone.image_processor.size == processor.image_processor.size


@pytest.mark.parametrize("where", ["/no/such/model", "./missing-model", "runs/demo/missing_sft"])
def test_missing_local_model_folder_is_named(tmp_path, where):
    from wise_rl.models import load_model, load_processor

    for loader in (load_model, load_processor):
        with pytest.raises(FileNotFoundError, match="does not exist"):
            loader(where)


def test_model_path_that_is_a_file_is_refused(tmp_path):
    from wise_rl.models import load_model

    path = tmp_path / "model.safetensors"
    path.write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="is a file"):
        load_model(path)


def test_console_script_prints_a_missing_model_as_one_line(tmp_path):
    """`wise-rl eval --model /missing` exits 2 with one 'wise-rl eval: error: …' line naming the folder, no
    traceback; WISE_RL_TRACEBACK=1 shows the traceback."""
    import os
    import subprocess
    import sys

    missing = tmp_path / "no-such-model"
    cmd = [sys.executable, "-m", "wise_rl.cli", "eval", "--model", str(missing), "--dataset", str(tmp_path / "d"),
           "--prompt", "wise-s", "--out", str(tmp_path / "out")]
    env = {k: v for k, v in os.environ.items() if k != "WISE_RL_TRACEBACK"}
    run = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert run.returncode == 2
    assert "Traceback" not in run.stderr
    assert f"wise-rl eval: error: model folder '{missing}' does not exist" in run.stderr
    loud = subprocess.run(cmd, capture_output=True, text=True, env=env | {"WISE_RL_TRACEBACK": "1"})
    assert loud.returncode == 1 and "Traceback" in loud.stderr
