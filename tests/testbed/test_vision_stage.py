"""The vision stage of base pre-training: per-cell targets on a hand-made scene, and a short run that trains the
tower (and only the tower) and records itself in the card."""

import json

import numpy as np
import pytest
import torch

from wise_rl.testbed import shapeworld as sw
from wise_rl.testbed.pretrain.vision_stage import SceneCollator, VisionHeads, VisionStageConfig, cell_targets


def _scene():
    rng = np.random.default_rng(0)
    return sw.render_scene(rng, image_size=112, n_shapes=2, kinds=["square", "circle"], colours=["red", "blue"],
                           sizes=[24, 20])


def test_cell_targets_label_the_cells_a_shape_covers():
    scene = _scene()
    t = cell_targets(scene, cell=28)
    assert t["colour"].shape == (16,) and t["box"].shape == (16, 4)
    none_colour, none_kind = len(sw.COLOURS), len(sw.KINDS)
    for shape in scene.shapes:
        cx, cy = shape.centre
        tok = int(cy) // 28 * 4 + int(cx) // 28
        # the centre cell of a 20-24 px shape holds at least 20 of its pixels
        assert t["colour"][tok] == list(sw.COLOURS).index(shape.colour)
        assert t["kind"][tok] == list(sw.KINDS).index(shape.kind)
        np.testing.assert_allclose(t["box"][tok], np.asarray(shape.box) / 112)
    covered = {int(s.centre[1]) // 28 * 4 + int(s.centre[0]) // 28 for s in scene.shapes}
    # a cell no shape touches is "none" with a zero box
    far = [k for k in range(16) if k not in covered and t["colour"][k] == none_colour]
    assert far and all(t["kind"][k] == none_kind and not t["box"][k].any() for k in far)


def test_cell_targets_need_min_pixels():
    scene = _scene()
    assert (cell_targets(scene, cell=28, min_pixels=28 * 28 + 1)["colour"] == len(sw.COLOURS)).all()


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="vision-lr"):
        VisionStageConfig(lr=0).validate()
    with pytest.raises(ValueError, match="vision-steps"):
        VisionStageConfig(steps=0).validate()


def test_heads_loss_on_a_collated_batch(tiny_model_dir):
    from wise_rl.models import load_model, load_processor

    model, processor = load_model(tiny_model_dir, dtype=torch.float32), load_processor(tiny_model_dir)
    batch = SceneCollator(processor, seed=0, image_size=112)([0, 1, 2])
    assert batch["pixel_values"].shape[0] == 3 * 64 and batch["colour"].shape == (3, 16)
    heads = VisionHeads(model, len(sw.COLOURS), len(sw.KINDS))
    out = heads(**batch)
    assert out["colour_logits"].shape == (3, 16, len(sw.COLOURS) + 1)
    assert out["loss"].item() > 0
    out["loss"].backward()
    assert all(p.grad is not None for p in model.model.visual.parameters() if p.requires_grad)
    assert all(p.grad is None for p in model.model.language_model.parameters())


def test_pretrain_with_a_vision_stage_trains_the_tower_then_grounds(tmp_path, tiny_model_dir):
    from wise_rl.models import load_model
    from wise_rl.testbed.pretrain.base_card import CARD_JSON, CARD_MD
    from wise_rl.testbed.pretrain.run import PretrainConfig, pretrain

    out = tmp_path / "base"
    config = PretrainConfig(out=str(out), init=str(tiny_model_dir), vision_steps=3, vision_batch_size=4,
                            max_steps=2, batch_size=2, chunk=4, eval_n=4, eval_batch_size=4, max_new_tokens=8,
                            warmup_steps=1, vision_lr_scale=0.0, probe_n=30, progress=False)
    card = pretrain(config)
    stages = {s["stage"]: s for s in card["stages"]}
    assert stages["vision"]["steps"] == 3 and stages["vision"]["samples"] == 12
    assert 0 <= stages["vision"]["head_accuracy"]["kind_acc"] <= 1
    assert stages["grounding"]["steps"] == 2 and stages["grounding"]["vision_lr_scale"] == 0.0
    assert "--vision-steps 3" in card["command"] and "--vision-lr-scale 0.0" in card["command"]
    assert set(card["vision_probe"]) >= {"colour_acc", "kind_acc"}
    assert sum(f["n"] for f in card["metrics_by_family"].values()) == 4
    init, trained = load_model(tiny_model_dir), load_model(out)
    init_p, trained_p = dict(init.named_parameters()), dict(trained.named_parameters())
    vision = [n for n in init_p if ".visual." in f".{n}"]
    language = [n for n in init_p if ".language_model." in n]
    assert vision and language
    # the vision stage moved the tower; the frozen grounding stage did not undo it, and the LM trained
    assert sum(not torch.equal(init_p[n], trained_p[n]) for n in vision) > 0.8 * len(vision)
    assert sum(not torch.equal(init_p[n], trained_p[n]) for n in language) > 0.8 * len(language)
    assert json.loads((out / CARD_JSON).read_text())["stages"][0]["stage"] == "vision"
    # the folder says how to prompt it: eval / infer default to the answer-only prompt
    info = json.loads((out / "wise_rl.json").read_text())
    assert info["eval_prompt"] == info["infer_prompt"] == "answer-only"
    md = (out / CARD_MD).read_text()
    assert "## Stages" in md and "per query family" in md


def test_vision_only_run_needs_no_grounding_budget(tmp_path, tiny_model_dir):
    from wise_rl.testbed.pretrain.run import PretrainConfig, pretrain

    config = PretrainConfig(out=str(tmp_path / "v"), init=str(tiny_model_dir), vision_steps=2, vision_batch_size=2,
                            eval_n=0, probe_n=0, progress=False)
    card = pretrain(config)
    assert [s["stage"] for s in card["stages"]] == ["vision"] and card["steps"] == 0
    # a run continued from it lists the vision stage with the command that ran it, then its own grounding
    later = pretrain(PretrainConfig(out=str(tmp_path / "g"), init=str(tmp_path / "v"), max_steps=1, batch_size=2,
                                    chunk=2, eval_n=0, probe_n=0, warmup_steps=1, progress=False))
    assert [s["stage"] for s in later["stages"]] == ["vision", "grounding"]
    assert later["stages"][0]["command"] == card["command"] and later["stages"][1]["command"] == later["command"]
    with pytest.raises(ValueError, match="budget"):
        PretrainConfig(out="x").validate()


def test_keep_term_is_zero_at_the_init_and_grows_as_the_tower_moves(tiny_model_dir):
    from wise_rl.models import load_model, load_processor

    model, processor = load_model(tiny_model_dir, dtype=torch.float32), load_processor(tiny_model_dir)
    batch = SceneCollator(processor, seed=0, image_size=112)([0, 1])
    torch.manual_seed(0)
    plain = VisionHeads(model, len(sw.COLOURS), len(sw.KINDS))
    torch.manual_seed(0)
    keep = VisionHeads(model, len(sw.COLOURS), len(sw.KINDS), keep_weight=2.0)
    # the frozen reference is neither trained nor saved
    assert len(list(keep.parameters())) == len(list(plain.parameters()))
    assert set(keep.state_dict()) == set(plain.state_dict())
    assert keep(**batch)["loss"].item() == pytest.approx(plain(**batch)["loss"].item(), abs=1e-6)
    with torch.no_grad():
        for p in model.model.visual.parameters():
            p.add_(0.05 * torch.randn_like(p))
    assert keep(**batch)["loss"].item() > plain(**batch)["loss"].item() + 1e-4


def test_frozen_tower_with_a_trained_merger(tmp_path, tiny_model_dir):
    """--vision-lr-scale 0 --merger-lr-scale 1: the tower's blocks stay as they came, the merger (the projector the
    language model reads) trains with the language model."""
    from wise_rl.models import load_model
    from wise_rl.testbed.pretrain.run import PretrainConfig, pretrain

    out = tmp_path / "base"
    card = pretrain(PretrainConfig(out=str(out), init=str(tiny_model_dir), max_steps=2, batch_size=2, chunk=4,
                                   eval_n=0, probe_n=0, warmup_steps=1, vision_lr_scale=0.0, merger_lr_scale=1.0,
                                   progress=False))
    assert "--vision-lr-scale 0.0 --merger-lr-scale 1.0" in card["command"]
    assert "vision tower frozen; merger lr × 1 |" in (out / "model_card.md").read_text()
    init_p = dict(load_model(tiny_model_dir).named_parameters())
    trained_p = dict(load_model(out).named_parameters())
    merger = [n for n in init_p if ".visual.merger." in f".{n}"]
    tower = [n for n in init_p if ".visual." in f".{n}" and n not in merger]
    assert merger and tower
    assert all(torch.equal(init_p[n], trained_p[n]) for n in tower)
    assert all(not torch.equal(init_p[n], trained_p[n]) for n in merger)
    with pytest.raises(ValueError, match="merger-lr-scale"):
        PretrainConfig(out="x", max_steps=1, merger_lr_scale=-1).validate()
