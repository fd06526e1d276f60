"""``wise-rl export`` writes a folder that is what it says: atomic (a killed export leaves ``--out`` as it was),
and a config that matches the weights (embeddings trained through ``modules_to_save`` are exported untied)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from wise_rl import formats, training
from wise_rl.commands import export

ROOT = Path(__file__).resolve().parents[2]


def lora_argv(model_dir, data_dir, out, *extra):
    return ["--config", str(ROOT / "recipes/tiny/sft.yaml"), "--model_name_or_path", str(model_dir),
            "--dataset", str(data_dir), "--dataset_split", "train", "--dataset_limit", "8",
            "--output_dir", str(out), "--report_to", "none", "--sample_log_every", "0",
            "--per_device_train_batch_size", "2", "--learning_rate", "5e-2", "--logging_steps", "1",
            "--max_steps", "2", "--save_steps", "2", "--use_peft", "true", "--lora_r", "4", "--lora_alpha", "8",
            "--lora_dropout", "0.0", *extra]


@pytest.fixture(scope="module")
def embed_run(tiny_model_dir, shapeworld_dir, tmp_path_factory):
    """A LoRA SFT run whose input embeddings were trained too (``lora_modules_to_save: embed_tokens``)."""
    from wise_rl.scripts import sft

    out = tmp_path_factory.mktemp("embed") / "run"
    sft.main(*training.parse_sft_args(lora_argv(tiny_model_dir, shapeworld_dir, out,
                                                "--lora_modules_to_save", "embed_tokens")))
    return out


def _inputs(processor, image):
    from trl.data_utils import prepare_multimodal_messages

    messages = prepare_multimodal_messages(
        [{"role": "user", "content": formats.render_prompt("wise-train", "the red circle")},
         {"role": "assistant", "content": "<think>red</think>"}], images=[image])
    return processor(text=[processor.apply_chat_template(messages, tokenize=False)], images=[image],
                     return_tensors="pt")


def test_an_export_with_trained_embeddings_is_untied_and_reloads_with_the_trained_logits(
        embed_run, tiny_model_dir, shapeworld_dir, tmp_path):
    from peft import PeftModel

    from wise_rl.data.loaders import load_source
    from wise_rl.models import load_model, load_processor

    base_config = json.loads((Path(tiny_model_dir) / "config.json").read_text())
    assert base_config["tie_word_embeddings"] is True  # the base ties them: the case at hand
    merged_dir = export.export_merged(embed_run, tmp_path / "merged")
    config = json.loads((merged_dir / "config.json").read_text())
    assert config["tie_word_embeddings"] is False
    assert config.get("text_config", {}).get("tie_word_embeddings", False) is False
    assert json.loads((merged_dir / "export.json").read_text())["untied_embeddings"] is True

    image = load_source(str(shapeworld_dir), split="test", limit=1)[0]["image"]
    inputs = _inputs(load_processor(merged_dir), image)
    trained = PeftModel.from_pretrained(load_model(tiny_model_dir, dtype="float32"), str(embed_run)).eval()
    reloaded = load_model(merged_dir, dtype="float32").eval()
    emb, head = reloaded.get_input_embeddings().weight, reloaded.get_output_embeddings().weight
    assert emb.data_ptr() != head.data_ptr() and (emb - head).abs().max() > 1e-3, "the embeddings were re-tied"
    with torch.no_grad():
        want, got = trained(**inputs).logits, reloaded(**inputs).logits
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_untie_leaves_a_model_whose_matrices_agree_tied(tiny_model_dir):
    from wise_rl.models import load_model

    model = load_model(tiny_model_dir, dtype="float32")
    assert export.untie_trained_embeddings(model) is False and model.config.tie_word_embeddings is True
    head = model.get_output_embeddings()
    head.weight = torch.nn.Parameter(head.weight.detach().clone() + 1.0)  # what merging a trained copy leaves
    assert export.untie_trained_embeddings(model) is True
    assert model.config.tie_word_embeddings is False and model.config.text_config.tie_word_embeddings is False


class Killed(BaseException):
    pass


def _die_after_weights(monkeypatch):
    original = export._write_export

    def write(adapter, base, dtype, adapter_config, dest):
        original(adapter, base, dtype, adapter_config, dest)
        (dest / "wise_rl.json").unlink(missing_ok=True)  # as if killed before the records were written
        raise Killed

    monkeypatch.setattr(export, "_write_export", write)


def test_a_killed_export_leaves_out_absent_and_a_killed_overwrite_leaves_the_old_export(embed_run, tmp_path,
                                                                                        monkeypatch):
    out = tmp_path / "merged"
    with monkeypatch.context() as m:
        _die_after_weights(m)
        with pytest.raises(Killed):
            export.export_merged(embed_run, out)
    assert not out.exists()  # no half export that eval would run with the default prompt

    export.export_merged(embed_run, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    (out / "wise_rl.json").write_text(json.dumps({**json.loads((out / "wise_rl.json").read_text()),
                                                  "eval_prompt": "verbose"}))  # mark the old export
    marked = (out / "wise_rl.json").read_bytes()
    with monkeypatch.context() as m:
        _die_after_weights(m)
        with pytest.raises(Killed):
            export.export_merged(embed_run, out, overwrite=True)
    assert {p.name for p in out.iterdir()} == set(before)
    assert (out / "wise_rl.json").read_bytes() == marked  # the old export, whole
    export.export_merged(embed_run, out, overwrite=True)  # a completed overwrite replaces it, leaving no litter
    assert (out / "wise_rl.json").read_bytes() != marked
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merged"]


def test_export_refuses_a_corrupt_base_naming_the_file(embed_run, tiny_model_dir, tmp_path):
    import shutil

    from wise_rl.errors import ModelFolderError

    base = tmp_path / "base"
    shutil.copytree(tiny_model_dir, base)
    data = (base / "model.safetensors").read_bytes()
    (base / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFolderError, match=r"--base .*/model.safetensors is truncated"):
        export.export_merged(embed_run, tmp_path / "out", base=str(base))
    assert not (tmp_path / "out").exists()
