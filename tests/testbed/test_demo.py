"""``wise-rl demo``: profiles, the same-budget rule, the missing-base error, and the smoke profile end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from wise_rl.testbed import demo
from wise_rl.testbed.demo import report as demo_report

VARIANT_KEYS = ("gIoU", "cIoU", "acc50", "format_valid", "think_tokens_mean", "completion_tokens_mean",
                "latency_s_mean")


# ----------------------------------------------------------------------------------------------------------------
# Missing base
# ----------------------------------------------------------------------------------------------------------------
def test_missing_base_fails_at_once_with_the_command_to_create_it(tmp_path):
    with pytest.raises(demo.DemoError) as err:
        demo.run_demo(out=tmp_path / "run", base=tmp_path / "no-such-model", profile="smoke", progress=False)
    msg = str(err.value)
    assert str(tmp_path / "no-such-model") in msg
    assert "wise-rl pretrain-base --out wise_rl/assets/shapeworld-base" in msg
    assert not (tmp_path / "run").exists()  # failed before doing anything


def test_missing_embedded_base_through_the_cli(tmp_path, monkeypatch):
    from wise_rl import cli

    monkeypatch.setattr(demo, "DEFAULT_BASE", tmp_path / "assets" / "shapeworld-base")
    with pytest.raises(SystemExit) as err:
        cli.main(["demo", "--smoke", "--out", str(tmp_path / "run"), "--quiet"])
    msg = str(err.value)
    assert msg.startswith("wise-rl demo: no base model at")
    assert "embedded ShapeWorld base model" in msg
    assert "wise-rl pretrain-base --out wise_rl/assets/shapeworld-base" in msg


def test_a_folder_without_weights_is_not_a_base(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(demo.DemoError, match="safetensors"):
        demo.check_base(tmp_path)


# ----------------------------------------------------------------------------------------------------------------
# Profiles and the same-budget rule
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["default", "long", "smoke"])
def test_shipped_profiles_give_every_arm_the_same_budget(name, tmp_path):
    prof = demo.load_profile(name)
    run = demo.Run(tmp_path, prof, tmp_path / "base")
    cfgs = demo.stage_configs(run)
    # verbose SFT steps = WISE SFT steps + GRPO steps; every stage trains on the same sequences per step
    assert cfgs["sft_verbose"]["max_steps"] == prof.sft_steps + prof.grpo_steps
    assert cfgs["sft_wise"]["max_steps"] == prof.sft_steps
    assert cfgs["grpo_wise"]["max_steps"] == prof.grpo_steps
    assert len({demo.sequences_per_step(c) for c in cfgs.values()}) == 1
    # the real recipes' options: the three-stage target and prompt for WISE, verbose for the baseline
    # (in the profile's prompt style: every shipped profile uses the compact wordings of the same requests)
    assert prof.prompt_style == "compact"
    assert (cfgs["sft_verbose"]["target_mode"], cfgs["sft_verbose"]["prompt_template"]) == ("verbose",
                                                                                            "verbose-compact")
    assert (cfgs["sft_wise"]["target_mode"], cfgs["sft_wise"]["prompt_template"]) == (
        "wise", "wise-train-compact,wise-compact,wise-s-compact")
    assert cfgs["grpo_wise"]["prompt_template"] == "wise-train-compact"
    assert cfgs["grpo_wise"]["reward_funcs"] == ["format", "answer_schema", "bbox_iou", "bbox_l1", "points",
                                                 "self_distillation"]
    # paths point into the run folder; GRPO starts from the WISE SFT output
    assert cfgs["grpo_wise"]["model_name_or_path"] == str(tmp_path / "wise_sft")
    assert cfgs["sft_verbose"]["model_name_or_path"] == str(tmp_path / "base")
    assert all(c["dataset"] == str(tmp_path / "data") for c in cfgs.values())
    assert {c["seed"] for c in cfgs.values()} == {prof.seed}
    # the ablation arms: in `long` and `smoke` only, so `make demo` stays as it is
    assert prof.ablations == (name != "default")
    assert ("sft_concise" in cfgs) == ("grpo_nosd" in cfgs) == prof.ablations
    if not prof.ablations:
        assert set(cfgs) == {"sft_verbose", "sft_wise", "grpo_wise"} and set(prof.evals) == {
            "verbose", "wise", "wise-s", "wise-s-sft"}
        return
    # learn thin: the concise target under the WISE inference prompts, from the base, with the WISE SFT's settings
    concise, wise_sft = cfgs["sft_concise"], cfgs["sft_wise"]
    assert (concise["target_mode"], concise["prompt_template"]) == ("concise", "wise-compact,wise-s-compact")
    assert concise["model_name_or_path"] == str(tmp_path / "base") and concise["max_steps"] == prof.sft_steps
    same = ("learning_rate", "lr_scheduler_type", "warmup_steps", "per_device_train_batch_size", "weight_decay")
    assert {k: concise[k] for k in same} == {k: wise_sft[k] for k in same}
    # use thin: GRPO without self-distillation, format scored on the two-block layout, under the wise prompt
    grpo, wise_grpo = cfgs["grpo_concise"], cfgs["grpo_wise"]
    assert grpo["reward_funcs"] == ["format_think_answer", "answer_schema", "bbox_iou", "bbox_l1", "points"]
    assert grpo["prompt_template"] == "wise-compact" and grpo["model_name_or_path"] == str(tmp_path / "concise_sft")
    # WISE without self-distillation: the WISE SFT output, every WISE reward but self_distillation
    nosd = cfgs["grpo_nosd"]
    assert nosd["reward_funcs"] == [r for r in wise_grpo["reward_funcs"] if r != "self_distillation"]
    assert nosd["prompt_template"] == wise_grpo["prompt_template"]
    assert nosd["model_name_or_path"] == str(tmp_path / "wise_sft")
    same = ("learning_rate", "num_generations", "max_completion_length", "temperature", "beta", "loss_type")
    for c in (grpo, nosd):
        assert c["max_steps"] == prof.grpo_steps and len(c["reward_weights"]) == len(c["reward_funcs"])
        assert {k: c[k] for k in same} == {k: wise_grpo[k] for k in same}


@pytest.mark.parametrize("name", ["default", "long"])
def test_token_caps_cover_the_longest_targets(name, tmp_path):
    """The verbose eval's max_new_tokens and GRPO's max_completion_length hold the longest ShapeWorld targets (in the
    shipped base's tokens): a cap below them cuts a correct verbose chain of thought before its answer and counts it
    as format-invalid (it did: 256 tokens cut 7 of 100 verbose completions, 4 % of the targets are longer)."""
    from wise_rl import formats
    from wise_rl.models import load_processor
    from wise_rl.testbed.shapeworld import sample_at

    tokenizer = load_processor(demo.check_base(None)).tokenizer
    prof = demo.load_profile(name)
    cfgs = demo.stage_configs(demo.Run(tmp_path, prof, tmp_path / "base"))
    longest = {"verbose": 0, "wise": 0}
    for i in range(300):
        s = sample_at(0, "train", i)
        answer = formats.answer_dict(s["gt_bbox"], s["gt_points"])
        for mode in longest:
            text = formats.build_target(s["concise"], answer, s["detailed"], mode)
            longest[mode] = max(longest[mode], len(tokenizer(text)["input_ids"]))
    assert longest["verbose"] > 256  # the old cap was too short
    assert prof.eval_max_new_tokens >= longest["verbose"] + 16
    assert cfgs["grpo_wise"]["max_completion_length"] >= longest["wise"] + 16


def test_official_prompt_style_keeps_the_recipes_prompts_and_a_bad_style_is_refused(tmp_path):
    text = (demo.DEMO_RECIPES / "profile_smoke.yaml").read_text().replace("prompt_style: compact",
                                                                           "prompt_style: official")
    (tmp_path / "official.yaml").write_text(text)
    run = demo.Run(tmp_path / "run", demo.load_profile(str(tmp_path / "official.yaml")), tmp_path / "base")
    cfgs = demo.stage_configs(run)
    assert cfgs["sft_wise"]["prompt_template"] == "wise-train,wise,wise-s"
    assert cfgs["sft_verbose"]["prompt_template"] == "verbose"
    (tmp_path / "bad.yaml").write_text(text.replace("prompt_style: official", "prompt_style: tiny"))
    with pytest.raises(demo.DemoError, match="prompt_style must be 'official' or 'compact', got 'tiny'"):
        demo.load_profile(str(tmp_path / "bad.yaml"))


def test_written_configs_parse_with_the_recipe_parsers(tmp_path):
    from wise_rl import training

    run = demo.Run(tmp_path, demo.load_profile("default"), tmp_path / "base")
    demo.write_configs(run)
    script, sft_args, model_args = training.parse_sft_args(["--config", str(run.config_path("sft_wise"))])
    assert (script.target_mode, sft_args.output_dir) == ("wise", str(tmp_path / "wise_sft"))
    assert sft_args.max_steps == run.profile.sft_steps
    script, grpo_args, _ = training.parse_grpo_args(["--config", str(run.config_path("grpo_wise"))])
    assert grpo_args.max_steps == run.profile.grpo_steps and script.algorithm == "grpo"


def test_the_ablation_configs_pass_the_recipes_checks(tiny_model_dir, tmp_path):
    """The concise target under the WISE inference prompts passes the SFT check (the prompt asks for what the target
    holds), and both ablation GRPO configs build their reward lists."""
    from wise_rl import formats, training

    run = demo.Run(tmp_path, demo.load_profile("smoke"), Path(tiny_model_dir))
    for folder in (run.data, run.train_dir("sft_concise"), run.train_dir("sft_wise")):
        folder.mkdir()
    demo.write_configs(run)
    script, sft_args, model_args = training.parse_sft_args(["--config", str(run.config_path("sft_concise"))])
    training.validate_sft_args(script, sft_args, model_args)
    assert (script.target_mode, sft_args.max_steps) == ("concise", run.profile.sft_steps)
    for stage in ("grpo_concise", "grpo_nosd"):
        script, grpo_args, model_args = training.parse_grpo_args(["--config", str(run.config_path(stage))])
        training.validate_grpo_args(script, grpo_args, model_args)
        names = [f.__name__ for f in training.build_reward_funcs(script)]
        assert "self_distillation" not in names and len(names) == 5, stage
    # the concise target fits the inference prompts only: the training prompt asks for the detailed part too
    assert [t for t in ("wise-train", "wise", "wise-s-compact", "verbose") if formats.prompt_fits_target(
        t, "concise")] == ["wise", "wise-s-compact"]


def test_ablation_stages_need_the_profile_key_and_leave_the_default_identity_alone(tmp_path):
    prof = demo.load_profile("default")
    assert "ablations" not in prof.fingerprint()  # a run folder of the default profile keeps its identity
    assert demo.load_profile("smoke").fingerprint()["ablations"] is True
    with pytest.raises(demo.DemoError, match="stages.grpo_nosd: an ablation stage; set ablations: true"):
        demo.load_profile(str(_profile(tmp_path, "stages:\n  grpo_nosd: {save_steps: 1}\n")))
    with pytest.raises(demo.DemoError, match="ablations must be true or false, got 'yes please'"):
        demo.load_profile(str(_profile(tmp_path, "ablations: yes please\n")))


def _profile(tmp_path, text: str) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    return path


def test_unequal_sequences_per_step_is_an_error(tmp_path):
    path = _profile(tmp_path, "stages:\n  sft_verbose: {per_device_train_batch_size: 32}\n")
    run = demo.Run(tmp_path, demo.load_profile(str(path)), tmp_path / "base")
    with pytest.raises(demo.DemoError, match="same number of sequences per optimizer step"):
        demo.stage_configs(run)


@pytest.mark.parametrize("text, match", [
    ("budget: {sft_step: 3}\n", "budget.sft_step: unknown key"),
    ("colour: red\n", "unknown key"),
    ("stages:\n  sft_wise: {max_steps: 3}\n", "set by the demo itself"),
    ("stages:\n  dpo: {}\n", "stages:"),
    ("budget: {grpo_steps: 0}\n", "grpo_steps must be a positive integer"),
    ("data: {n_test: 10}\neval: {n: 20}\n", "larger than data.n_test"),
])
def test_bad_profiles_name_the_key(tmp_path, text, match):
    with pytest.raises(demo.DemoError, match=match):
        demo.load_profile(str(_profile(tmp_path, text)))


def test_unknown_profile_name_lists_the_known_ones():
    with pytest.raises(demo.DemoError, match="known: default, long, smoke"):
        demo.load_profile("huge")


def test_a_run_folder_refuses_another_profile(tmp_path):
    base = tmp_path / "base"
    demo.Run(tmp_path / "run", demo.load_profile("smoke"), base).check_identity()
    with pytest.raises(demo.DemoError, match="another profile"):
        demo.Run(tmp_path / "run", demo.load_profile("default"), base).check_identity()


def test_a_run_folder_refuses_a_base_retrained_in_place_or_another_shapeworld(tmp_path, monkeypatch):
    """The same base path with other weights, or data from another version of the generator, is another run:
    resuming would mix stages trained on the old base or data with the new ones."""
    base = tmp_path / "base"
    base.mkdir()
    (base / "model.safetensors").write_bytes(b"old weights")
    profile = demo.load_profile("smoke")
    demo.Run(tmp_path / "run", profile, base).check_identity()
    demo.Run(tmp_path / "run", profile, base).check_identity()  # unchanged: resumes
    (base / "model.safetensors").write_bytes(b"new weights")
    with pytest.raises(demo.DemoError, match="another base_weights"):
        demo.Run(tmp_path / "run", profile, base).check_identity()
    demo.Run(tmp_path / "run2", profile, base).check_identity()
    import wise_rl.testbed.shapeworld as shapeworld

    monkeypatch.setattr(shapeworld, "generator_digest", lambda *a, **k: "another generator")
    with pytest.raises(demo.DemoError, match="another shapeworld"):
        demo.Run(tmp_path / "run2", profile, base).check_identity()


def test_generator_digest_follows_the_rows():
    from wise_rl.testbed.shapeworld import generator_digest

    assert generator_digest(0) == generator_digest(0) != generator_digest(1)


# ----------------------------------------------------------------------------------------------------------------
# Targets
# ----------------------------------------------------------------------------------------------------------------
def test_targets_are_computed_from_the_variants():
    variants = {
        "verbose": {"box_acc50": 0.66, "format_valid": 1.0, "think_tokens_mean": 80.0, "latency_s_mean": 0.30},
        "wise": {"box_acc50": 0.64, "format_valid": 0.97, "think_tokens_mean": 9.0, "latency_s_mean": 0.11},
        "wise-s": {"box_acc50": 0.62, "format_valid": 0.90, "think_tokens_mean": 8.0, "latency_s_mean": 0.12},
    }
    trend = {"think_tokens": {"first": 9.0, "last": 7.5}, "bbox_iou": {"first": 0.60, "last": 0.58},
             "gate_pass_rate": {"first": 0.55, "last": 0.6}}
    t = demo_report.evaluate_targets(variants, trend)
    assert t["verbose_box_acc50"]["pass"] and t["verbose_box_acc50"]["value"] == 0.66
    assert t["wise_s_box_acc50"]["pass"] and t["wise_s_box_acc50"]["value"] == 0.62
    assert not t["wise_s_vs_verbose"]["pass"] and t["wise_s_vs_verbose"]["value"] == pytest.approx(0.04)
    assert t["format_valid_wise"]["pass"] and not t["format_valid_wise-s"]["pass"]
    assert t["latency_ratio"]["value"] == pytest.approx(2.5) and not t["latency_ratio"]["pass"]
    # wise-s below the format target: the think ratio is reached but not counted
    assert t["think_tokens_ratio"]["value"] == pytest.approx(10.0) and not t["think_tokens_ratio"]["pass"]
    assert "not counted" in t["think_tokens_ratio"]["note"]
    variants["wise-s"]["format_valid"] = 0.96
    t = demo_report.evaluate_targets(variants, trend)
    assert t["think_tokens_ratio"]["pass"] and t["format_valid_wise-s"]["pass"]
    assert t["grpo_concise_shorter"]["pass"] and t["grpo_concise_shorter"]["gate_pass_rate"]["last"] == 0.6
    assert t["grpo_box_accuracy_holds"]["pass"]  # 0.60 → 0.58: within 0.05
    falls = dict(trend, bbox_iou={"first": 0.60, "last": 0.50})
    assert not demo_report.evaluate_targets(variants, falls)["grpo_box_accuracy_holds"]["pass"]
    variants["wise-s"]["think_tokens_mean"] = 0.0  # nothing generated: undefined, not infinite
    t = demo_report.evaluate_targets(variants, trend)
    assert t["think_tokens_ratio"]["value"] is None and not t["think_tokens_ratio"]["pass"]
    assert not demo_report.evaluate_targets(variants, {"think_tokens": {"first": 7.0, "last": 7.0}})[
        "grpo_concise_shorter"]["pass"]
    # shorter because the format broke (think 0.12 → 0 with format reward 0): not counted
    broken = demo_report.evaluate_targets(variants, {"think_tokens": {"first": 0.12, "last": 0.0},
                                              "format": {"first": 0.0, "last": 0.0}})["grpo_concise_shorter"]
    assert not broken["pass"] and "not counted" in broken["note"]
    assert demo_report.evaluate_targets(variants, {"think_tokens": {"first": 9.0, "last": 7.0},
                                            "format": {"first": 0.9, "last": 0.95}})["grpo_concise_shorter"]["pass"]
    # within 3 points of a weak verbose arm is not enough: verbose must reach 0.50 and wise-s 0.60
    variants["verbose"]["box_acc50"], variants["wise-s"]["box_acc50"] = 0.41, 0.40
    t = demo_report.evaluate_targets(variants, trend)
    assert t["wise_s_vs_verbose"]["value"] == pytest.approx(0.01) and not t["wise_s_vs_verbose"]["pass"]
    assert not t["verbose_box_acc50"]["pass"]
    variants["verbose"]["box_acc50"], variants["wise-s"]["box_acc50"] = 0.63, 0.61
    assert demo_report.evaluate_targets(variants, trend)["wise_s_vs_verbose"]["pass"]


def test_concise_shorter_counts_only_a_fall_beyond_the_step_to_step_noise(tmp_path):
    """The GRPO trend's windows carry the standard error of their per-step means; a fall of the think tokens within
    twice the standard error of the difference is reported with a note, not passed."""
    from types import SimpleNamespace

    log = [{"reward": 1.0, "completions/think_tokens": v} for v in (7.0, 6.0, 7.0, 6.0, 6.5, 6.5, 6.0, 6.5)]
    (tmp_path / "grpo").mkdir()
    (tmp_path / "grpo" / "trainer_state.json").write_text(json.dumps({"log_history": log}))
    trend = demo_report.grpo_trend(SimpleNamespace(train_dir=lambda stage: tmp_path / "grpo"))
    tt = trend["think_tokens"]  # windows of 2: (7, 6) and (6, 6.5)
    assert (tt["first"], tt["last"]) == (6.5, 6.25)
    assert tt["first_se"] == pytest.approx(0.5) and tt["last_se"] == pytest.approx(0.25)
    t = demo_report.evaluate_targets({}, trend)["grpo_concise_shorter"]
    assert not t["pass"] and t["value"]["noise"] == pytest.approx(2 * math.hypot(0.5, 0.25))
    assert "within the noise" in t["note"]
    steady = {"think_tokens": {"first": 9.0, "last": 7.0, "first_se": 0.3, "last_se": 0.4}}
    assert demo_report.evaluate_targets({}, steady)["grpo_concise_shorter"]["pass"]  # 2.0 > 2 × 0.5


def test_grpo_same_prompts_pairs_the_scenes_before_and_after(tmp_path):
    """Hand-made evals of three scenes: the paired think-token difference, its standard error, the boxes gained
    and lost, and the identical completions; targets are counted on the trained arms only."""
    from types import SimpleNamespace

    from datasets import Dataset, DatasetDict

    gt = [[0, 0, 9, 9], [20, 20, 29, 29], [40, 40, 49, 49]]
    DatasetDict({"test": Dataset.from_dict({"id": ["a", "b", "c"], "gt_bbox": gt, "shape_boxes": [gt] * 3,
                                            "model_size": [112] * 3})}).save_to_disk(str(tmp_path / "data"))

    def write(variant, rows):
        (tmp_path / variant).mkdir()
        (tmp_path / variant / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    def sample(i, think, box, text):
        return {"id": i, "think_tokens": think, "answer": {"bbox": box} if box else None, "completion": text}

    write("wise-s-sft", [sample("a", 8, gt[0], "x"), sample("b", 6, [0, 0, 9, 9], "y"), sample("c", 7, gt[2], "z")])
    write("wise-s", [sample("a", 6, gt[0], "x2"), sample("b", 6, gt[1], "y"), sample("c", 4, None, "z2")])
    run = SimpleNamespace(data=tmp_path / "data", profile=SimpleNamespace(eval_n=3),
                          eval_dir=lambda variant: tmp_path / variant)
    same = demo_report.grpo_same_prompts(run)
    assert same["n"] == 3 and same["identical"] == pytest.approx(1 / 3)
    # per-scene hit differences 0, +1, -1: mean 0, sample sd 1, paired standard error 1/√3
    assert same["box_acc50"] == {"before": pytest.approx(2 / 3), "after": pytest.approx(2 / 3), "gained": 1,
                                 "lost": 1, "diff": 0.0, "diff_se": pytest.approx(1 / math.sqrt(3))}
    tt = same["think_tokens"]  # differences -2, 0, -3: mean -5/3, sample sd √(7/3), se √(7/9)
    assert (tt["before"], tt["after"]) == (7.0, pytest.approx(16 / 3))
    assert tt["diff"] == pytest.approx(-5 / 3) and tt["diff_se"] == pytest.approx(math.sqrt(7 / 9))
    assert demo_report.grpo_same_prompts(SimpleNamespace(eval_dir=lambda v: tmp_path / "none")) == {}
    fine = {"box_acc50": 0.7, "format_valid": 1.0, "think_tokens_mean": 6.0, "latency_s_mean": 0.01}
    targets = demo_report.evaluate_targets({"verbose": fine, "wise-s": fine, "wise-s-sft": {"format_valid": 0.1}}, {})
    assert "format_valid_wise-s" in targets and "format_valid_wise-s-sft" not in targets


def _stage_order(profile: str, base, out, monkeypatch) -> list:
    """The stages ``run_demo`` runs, in order, with the stages, the background arm and the report stubbed."""
    from types import SimpleNamespace

    calls = []
    monkeypatch.setattr(demo, "_run_stage", lambda run, stage, progress=True: calls.append(stage))
    proc = SimpleNamespace(pid=1, poll=lambda: None)
    monkeypatch.setattr(demo, "_spawn_arm", lambda run, stages, *a: calls.append(("spawn", stages)) or (proc, "log"))
    monkeypatch.setattr(demo, "_wait_arm", lambda *a: calls.append("wait"))
    monkeypatch.setattr(demo, "stage_report", lambda run: {})
    demo.run_demo(out=out, base=base, profile=profile, progress=False)
    return calls


def test_parallel_arms_train_together_and_every_eval_runs_after_all_training(tiny_model_dir, tmp_path, monkeypatch):
    """Latency is compared across arms, so no eval may run while an arm still trains on the other core."""
    assert _stage_order("default", tiny_model_dir, tmp_path / "demo", monkeypatch) == [
        "data", ("spawn", ("sft_verbose",)), "base", "sft_wise", "grpo_wise", "wait",
        "eval_verbose", "eval_wise-s-sft", "eval_wise", "eval_wise-s"]


def test_with_ablations_the_background_trains_the_concise_arm_and_every_eval_waits(tiny_model_dir, tmp_path,
                                                                                   monkeypatch):
    assert _stage_order("long", tiny_model_dir, tmp_path / "demo", monkeypatch) == [
        "data", ("spawn", ("sft_verbose", "sft_concise", "grpo_concise")), "base", "sft_wise", "grpo_wise",
        "grpo_nosd", "wait", "eval_verbose", "eval_wise-s-sft", "eval_wise", "eval_wise-s",
        "eval_concise", "eval_concise-s", "eval_no-sd", "eval_no-sd-s"]


def test_ablation_pairs_hand_computed(tmp_path):
    """Four scenes, WISE-S against the concise-only arm: hits (1, 1, 0, 1) vs (0, 1, 0, 0), per-scene differences
    (1, 0, 0, 1): difference +0.5, sample sd √(1/3), paired standard error √(1/3)/2; 2 scenes gained, none lost."""
    from types import SimpleNamespace

    from datasets import Dataset, DatasetDict

    gt = [[0, 0, 9, 9], [20, 20, 29, 29], [40, 40, 49, 49], [60, 60, 69, 69]]
    DatasetDict({"test": Dataset.from_dict({"id": list("abcd"), "gt_bbox": gt, "shape_boxes": [gt] * 4,
                                            "model_size": [112] * 4})}).save_to_disk(str(tmp_path / "data"))
    miss = [90, 90, 99, 99]
    rows = {"wise-s": [gt[0], gt[1], miss, gt[3]], "concise-s": [miss, gt[1], None, [60, 60, 99, 99]]}
    for variant, boxes in rows.items():
        (tmp_path / variant).mkdir()
        (tmp_path / variant / "samples.jsonl").write_text("".join(
            json.dumps({"id": i, "think_tokens": 6 if variant == "wise-s" else 5, "completion": variant,
                        "answer": {"bbox": b} if b else None}) + "\n" for i, b in zip("abcd", boxes)))
    run = SimpleNamespace(data=tmp_path / "data", profile=SimpleNamespace(eval_n=4),
                          eval_dir=lambda variant: tmp_path / variant)
    (pair,) = demo_report.ablation_pairs(run, [("wise-s", "concise-s"), ("wise-s", "no-sd-s")])  # no-sd-s: no eval
    assert (pair["wise"], pair["ablation"], pair["n"]) == ("wise-s", "concise-s", 4)
    box = pair["box_acc50"]
    assert (box["after"], box["before"], box["gained"], box["lost"]) == (0.75, 0.25, 2, 0)
    assert box["diff"] == 0.5 and box["diff_se"] == pytest.approx(math.sqrt(1 / 3) / 2)
    assert pair["think_tokens"]["diff"] == 1.0 and pair["think_tokens"]["diff_se"] == 0.0
    assert demo_report.box_scores(run, "wise-s")["box_acc50_se"] == pytest.approx(0.25)  # sd √(1/4·3/4·4/3) / 2
    console = demo_report.summary_table({"base": {}, "variants": {}, "targets": {}, "ablations": [pair]})
    assert "wise-s vs concise-s on the same 4 scenes: box acc@0.5 75.0 vs 25.0 %, difference +50.0 ± 28.9" in console


def test_cpu_model_reads_the_model_name(tmp_path):
    from wise_rl.training import precision

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\nflags\t: fpu\n")
    assert precision.cpu_model(info) == "AMD EPYC 7B13"


# ----------------------------------------------------------------------------------------------------------------
# End to end (smoke profile, tiny random base)
# ----------------------------------------------------------------------------------------------------------------
def _state(folder: Path) -> dict:
    return json.loads((folder / "trainer_state.json").read_text())


@pytest.mark.slow
def test_smoke_demo_end_to_end_and_resume(tiny_model_dir, tmp_path):
    from safetensors.torch import load_file

    out = tmp_path / "demo"
    report = demo.run_demo(out=out, base=tiny_model_dir, profile="smoke", progress=False)
    prof = demo.load_profile("smoke")

    on_disk = json.loads((out / "report.json").read_text())
    assert set(on_disk["variants"]) == {"verbose", "wise", "wise-s", "wise-s-sft", "concise", "concise-s", "no-sd",
                                        "no-sd-s"}
    assert on_disk["grpo_same_prompts"]["n"] == prof.eval_n
    for name, m in on_disk["variants"].items():
        for key in VARIANT_KEYS:
            assert key in m, (name, key)
        assert m["n"] == prof.eval_n
        assert m["completion_tokens_mean"] > 0 and m["latency_s_mean"] > 0
    assert on_disk["variants"]["verbose"]["prompt"] == "verbose-compact"
    assert on_disk["variants"]["wise-s"]["prompt"] == "wise-s-compact"
    assert on_disk["base"]["source"].startswith("quick eval") and "acc50" in on_disk["base"]
    assert 0.0 <= on_disk["random_shape_acc50"] <= 1.0
    assert {"wise_s_box_acc50", "verbose_box_acc50", "wise_s_vs_verbose", "think_tokens_ratio", "latency_ratio", "grpo_concise_shorter",
            "format_valid_wise-s"} <= set(on_disk["targets"])
    assert all(isinstance(t["pass"], bool) for t in on_disk["targets"].values())

    # the ablations, paired with the WISE variants on the same scenes; their prompts are the WISE ones
    assert [(a["wise"], a["ablation"]) for a in on_disk["ablations"]] == list(demo.ABLATION_PAIRS)
    for pair in on_disk["ablations"]:
        box = pair["box_acc50"]
        assert pair["n"] == prof.eval_n and box["diff"] == pytest.approx(box["after"] - box["before"])
        assert box["gained"] - box["lost"] == round(box["diff"] * pair["n"])
    assert on_disk["variants"]["concise-s"]["prompt"] == on_disk["variants"]["no-sd-s"]["prompt"] == "wise-s-compact"
    assert on_disk["variants"]["concise"]["prompt"] == "wise-compact"
    assert all(0 <= m["box_acc50_se"] <= 0.5 for m in on_disk["variants"].values())
    assert set(on_disk["arms_wall_s"]) == {"verbose", "wise", "concise-only", "no-self-distillation"}

    # every arm trained through the recipes, with the same-budget step counts
    steps = {"verbose_sft": prof.sft_steps + prof.grpo_steps, "wise_sft": prof.sft_steps,
             "wise_grpo": prof.grpo_steps, "concise_sft": prof.sft_steps, "concise_grpo": prof.grpo_steps,
             "nosd_grpo": prof.grpo_steps}
    for folder, n in steps.items():
        assert (out / folder / "model.safetensors").is_file() and (out / folder / "DONE").is_file()
        assert _state(out / folder)["global_step"] == n
        assert list((out / folder).glob("checkpoint-*"))
    grpo_log = _state(out / "wise_grpo")["log_history"]
    assert any("rewards/self_distillation/mean" in h for h in grpo_log)
    for folder, fmt in (("concise_grpo", "format_think_answer"), ("nosd_grpo", "format")):
        log = _state(out / folder)["log_history"]
        assert any(f"rewards/{fmt}/mean" in h for h in log), folder
        assert not any("rewards/self_distillation/mean" in h for h in log), folder
    # the concise-only SFT rows hold no detailed part: the target is <think>concise</think><answer>…</answer>
    assert json.loads((out / "concise_sft" / "wise_rl.json").read_text())["prompt_templates"] == [
        "wise-compact", "wise-s-compact"]
    base_w = load_file(str(Path(tiny_model_dir) / "model.safetensors"))
    verbose_w = load_file(str(out / "verbose_sft" / "model.safetensors"))
    assert any(not (base_w[k] == verbose_w[k]).all() for k in base_w), "verbose SFT did not change the weights"

    for png in ("rewards.png", "lengths.png", "loss.png"):
        assert (out / png).stat().st_size > 1000, png
    # think cost vs accuracy is plotted for the variants whose think tokens were measured (a <think> block in
    # their completions); the smoke run's random tiny model may write none, and is then not drawn at x = 0
    measured = [m for m in on_disk["variants"].values() if m.get("think_tokens_mean") is not None]
    assert (out / "think_tokens_vs_accuracy.png").is_file() == bool(measured)
    md = (out / "report.md").read_text()
    assert "| wise-s | wise-s-compact |" in md and "## Targets" in md and "compact wordings" in md
    assert "## Ablations" in md and "| wise-s | concise-s | 4 |" in md and "| wise | no-sd | 4 |" in md
    assert (out / "configs" / "grpo_wise.yaml").is_file()

    # re-running skips every finished stage and reports the same numbers
    again = demo.run_demo(out=out, base=tiny_model_dir, profile="smoke", progress=False)
    stages = json.loads((out / "stages.json").read_text())
    for stage in ("data", "sft_verbose", "sft_wise", "grpo_wise", "sft_concise", "grpo_concise", "grpo_nosd",
                  "eval_verbose", "eval_wise", "eval_wise-s", "eval_wise-s-sft", "eval_concise-s", "eval_no-sd-s"):
        assert stages[stage]["status"] == "skipped (done)", stage
        assert stages[stage]["wall_s"] > 0  # the first run's time is kept
    assert again["variants"] == report["variants"]
    assert _state(out / "wise_grpo")["global_step"] == prof.grpo_steps


def test_report_shows_what_the_base_names(tmp_path):
    """A base card with naming metrics: base_metrics carries them and report.md says what they bound."""
    from types import SimpleNamespace

    card = {"metrics": {"acc50": 0.3, "box_acc50": 0.4, "n": 10}, "baselines": {"random_shape": {"acc@0.5": 0.35}},
            "naming": {"n": 10, "name_acc": 0.1, "name_in_scene": 0.2, "random_shape": 0.36, "random_guess": 0.098,
                       "examples": [{"query": "q", "target": "t", "answer": "a"}]}}
    (tmp_path / "card.json").write_text(json.dumps(card))
    base = demo_report.base_metrics(SimpleNamespace(base=tmp_path, profile=SimpleNamespace(base_eval_n=0)),
                                     demo.base_card(tmp_path))
    assert base["naming"] == {"n": 10, "name_acc": 0.1, "name_in_scene": 0.2, "random_shape": 0.36,
                              "random_guess": 0.098}
    side = {"sft_steps": 1, "sft_targets": 16, "grpo_steps": 1, "grpo_completions": 16, "grpo_prompts": 4,
            "num_generations": 4}
    report = {"profile": {"name": "t", "eval_n": 10, "seed": 0, "image_size": 112, "prompt_style": "compact"},
              "base_model": str(tmp_path), "base": base, "date": "today", "machine": "here", "variants": {},
              "random_shape_acc50": 0.35, "targets": {}, "grpo_trend": {}, "stages": {}, "figures": [],
              "budget": {"rule": "r", "sequences_per_step": 16, "verbose": side, "wise": side}}
    # every naming figure of the card reaches the report (as a percentage), and none without naming; the wording
    # is the template's (pinned by tests/testbed/test_templates.py)
    md = demo_report.report_markdown(report)
    naming_figures = ("10.0 %", "20.0 %", "36.0 %", "9.8 %")
    assert all(f in md for f in naming_figures)
    del base["naming"]
    bare = demo_report.report_markdown(report)
    assert not any(f in bare for f in naming_figures) and len(bare.splitlines()) < len(md.splitlines())
    base["vision_probe"] = {"n_scored": 600, "colour_acc": 0.4, "colour_majority": 0.18, "kind_acc": 0.44,
                            "kind_majority": 0.22, "n_shapes": 2000, "cell_rgb_colour_acc": 0.57}
    probed = demo_report.report_markdown(report)
    assert all(f in probed for f in ("600", "40.0 %", "18.0 %", "44.0 %", "22.0 %")) and "40.0 %" not in bare
