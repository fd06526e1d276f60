"""``wise-rl pretrain-base``: a few steps on the tiny preset write a loadable model, a card with the metrics keys,
and the loss goes down; the schedule and the box scores follow their formulas."""

from __future__ import annotations

import json
import math

import pytest
import torch

from wise_rl.metrics import box_scores
from wise_rl.testbed.pretrain.base_card import CARD_JSON, CARD_MD
from wise_rl.testbed.pretrain.rows import TrainClock
from wise_rl.testbed.pretrain.run import PretrainConfig, lr_lambda


def test_lr_schedule_warmup_then_cosine_over_steps():
    config = PretrainConfig(out="x", max_steps=100, warmup_steps=10, min_lr_ratio=0.1)
    f = lr_lambda(config, TrainClock())
    assert f(0) == pytest.approx(0.1)
    assert f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.1)))
    assert f(50) == pytest.approx(0.1 + 0.9 * 0.5)
    assert f(100) == pytest.approx(0.1)
    assert f(1000) == pytest.approx(0.1)  # clamped past the end


def test_lr_schedule_follows_the_time_budget():
    config = PretrainConfig(out="x", minutes=1.0, warmup_steps=0, min_lr_ratio=0.0)
    clock = TrainClock()
    f = lr_lambda(config, clock)
    clock.start -= 30.0  # half of the one-minute budget has passed
    assert f(5) == pytest.approx(0.5, abs=0.02)
    clock.paused += 30.0  # paused time (curve evals) does not count
    assert f(5) == pytest.approx(1.0, abs=0.02)


def test_box_scores_hand_computed():
    gt = [[0, 0, 9, 9], [0, 0, 9, 9], [10, 10, 19, 19]]
    answers = [{"bbox": [0, 0, 9, 9]}, {"bbox": [0, 0, 9, 4]}, None]  # IoU 1, 0.5 (not > 0.5), failed parse
    s = box_scores(answers, gt)
    assert s["n"] == 3
    assert s["box_acc50"] == pytest.approx(1 / 3)
    assert s["box_mean_iou"] == pytest.approx((1 + 0.5 + 0) / 3)
    with pytest.raises(ValueError, match="answers"):
        box_scores(answers[:2], gt)


@pytest.mark.parametrize("kwargs, match", [
    ({}, "budget"),
    ({"max_steps": 0}, "max-steps"),
    ({"minutes": -1}, "minutes"),
    ({"max_steps": 5, "batch_size": 0}, "batch-size"),
    ({"max_steps": 5, "lr": 0}, "lr"),
])
def test_config_rejects_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PretrainConfig(out="x", **kwargs).validate()


def test_cli_refuses_a_run_without_budget(tmp_path):
    from wise_rl.cli import main

    with pytest.raises(SystemExit, match="budget"):
        main(["pretrain-base", "--out", str(tmp_path / "m")])


def test_the_command_line_is_the_config_s_fields_and_its_command_round_trips():
    """One option list: every PretrainConfig field but ``progress`` is an option of ``wise-rl pretrain-base`` (dashes
    or underscores), and the command a card records parses back to the same config."""
    import dataclasses

    from wise_rl.commands.pretrain_base import parse

    config = PretrainConfig(out="runs/b", seed=3, max_steps=40, batch_size=4, lr=3e-4, init="runs/a",
                            prompt_mix="answer-only:0.5,wise:0.5", family_weights="counting:2", name_share=0.2,
                            vision_lr_scale=0.0, merger_lr_scale=0.5, curve_every=2.5, bf16=False, probe_n=0)
    argv = config.command().split()[2:]
    assert "--max-steps" in argv and "--merger-lr-scale" in argv and "--bf16" in argv
    parsed, command = parse(argv)
    assert parsed == config and not command.score_perception
    underscored, _ = parse(["--" + a[2:].replace("-", "_") if a.startswith("--") else a for a in argv] + ["--quiet"])
    assert underscored == dataclasses.replace(config, progress=False)
    assert parse(["--out", "x"])[0].eval_n == PretrainConfig.eval_n
    assert parse(["--out", "x", "--score-perception"])[0].eval_n is None  # then: the card's
    with pytest.raises(SystemExit):
        parse(["--out", "x", "--no-such-option", "1"])


@pytest.mark.slow
def test_pretrain_base_tiny_writes_model_and_card(tmp_path, capsys, tiny_model_dir):
    from wise_rl.cli import main
    from wise_rl.models import load_model, load_processor

    out = tmp_path / "base"
    rc = main(["pretrain-base", "--out", str(out), "--init", str(tiny_model_dir), "--max-steps", "40", "--batch-size", "4",
               "--lr", "5e-3", "--warmup-steps", "5", "--logging-steps", "5", "--chunk", "32", "--eval-n", "8",
               "--eval-batch-size", "8", "--max-new-tokens", "40", "--seed", "3", "--probe-n", "0", "--quiet"])
    assert rc == 0
    assert f"{out}/{CARD_MD}" in capsys.readouterr().out

    # loadable: weights (safetensors) + processor
    assert (out / "model.safetensors").is_file()
    processor = load_processor(out)
    model = load_model(out)
    assert model.config.text_config.hidden_size == 16
    assert processor.tokenizer.decode(processor.tokenizer("<answer>")["input_ids"]) == "<answer>"

    # trained: the saved weights differ from the initial ones
    init = load_model(tiny_model_dir)
    changed = [n for (n, p), (_, q) in zip(model.named_parameters(), init.named_parameters())
               if not torch.equal(p, q)]
    assert len(changed) > 0.9 * len(list(model.parameters()))

    card = json.loads((out / CARD_JSON).read_text())
    assert card["steps"] == 40 and card["samples_seen"] == 160 and card["seed"] == 3
    assert card["command"].startswith(f"wise-rl pretrain-base --out {out} --seed 3 --max-steps 40")
    assert f"--init {tiny_model_dir}" in card["command"]
    for key in ("box_acc50", "box_mean_iou", "gIoU", "cIoU", "acc50", "format_valid"):
        assert key in card["metrics"] and card["metrics"][key] is not None, key
    assert card["metrics"]["n"] == 8
    assert {"random_shape", "centre_box"} <= set(card["baselines"])
    assert 0 <= card["baselines"]["random_shape"]["acc@0.5"] <= 1
    for key in ("cpu_count", "torch_threads", "platform"):
        assert key in card["machine"]
    t = card["throughput"]
    assert t["train_samples_per_s"] > 0 and t["data_samples_per_s"] > 0 and 0 < t["data_share"] < 1
    assert card["wall_s"] >= card["train_s"] > 0

    losses = [h["loss"] for h in card["loss_history"]]
    assert len(losses) == 8
    assert losses[-1] < losses[0] - 0.5, losses
    assert (out / "eval" / "metrics.json").is_file()
    md = (out / CARD_MD).read_text()
    assert card["command"] in md and "random shape" in md


def test_time_budget_run_saves_partial_weights_at_curve_points_and_clears_them(tmp_path, tiny_model_dir, capsys):
    """Under --minutes the run stops on time, evaluates the curve, and each curve point leaves loadable weights
    plus partial.json in --out (an interrupted run loses nothing); the finished run removes partial.json."""
    from wise_rl.models import load_model
    from wise_rl.testbed.pretrain.run import PARTIAL_JSON, _trainer_callback, pretrain

    out = tmp_path / "base"
    config = PretrainConfig(out=str(out), init=str(tiny_model_dir), minutes=0.04, curve_every=0.015, curve_n=2,
                            batch_size=2, chunk=8, eval_n=0, max_new_tokens=8, logging_steps=1, warmup_steps=1,
                            probe_n=0)
    card = pretrain(config)
    assert card["train_s"] >= 0.04 * 60 and card["steps"] > 0
    assert len(card["curve"]) >= 1 and card["curve"][0]["n"] == 2
    assert (out / "model.safetensors").is_file() and not (out / PARTIAL_JSON).exists()
    assert "pretrain-base (time budget)" in capsys.readouterr().err  # the minutes bar, not a 10**9-step bar

    # The partial save on its own: weights + processor + a note naming the step.
    partial = tmp_path / "partial"
    cb = _trainer_callback(PretrainConfig(out=str(partial), minutes=1), TrainClock(), None, None, [],
                           init=tiny_model_dir)
    partial.mkdir()
    cb._save_partial(load_model(tiny_model_dir), {"step": 7, "minutes": 0.5})
    note = json.loads((partial / PARTIAL_JSON).read_text())
    assert note["step"] == 7 and note["config"]["minutes"] == 1
    assert load_model(partial) is not None and (partial / "tokenizer_config.json").is_file()


def test_stream_rows_mix_descriptions_at_the_asked_share_and_start_where_told():
    """--describe-share P turns about P of the scenes into description rows (prompt DESCRIBE_PROMPT → the scene's
    description, no query), the others stay grounding rows; --stream-start I starts at scene I of the stream."""
    from wise_rl.testbed.pretrain.rows import DESCRIBE_PROMPT, pretrain_row, stream_rows
    from wise_rl.testbed.shapeworld import iter_samples

    it = stream_rows(seed=0, image_size=112, chunk=16, describe_share=0.5)
    rows = [next(it) for _ in range(160)]
    described = [r for r in rows if r["prompt"][0]["content"] == DESCRIBE_PROMPT]
    assert 0.35 < len(described) / len(rows) < 0.65
    samples = iter_samples(0, mask_format="numpy", describe=True)
    for row, sample in zip(rows, samples):
        if row["prompt"][0]["content"] == DESCRIBE_PROMPT:
            text = row["completion"][0]["content"]
            assert text == sample["description"] and "<answer>" not in text and sample["query"] not in text
        else:
            assert row["completion"] == pretrain_row(sample)["completion"]

    plain = stream_rows(seed=0, image_size=112, chunk=8)
    assert all(next(plain)["prompt"][0]["content"] != DESCRIBE_PROMPT for _ in range(40))
    later = stream_rows(seed=0, image_size=112, chunk=4, start=5)
    sixth = next(iter_samples(0, start=5, mask_format="numpy"))
    assert next(later)["completion"] == pretrain_row(sixth)["completion"]


@pytest.mark.parametrize("kwargs, match", [({"describe_share": 1.0}, "describe-share"),
                                           ({"describe_share": -0.1}, "describe-share"),
                                           ({"stream_start": -1}, "stream-start")])
def test_config_rejects_bad_mix_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PretrainConfig(out="x", max_steps=1, **kwargs).validate()


def test_continued_run_card_lists_the_commands_that_re_create_it(tmp_path, tiny_model_dir):
    """A run with --init whose folder has a card re-creates from that card's commands, then its own."""
    from wise_rl.testbed.pretrain.rows import DESCRIBE_PROMPT
    from wise_rl.testbed.pretrain.run import _copy_processor_files, pretrain

    first = PretrainConfig(out=str(tmp_path / "a"), init=str(tiny_model_dir), max_steps=2, batch_size=2, chunk=4,
                           eval_n=0, warmup_steps=1, probe_n=0)
    card_a = pretrain(first)
    assert card_a["lineage"] == [] and card_a["describe_prompt"] is None
    second = PretrainConfig(out=str(tmp_path / "b"), init=str(tmp_path / "a"), max_steps=2, batch_size=2, chunk=4,
                            eval_n=2, eval_batch_size=2, max_new_tokens=4, warmup_steps=1, describe_share=0.5,
                            stream_start=4, prompt_mix="answer-only:3,wise-s:1", probe_n=0,
                            family_weights="attribute:2")
    card_b = pretrain(second)
    assert card_b["lineage"] == [card_a["command"]]
    assert "--describe-share 0.5 --stream-start 4 --prompt-mix answer-only:3,wise-s:1" in card_b["command"]
    md = (tmp_path / "b" / CARD_MD).read_text()
    assert md.index(card_a["command"]) < md.index(card_b["command"])
    # the card shows the run's settings as the card records them: the description prompt and its share, the prompt
    # mix normalised to shares (3:1 → 75 % / 25 %), the family tilt (the exact wording is the template's, pinned by
    # tests/testbed/test_templates.py)
    assert card_b["describe_prompt"] == DESCRIBE_PROMPT and DESCRIBE_PROMPT in md and "50 %" in md
    assert card_b["prompt_mix"] == {"answer-only": 3.0, "wise-s": 1.0} and "75 %" in md and "25 %" in md
    assert "25 %" not in (tmp_path / "a" / CARD_MD).read_text()  # the first run had no mix
    assert card_b["stages"][-1]["family_weights"]["attribute"] == 2.0 and "attribute ×2" in md
    from wise_rl.testbed.pretrain.base_card import model_card_markdown

    noted = model_card_markdown(card_b | {"note": "Shipped from folder b."})  # e.g. where the chain's output went
    assert "Shipped from folder b." in noted and "Shipped" not in md
    # the held-out scenes are scored again in each other trained wording
    assert set(card_b["metrics_by_prompt"]) == {"wise-s"}
    assert card_b["metrics_by_prompt"]["wise-s"]["n"] == 2 and "| `wise-s` |" in md

    # The processor files travel with the weights; the init's card and partial note do not.
    (tmp_path / "a" / "partial.json").write_text("{}")
    copy = tmp_path / "c"
    copy.mkdir()
    _copy_processor_files(tmp_path / "a", copy)
    copied = {f.name for f in copy.iterdir()}
    assert "tokenizer_config.json" in copied and not copied & {CARD_JSON, CARD_MD, "partial.json"}


def test_prompt_mix_words_grounding_rows_with_the_named_templates():
    """--prompt-mix draws each grounding row's wording from the named templates by weight; the target stays the
    answer block alone; bad names and weights are refused with the offending part named."""
    from wise_rl import formats
    from wise_rl.testbed.pretrain.rows import parse_prompt_mix, pretrain_row, stream_rows

    assert parse_prompt_mix(None) == {"answer-only": 1.0}
    mix = parse_prompt_mix("answer-only:3,wise-s")
    assert mix == {"answer-only": 3.0, "wise-s": 1.0}
    it = stream_rows(seed=0, image_size=112, chunk=16, prompt_mix=mix)
    rows = [next(it) for _ in range(160)]
    wise_s = [r for r in rows if r["prompt"][0]["content"].startswith("Please find")]
    assert 0.12 < len(wise_s) / len(rows) < 0.4  # weight 1 of 4
    from wise_rl.testbed.shapeworld import iter_samples

    for row, sample in zip(rows, iter_samples(0, mask_format="numpy")):
        name = "wise-s" if row in wise_s else "answer-only"
        assert row["prompt"][0]["content"] == formats.render_prompt(name, sample["query"])
        assert row["completion"] == pretrain_row(sample)["completion"]  # <answer>{json}</answer> only
    for text, match in [("answer-only,nope", "unknown prompt template 'nope'"), ("wise:x", "not a number"),
                        ("wise:0", "must be > 0")]:
        with pytest.raises(ValueError, match=match):
            parse_prompt_mix(text)
    with pytest.raises(ValueError, match="prompt-mix"):
        PretrainConfig(out="x", max_steps=1, prompt_mix="wise:-1").validate()


def test_family_weights_tilt_the_stream_and_leave_the_rest_alone():
    """--family-weights draws the stream's query families by weight (a family left out weighs 1); without it the
    stream is what it was; bad names and weights are refused with the flag named; the command line keeps it."""
    from collections import Counter

    from wise_rl.testbed.pretrain.rows import parse_family_weights, stream_rows
    from wise_rl.testbed.shapeworld import FAMILIES, iter_samples

    assert parse_family_weights(None) is None
    weights = parse_family_weights("odd_one_out:6")
    assert weights == {f: (6.0 if f == "odd_one_out" else 1.0) for f in FAMILIES}
    tilted = Counter(s["family"] for s, _ in zip(iter_samples(0, mask_format="numpy", family_weights=weights),
                                                 range(200)))
    assert 0.45 < tilted["odd_one_out"] / 200 < 0.75  # weight 6 of 10
    for w in (None, weights):  # the rows ask about the (tilted or untilted) stream's scenes, in its order
        rows = stream_rows(seed=0, image_size=112, chunk=16, family_weights=w)
        samples = iter_samples(0, mask_format="numpy", family_weights=w)
        assert all(s["query"] in r["prompt"][0]["content"] for r, s, _ in zip(rows, samples, range(32)))
    for text, match in [("odd:2", "--family-weights: unknown query family 'odd'"), ("counting:x", "not a number"),
                        ("counting:0", "must be > 0")]:
        with pytest.raises(ValueError, match=match):
            parse_family_weights(text)
    with pytest.raises(ValueError, match="family-weights"):
        PretrainConfig(out="x", max_steps=1, family_weights="colour:1").validate()
    assert "--family-weights attribute:2" in PretrainConfig(out="x", max_steps=1, family_weights="attribute:2").command()


def test_named_box_rows_put_the_targets_name_before_the_answer_block():
    """--named-box-share 1: every grounding row worded by another template answers 'the {colour} {kind} {where}
    <answer>…</answer>'; answer-only rows keep the answer block alone; share 0 leaves the stream as it was."""
    from wise_rl.testbed.pretrain.rows import parse_prompt_mix, pretrain_row, stream_rows
    from wise_rl.testbed.shapeworld import iter_samples

    mix = parse_prompt_mix("answer-only:1,wise-s:1")
    rows = stream_rows(seed=0, image_size=112, chunk=16, prompt_mix=mix, named_box_share=1.0)
    plain = stream_rows(seed=0, image_size=112, chunk=16, prompt_mix=mix)
    seen = {"named": 0, "plain": 0}
    for _, row, old, sample in zip(range(60), rows, plain, iter_samples(0, mask_format="numpy", describe=True)):
        assert row["prompt"] == old["prompt"]  # the wording draws are unchanged
        target = row["completion"][0]["content"]
        block = pretrain_row(sample)["completion"][0]["content"]
        if row["prompt"][0]["content"].startswith("Please find"):
            assert target == f"{sample['target_name']} {block}"
            seen["named"] += 1
        else:
            assert target == block
            seen["plain"] += 1
    assert seen["named"] > 10 and seen["plain"] > 10, seen
    with pytest.raises(ValueError, match="named-box-share"):
        PretrainConfig(out="x", max_steps=1, named_box_share=1.5).validate()


def test_described_box_rows_lead_with_the_scene_description_and_are_not_attention_supervised():
    from wise_rl.testbed.pretrain.attention_supervision import CELLS_KEY
    from wise_rl.testbed.pretrain.rows import parse_prompt_mix, pretrain_row, stream_rows
    from wise_rl.testbed.shapeworld import iter_samples

    rows = stream_rows(seed=0, image_size=112, chunk=16, prompt_mix=parse_prompt_mix("answer-only:1,wise-s:1"),
                       named_box_share=1.0, described_box_share=1.0, cell=28)
    seen = 0
    for _, row, sample in zip(range(40), rows, iter_samples(0, mask_format="numpy", describe=True)):
        target = row["completion"][0]["content"]
        if row["prompt"][0]["content"].startswith("Please find"):
            block = pretrain_row(sample)["completion"][0]["content"]
            assert target == f"{sample['description']} {sample['target_name']} {block}"
            assert sum(row[CELLS_KEY]) == 0
            seen += 1
        else:
            assert sum(row[CELLS_KEY]) >= 1
    assert seen > 10
    with pytest.raises(ValueError, match="described-box-share"):
        PretrainConfig(out="x", max_steps=1, described_box_share=-0.1).validate()


def test_name_share_rows_name_the_queried_shape_in_words():
    """--name-share P turns about P of the scenes into naming rows: the query → 'the {colour} {kind} {where}' of the
    target (no box); with --describe-share both come from one draw, the rest stay grounding rows."""
    from wise_rl.testbed.pretrain.rows import DESCRIBE_PROMPT, pretrain_row, stream_rows
    from wise_rl.testbed.shapeworld import iter_samples

    it = stream_rows(seed=0, image_size=112, chunk=16, describe_share=0.25, name_share=0.25)
    rows = [next(it) for _ in range(200)]
    kinds = {"describe": 0, "name": 0, "ground": 0}
    for row, sample in zip(rows, iter_samples(0, mask_format="numpy", describe=True)):
        prompt, target = row["prompt"][0]["content"], row["completion"][0]["content"]
        if prompt == DESCRIBE_PROMPT:
            kinds["describe"] += 1
        elif prompt.startswith("Which shape is"):
            kinds["name"] += 1
            assert f"'{sample['query'].lower()}'" in prompt
            assert target == sample["target_name"] and target.startswith("the ") and "<" not in target
        else:
            kinds["ground"] += 1
            assert row["completion"] == pretrain_row(sample)["completion"]
    assert all(30 < kinds[k] < 70 for k in ("describe", "name")) and kinds["ground"] > 70, kinds
    with pytest.raises(ValueError, match="name-share"):
        PretrainConfig(out="x", max_steps=1, describe_share=0.5, name_share=0.5).validate()


def test_name_eval_scores_hand_made_answers():
    """name_acc counts answers naming the target's colour and kind, name_in_scene any shape of the scene;
    random_shape is the chance of naming the target by picking a shape of the scene, random_guess the chance that a
    blind colour + kind guess names some shape of it."""
    from types import SimpleNamespace

    from wise_rl.testbed.pretrain.perception import name_eval, named_shape

    rows = [
        {"image": None, "query": "the red shape", "target_name": "the red pentagon at the bottom",
         "shape_names": ["red pentagon", "blue square"]},
        {"image": None, "query": "the largest shape", "target_name": "the green circle on the left",
         "shape_names": ["green circle", "green circle", "red square", "blue square"]},
        {"image": None, "query": "the odd one out", "target_name": "the blue triangle at the top",
         "shape_names": ["blue triangle", "red triangle", "red triangle"]},
    ]
    answers = {"the red shape": "The red pentagon at the top",    # target (place is not scored)
               "the largest shape": "the red square on the right",  # in the scene, not the target
               "the odd one out": "the purple hexagon"}            # not in the scene

    def generator(images, queries):
        return [SimpleNamespace(completion=answers[q]) for q in queries]

    model = torch.nn.Linear(1, 1).train()
    out = name_eval(model, None, rows, batch_size=2, generator=generator)
    assert out["n"] == 3
    assert out["name_acc"] == pytest.approx(1 / 3)
    assert out["name_in_scene"] == pytest.approx(2 / 3)
    assert out["random_shape"] == pytest.approx((1 / 2 + 2 / 4 + 1 / 3) / 3)
    assert out["random_guess"] == pytest.approx((2 + 3 + 2) / 3 / (6 * 5))  # distinct pairs / (colours × kinds)
    assert out["examples"][0] == {"query": "the red shape", "target": "the red pentagon at the bottom",
                                  "answer": "The red pentagon at the top"}
    assert model.training  # restored
    assert named_shape("  The Red  pentagon at the top") == "the red pentagon"
    with pytest.raises(ValueError, match="no rows"):
        name_eval(model, None, [], generator=generator)


def test_described_test_scenes_match_the_test_split():
    """naming_rows(seed, n) are the scenes of generate_dataset's test split, with the target named in words."""
    from wise_rl.testbed.pretrain.perception import naming_rows
    from wise_rl.testbed.shapeworld import generate_dataset

    test = generate_dataset(0, 4, seed=5, progress=False)["test"]
    rows = naming_rows(5, 4)
    assert len(rows) == len(test) == 4  # the loop below checks every row, and there are rows to check
    for i, row in enumerate(rows):
        assert row["id"] == test[i]["id"] and row["query"] == test[i]["query"]
        assert row["gt_bbox"] == pytest.approx(test[i]["gt_bbox"])
        assert len(row["shape_names"]) == len(test[i]["shape_boxes"])
        assert row["target_name"].startswith("the " + row["shape_names"][row["target_index"]])


def test_score_perception_adds_naming_and_the_vision_probe_to_a_card(tmp_path, tiny_model_dir, capsys):
    """A run with naming rows scores naming on its held-out scenes; --score-perception re-runs it on a trained
    folder (here on more scenes), adds the vision probe, and updates card.json and model_card.md; a folder without a
    card is a clear error."""
    import shutil

    from wise_rl.cli import main

    out = tmp_path / "base"
    assert main(["pretrain-base", "--out", str(out), "--init", str(tiny_model_dir), "--max-steps", "2",
                 "--batch-size", "2", "--chunk", "8", "--eval-n", "4", "--eval-batch-size", "4",
                 "--max-new-tokens", "8", "--name-share", "0.5", "--probe-n", "0", "--quiet"]) == 0
    assert json.loads((out / CARD_JSON).read_text())["naming"]["n"] == 4
    capsys.readouterr()
    assert main(["pretrain-base", "--out", str(out), "--score-perception", "--eval-n", "6", "--eval-batch-size", "4",
                 "--probe-n", "40"]) == 0
    printed = json.loads(capsys.readouterr().out)
    card = json.loads((out / CARD_JSON).read_text())
    assert card["naming"]["n"] == 6 == printed["naming"]["n"]
    assert 0 <= card["naming"]["name_acc"] <= card["naming"]["name_in_scene"] <= 1
    vp = card["vision_probe"]
    assert vp == printed["vision_probe"] and vp["n_shapes"] >= 80 and vp["n_scored"] == vp["n_shapes"] - int(
        0.7 * vp["n_shapes"])
    for key in ("colour_acc", "kind_acc", "colour_majority", "kind_majority", "cell_rgb_colour_acc"):
        assert 0 <= vp[key] <= 1, key
    md = (out / CARD_MD).read_text()
    assert "Naming (6 of the same scenes" in md and "Vision probe (" in md
    # without --eval-n: the card's eval_n (4), not the training default
    assert main(["pretrain-base", "--out", str(out), "--score-perception", "--eval-batch-size", "4",
                 "--probe-n", "0"]) == 0
    assert json.loads(capsys.readouterr().out)["naming"]["n"] == 4
    assert json.loads((out / CARD_JSON).read_text())["vision_probe"] == vp  # --probe-n 0 keeps the earlier probe

    bare = tmp_path / "bare"
    shutil.copytree(tiny_model_dir, bare)
    with pytest.raises(SystemExit, match="no card"):
        main(["pretrain-base", "--out", str(bare), "--score-perception"])


def test_vision_probe_reads_colour_from_features_that_hold_it():
    """The probe's arithmetic on a stand-in model whose 'vision tokens' are each cell's mean RGB: colour is then
    read as well as from the cell's RGB itself, and a too-small sample is refused."""
    from types import SimpleNamespace

    import numpy as np

    from wise_rl.testbed.pretrain.perception import naming_rows, vision_probe

    class CellRGB(torch.nn.Module):
        """Vision tokens = the 16 cells' mean RGB, row-major (the layout of a 112 px image, 28 px cells)."""

        device = torch.device("cpu")

        def __init__(self):
            super().__init__()
            self.model = SimpleNamespace(get_image_features=self.features)
            self.images = []

        def features(self, pixel_values, grid_thw):
            a = np.asarray(self.images.pop(0), dtype=np.float32) / 255.0
            return (torch.from_numpy(a.reshape(4, 28, 4, 28, 3).mean(axis=(1, 3)).reshape(16, 3)),)

    model = CellRGB()

    class ImageProcessor:
        patch_size, merge_size = 14, 2

        def __call__(self, images, return_tensors):
            model.images.extend(images)
            return {"pixel_values": torch.zeros(1), "image_grid_thw": torch.zeros(1)}

    processor = SimpleNamespace(image_processor=ImageProcessor())
    rows = naming_rows(0, 120)
    out = vision_probe(model, processor, rows)
    assert out["colour_acc"] == pytest.approx(out["cell_rgb_colour_acc"], abs=0.02)
    assert out["colour_acc"] > out["colour_majority"] + 0.2  # the cell colour carries the shape's colour
    with pytest.raises(ValueError, match="too few"):
        vision_probe(model, processor, rows[:3])


def test_reasoned_box_rows_lead_with_the_detailed_rationale():
    """--reasoned-box-share: of the described rows, that share lead with the whole detailed rationale (which names
    the target last) instead of the description and the name; none is attention-supervised."""
    from wise_rl.testbed.pretrain.attention_supervision import CELLS_KEY
    from wise_rl.testbed.pretrain.rows import parse_prompt_mix, pretrain_row, stream_rows
    from wise_rl.testbed.shapeworld import iter_samples

    rows = stream_rows(seed=0, image_size=112, chunk=16, prompt_mix=parse_prompt_mix("answer-only:1,wise-s:1"),
                       named_box_share=1.0, described_box_share=1.0, reasoned_box_share=0.5, cell=28)
    seen = {"reasoned": 0, "described": 0}
    for _, row, sample in zip(range(60), rows, iter_samples(0, mask_format="numpy", describe=True)):
        target = row["completion"][0]["content"]
        if not row["prompt"][0]["content"].startswith("Please find"):
            continue
        block = pretrain_row(sample)["completion"][0]["content"]
        assert sum(row[CELLS_KEY]) == 0
        if target == f"{sample['detailed']} {block}":
            assert sample["detailed"].rstrip(".").endswith(sample["target_name"])
            seen["reasoned"] += 1
        else:
            assert target == f"{sample['description']} {sample['target_name']} {block}"
            seen["described"] += 1
    assert seen["reasoned"] > 5 and seen["described"] > 5, seen
    with pytest.raises(ValueError, match="reasoned-box-share"):
        PretrainConfig(out="x", max_steps=1, reasoned_box_share=2).validate()
