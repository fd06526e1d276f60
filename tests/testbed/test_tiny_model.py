"""The testbed's tiny-model kit (wise_rl.testbed.fixtures.tiny_model, .tokenizer): presets, the offline tokenizer, the CLI."""

from __future__ import annotations

import re
import time

import pytest
import torch

from wise_rl import formats
from wise_rl.models import count_parameters, load_model, load_processor, weight_bytes
from wise_rl.testbed.fixtures.tiny_model import PRESETS, build_tiny_model
from wise_rl.testbed.fixtures.tokenizer import train_tokenizer


@pytest.fixture(scope="module")
def processor(tiny_model_dir):
    return load_processor(tiny_model_dir)


def test_tiny_config_matches_the_brief(tiny_model_dir):
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(tiny_model_dir)
    text, vision = config.text_config, config.vision_config
    assert (text.hidden_size, text.num_hidden_layers, text.num_attention_heads, text.num_key_value_heads) == (
        16, 2, 4, 2)
    head_dim = text.hidden_size // text.num_attention_heads
    assert sum(text.rope_parameters["mrope_section"]) * 2 == head_dim
    assert text.rope_parameters["mrope_section"][1] > 0 and text.rope_parameters["mrope_section"][2] > 0
    assert (vision.depth, vision.hidden_size, vision.patch_size, vision.spatial_merge_size) == (2, 16, 14, 2)
    assert (vision.temporal_patch_size, vision.window_size, vision.out_hidden_size) == (2, 112, 16)
    assert all(i < vision.depth for i in vision.fullatt_block_indexes)


def test_build_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="multiple of 28"):
        build_tiny_model(tmp_path / "a", image_size=100)
    with pytest.raises(ValueError, match="unknown preset"):
        build_tiny_model(tmp_path / "b", preset="huge")


# ----------------------------------------------------------------------------------------------------------------
# Tokenizer
# ----------------------------------------------------------------------------------------------------------------
def test_tokenizer_round_trips_the_format_exactly(processor):
    tok = processor.tokenizer
    answer = formats.answer_dict([7, 105, 998, 640], [[30, 110], [35, 180]])
    target = formats.build_target("the red one is largest", answer,
                                  "There are three shapes; the red square is the largest, so it is the target.")
    ids = tok(target, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == target
    assert formats.parse_completion(tok.decode(ids)).answer["bbox"] == [7.0, 105.0, 998.0, 640.0]
    for name in formats.available_prompts():
        prompt = formats.render_prompt(name, "The smallest blue circle above the green triangle.")
        assert tok.decode(tok(prompt, add_special_tokens=False)["input_ids"]) == prompt
    # Unusual text (outside the training corpus) still round-trips: byte-level BPE has no unknown token.
    odd = "Zürich — 東京 ✓ {\"x\": -1.5e3}\n\ttabs"
    assert tok.decode(tok(odd, add_special_tokens=False)["input_ids"]) == odd
    # The trained merges compress the format: far fewer tokens than bytes.
    assert len(ids) < len(target.encode()) / 2


def test_tokenizer_strips_special_tokens_on_request(processor):
    tok = processor.tokenizer
    text = "<think>red</think><|im_end|>"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert ids[-1] == tok.eos_token_id
    assert tok.decode(ids, skip_special_tokens=True) == "<think>red</think>"


def test_tokenizer_is_deterministic_and_sized(processor):
    from wise_rl.testbed.fixtures import tokenizer

    tokenizer._trained_bpe.cache_clear()
    fresh = train_tokenizer()
    assert fresh.get_vocab() == processor.tokenizer.get_vocab()
    assert 2000 <= len(fresh) <= 4096


# ----------------------------------------------------------------------------------------------------------------
# The small preset and the CLI
# ----------------------------------------------------------------------------------------------------------------
def test_small_preset_is_under_10_mb(tmp_path):
    from transformers import AutoModelForImageTextToText

    start = time.perf_counter()
    path = build_tiny_model(tmp_path / "small", preset="small")
    elapsed = time.perf_counter() - start
    assert elapsed < 10, f"building the small preset took {elapsed:.1f} s"
    assert weight_bytes(path) < 10e6
    model = AutoModelForImageTextToText.from_pretrained(path)
    n = count_parameters(model)
    assert n * 4 <= weight_bytes(path) < n * 4 + 200_000  # float32 weights plus the safetensors header
    text = model.config.text_config
    head_dim = text.hidden_size // text.num_attention_heads
    assert sum(text.rope_parameters["mrope_section"]) * 2 == head_dim
    assert all(s > 0 for s in text.rope_parameters["mrope_section"])  # every axis gets frequencies
    assert PRESETS["small"].text_hidden == text.hidden_size
    # Its layer widths suit bitsandbytes' CPU nf4 inference kernel: eval-mode forward works 4-bit.
    pytest.importorskip("bitsandbytes")
    q_model = load_model(path, quantization="nf4", dtype=torch.float32).eval()
    with torch.no_grad():
        logits = q_model(input_ids=torch.tensor([[1, 2, 3]])).logits
    assert logits.shape == (1, 3, text.vocab_size) and torch.isfinite(logits).all()


def test_cli_tiny_model(tmp_path, capsys):
    from wise_rl.cli import main

    assert main(["tiny-model", "--out", str(tmp_path / "m"), "--preset", "tiny", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    n = int(re.search(r"parameters: ([\d,]+)", out).group(1).replace(",", ""))
    assert n == count_parameters(load_model(tmp_path / "m"))
    assert f"{weight_bytes(tmp_path / 'm'):,} bytes" in out
    with pytest.raises(SystemExit):
        main(["tiny-model", "--preset", "tiny"])  # --out is required
