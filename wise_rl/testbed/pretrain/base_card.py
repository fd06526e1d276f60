"""The card of a pre-training run: ``card.json`` (config, metrics, baselines, throughput, machine, lineage) and its
human-readable ``model_card.md`` (:func:`model_card_markdown`), written by :func:`wise_rl.testbed.pretrain.run.pretrain`
and updated by :func:`wise_rl.testbed.pretrain.perception.score_perception`."""

from __future__ import annotations

from typing import Any

from wise_rl.testbed.pretrain.rows import NAME_PROMPT, PROMPT

CARD_JSON, CARD_MD, EVAL_DIR = "card.json", "model_card.md", "eval"


def _f(v, pct: bool = False) -> str:
    if v is None:
        return "—"
    return f"{100 * v:.1f} %" if pct else (f"{v:.3f}" if isinstance(v, float) else str(v))


def model_card_markdown(card: dict[str, Any]) -> str:
    """The human-readable card of a pre-training run."""
    m, b, t, mach = card["metrics"], card.get("baselines") or {}, card["throughput"], card["machine"]
    rs, cb = b.get("random_shape", {}), b.get("centre_box", {})
    share = card.get("describe_share") or 0.0
    lineage = card.get("lineage") or []
    task = ("ShapeWorld grounding: the `answer-only` prompt → `<answer>{json}</answer>` (no rationale)")
    mix = card.get("prompt_mix") or {PROMPT: 1.0}
    if set(mix) != {PROMPT}:
        total = sum(mix.values())
        task += (" with the question worded by these prompt templates (share of the grounding scenes): "
                 + ", ".join(f"`{k}` {100 * w / total:.0f} %" for k, w in mix.items())
                 + ("; the target is the answer block alone" if not card.get("named_box_share") else
                   f"; the target is the answer block, after the target's name on {100 * card['named_box_share']:g} % "
                   "of the rows worded by the templates other than `answer-only`"
                   + (f" (after the scene description and the name on {100 * card['described_box_share']:g} % "
                      "of those" + (f"; the whole detailed rationale instead of them on "
                                    f"{100 * card['reasoned_box_share']:g} % of these"
                                    if card.get("reasoned_box_share") else "") + ")"
                      if card.get("described_box_share") else "")))
    if share:
        task += (f", and on {100 * share:g} % of the scenes the prompt '{card['describe_prompt']}' → a plain scene "
                 "description (the shapes, then each one's place, width and corners; no query, no reasoning) so that "
                 "the model keeps writing text")
    if card.get("name_share"):
        task += (f", and on {100 * card['name_share']:g} % the prompt \"{card['name_prompt']}\" → the queried shape "
                 "named in words (e.g. 'the red pentagon at the bottom'; no box, no reasoning)")
    start = (f"continued from `{card['init']}`" if card.get("init") else "trained from random initialisation")
    lines = [
        "# ShapeWorld base model",
        "",
        f"A `{card['preset'] or 'small'}` Qwen2.5-VL ({card['parameters']:,} parameters) {start} on {task}, with "
        "`transformers.Trainer` + TRL's VLM collator on prompt–completion rows (completion-only loss), fresh scenes "
        "every step.",
        "",
        "Re-create it with" + (" these commands, in order (each continues from the previous one's output):"
                               if lineage else ":"),
        "",
        "```",
        *lineage,
        card["command"],
        "```",
        *(["", card["note"]] if card.get("note") else []),
        "",
        f"- date: {card['date']}; seed {card['seed']}",
        f"- machine: {mach.get('cpu_model', mach['processor'])}, {mach['platform']}, {mach['cpu_count']} CPUs, torch threads {mach['torch_threads']}, "
        f"torch {mach['torch']}, GPU {mach['cuda'] or 'none'}",
        f"- wall time {card['wall_s']} s (training {card['train_s']} s, evaluation {card['eval_s']} s); "
        f"{card['steps']} steps, {card['samples_seen']:,} samples seen",
        f"- throughput: {_f(t['samples_per_s'])} samples/s end to end; training step {_f(t['train_samples_per_s'])} "
        f"samples/s; data preparation {_f(t['data_samples_per_s'])} samples/s (rendering alone "
        f"{_f(t['render_samples_per_s'])}), {_f(t['data_share'], pct=True)} of the training time",
        f"- per CPU-second (process time, all threads; robust to other load on a shared machine): training step "
        f"{_f(t.get('train_samples_per_cpu_s'))} samples, data preparation {_f(t.get('data_samples_per_cpu_s'))} "
        f"samples ({t.get('train_cpu_s')} CPU-s in training)",
        f"- loss {_f(card['loss_first'])} → {_f(card['loss_last'])} (completion tokens, mean per token)",
        "",
        f"## Held-out metrics ({m['n']} scenes of the ShapeWorld test split, greedy, stop at `</answer>`)",
        "",
        "| | acc@0.5 (box IoU) | mean box IoU |",
        "| --- | --- | --- |",
        f"| this model | {_f(m['box_acc50'], pct=True)} | {_f(m['box_mean_iou'])} |",
        f"| random shape of the scene | {_f(rs.get('acc@0.5'), pct=True)} | {_f(rs.get('mean_iou'))} |",
        f"| centre box | {_f(cb.get('acc@0.5'), pct=True)} | {_f(cb.get('mean_iou'))} |",
        "",
        f"Eval path (`wise_rl.evaluate`, box mask decoder vs the shape's mask, LISA protocol): gIoU "
        f"{_f(m['gIoU'], pct=True)}, cIoU {_f(m['cIoU'], pct=True)}, acc@0.5 {_f(m['acc50'], pct=True)}, "
        f"format valid {_f(m['format_valid'], pct=True)}. A perfect box scores about ½ (triangle) to π/4 (circle) "
        "mask IoU, so the box columns above are the ones to compare with the baselines.",
    ]
    if card.get("metrics_by_prompt"):
        lines += ["", "The same scenes with the question in the other trained wordings (the answer block scored "
                  "the same way):", "", "| prompt | acc@0.5 (box IoU) | mean box IoU | answer block valid |",
                  "| --- | --- | --- | --- |"]
        for name, s in card["metrics_by_prompt"].items():
            lines.append(f"| `{name}` | {_f(s['box_acc50'], pct=True)} | {_f(s['box_mean_iou'])} | "
                         f"{_f(s['format_valid'], pct=True)} |")
    if card.get("naming"):
        nm = card["naming"]
        lines += ["", f"Naming ({nm['n']} of the same scenes, \"{NAME_PROMPT}\", greedy): the answer names the "
                  f"target's colour and kind in {_f(nm['name_acc'], pct=True)} of the scenes (a random shape of the "
                  f"scene: {_f(nm['random_shape'], pct=True)}), and some shape of the scene in "
                  f"{_f(nm['name_in_scene'], pct=True)} (a blind guess of colour and kind: "
                  f"{_f(nm.get('random_guess'), pct=True)}). Rationales are made of these words: a model that cannot "
                  "name what it sees writes rationales that name the wrong shape."]
    if card.get("vision_probe"):
        vp = card["vision_probe"]
        lines += ["", f"Vision probe ({vp['n_scored']} of {vp['n_shapes']} shapes scored; a linear probe on the "
                  "vision token that holds each shape's centre, `pretrain.vision_probe`): colour "
                  f"{_f(vp['colour_acc'], pct=True)} (most frequent colour {_f(vp['colour_majority'], pct=True)}; "
                  f"the same probe on the cell's mean RGB {_f(vp['cell_rgb_colour_acc'], pct=True)}), kind "
                  f"{_f(vp['kind_acc'], pct=True)} (most frequent kind {_f(vp['kind_majority'], pct=True)})."]
    if card.get("metrics_by_family"):
        lines += ["", "Box acc@0.5 per query family (same scenes) beside boxing a random shape of the scene:", "",
                  "| family | n | this model | random shape |", "| --- | --- | --- | --- |"]
        for family, f in card["metrics_by_family"].items():
            lines.append(f"| {family} | {f['n']} | {_f(f['box_acc50'], pct=True)} | "
                         f"{_f(f['random_shape_acc50'], pct=True)} |")
    if card.get("stages"):
        lines += ["", "## Stages", "", "| stage | steps | samples | wall s | notes |", "| --- | --- | --- | --- | --- |"]
        for st in card["stages"]:
            if st["stage"] == "vision":
                ha = st.get("head_accuracy") or {}
                note = (f"dense per-token colour/kind/box heads; held-out head accuracy colour "
                        f"{_f(ha.get('colour_acc'), pct=True)}, kind {_f(ha.get('kind_acc'), pct=True)}")
            else:
                note = ("vision tower frozen" if not st.get("vision_lr_scale") else
                        f"vision tower lr × {st.get('vision_lr_scale')}")
                if st.get("merger_lr_scale") is not None and st["merger_lr_scale"] != st.get("vision_lr_scale"):
                    note += f"; merger lr × {st['merger_lr_scale']:g}"
                if st.get("attention_weight"):
                    note += f"; attention supervision λ {st['attention_weight']:g}"
                if st.get("cell_word_weight"):
                    note += f"; words at the vision tokens μ {st['cell_word_weight']:g}"
                if st.get("word_attention_weight"):
                    note += f"; word-region attention ν {st['word_attention_weight']:g}"
                if st.get("family_weights"):
                    note += "; query families drawn " + ", ".join(f"{k} ×{w:g}" for k, w in st["family_weights"].items()
                                                                  if w != 1)
                if st.get("named_box_share"):
                    note += f"; named boxes {100 * st['named_box_share']:g} %"
                if st.get("described_box_share"):
                    note += f", {100 * st['described_box_share']:g} % of them after the scene description"
                if st.get("reasoned_box_share"):
                    note += f", {100 * st['reasoned_box_share']:g} % of these after the detailed rationale instead"
            lines.append(f"| {st['stage']} | {st['steps']} | {st['samples']:,} | {st['train_s']} | {note} |")
    if card.get("curve"):
        lines += ["", "## Learning curve (held-out curve set)", "", "| minutes | steps | samples | acc@0.5 (box) |"
                  " mean box IoU | format valid |", "| --- | --- | --- | --- | --- | --- |"]
        for c in card["curve"]:
            lines.append(f"| {c['minutes']:.2f} | {c['step']} | {c['samples']:,} | {_f(c['box_acc50'], pct=True)} "
                         f"| {_f(c['box_mean_iou'])} | {_f(c['format_valid'], pct=True)} |")
    if card.get("examples"):
        lines += ["", "## Examples", ""]
        for e in card["examples"]:
            lines.append(f"- '{e['query']}' (gt {e['gt_bbox']}) → `{e['completion']}`")
    return "\n".join(lines) + "\n"
