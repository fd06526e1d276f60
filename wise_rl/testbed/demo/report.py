"""The demo's report: metrics per variant, the targets, ``report.json``, ``report.md`` and its figures.

``report.json`` (per variant ``verbose``, ``wise``, ``wise-s``, and ``wise-s-sft``: the WISE arm before GRPO; with
ablations also ``concise``, ``concise-s``, ``no-sd``, ``no-sd-s``, :mod:`wise_rl.testbed.demo.profile`):
``gIoU``, ``cIoU``, ``acc50`` (mask IoU ≥ 0.5 of the box-decoded answer against the shape's mask, LISA protocol, as
``wise-rl eval``), ``box_acc50`` / ``box_acc50_se`` / ``box_mean_iou`` (box IoU > 0.5 of the predicted bbox against
the ground-truth bbox, the measure of ``random_shape_acc50``, with its standard error over the test scenes),
``format_valid``, ``think_tokens_mean``, ``completion_tokens_mean``, ``latency_s_mean``; ``base`` (the card's
held-out metrics, else a quick eval), ``random_shape_acc50`` (box a random shape of each test scene,
:func:`wise_rl.testbed.shapeworld.random_shape_baseline`), the GRPO length trend, what GRPO changed on the same
prompts (:func:`grpo_same_prompts`), with ablations ``ablations`` (each WISE variant against each ablation on the
same scenes, :func:`ablation_pairs`), and ``targets`` (on the trained arms, not on ``wise-s-sft`` nor the
ablations)::

    verbose_box_acc50       box_acc50(verbose) ≥ 0.50 (the baseline must be a real one)
    wise_s_box_acc50        box_acc50(wise-s) ≥ 0.60
    wise_s_vs_verbose       box_acc50(verbose) − box_acc50(wise-s) ≤ 0.03 (within 3 points), and wise_s_box_acc50 passes
    format_valid_<variant>  format_valid ≥ 0.95                           (verbose, wise, wise-s)
    think_tokens_ratio      think_tokens_mean(verbose) / think_tokens_mean(wise-s) ≥ 5   } counted only when verbose
    latency_ratio           latency_s_mean(verbose) / latency_s_mean(wise-s) ≥ 3         } and wise-s are format-valid
    grpo_concise_shorter    mean think tokens of the last GRPO logging window below that of the first by more
                            than twice the standard error of their difference (window = max(1, ⌊logged steps /
                            4⌋) entries of ``completions/think_tokens``; each window's standard error = the sample
                            standard deviation of its per-step means / √window, 0 for a window of one step): a
                            fall beyond the step-to-step noise of which scenes a step drew; with the
                            self-distillation gate's pass rate over GRPO beside it
    grpo_box_accuracy_holds the mean bbox IoU reward falls by at most 0.05 from the first to the last window

each with ``value``, ``threshold`` and ``pass``: whatever is reached is reported as it is.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

VARIANT_KEYS = ("gIoU", "cIoU", "acc50", "box_acc50", "box_acc50_se", "box_mean_iou", "format_valid",
                "think_tokens_mean", "completion_tokens_mean", "latency_s_mean", "n", "n_failed")
# On box acc@0.5 (box IoU > 0.5 against the queried shape's box): the measure of the random-shape baseline.
TARGETS = {"verbose_box_acc50": 0.50, "wise_s_box_acc50": 0.60, "wise_s_vs_verbose": 0.03, "format_valid": 0.95,
           "think_tokens_ratio": 5.0, "latency_ratio": 3.0, "grpo_box_acc_drop": 0.05}
ARMS = ("verbose", "wise", "wise-s")  # the trained arms the targets are counted on


def box_scores(run, variant: str, n: int | None = None) -> dict[str, float]:
    """Box IoU (pixel-inclusive, as the baselines) of each sample's predicted bbox vs the ground-truth bbox:
    ``box_acc50`` = share with IoU > 0.5, ``box_acc50_se`` = its standard error over the test scenes (sample
    standard deviation of the per-scene hits / √n, :func:`_standard_error`), ``box_mean_iou``; a sample without an
    answer scores 0."""
    from wise_rl.evaluate import read_samples
    from wise_rl.metrics import answer_box_ious
    from wise_rl.metrics import box_scores as score_boxes

    records = {r["id"]: r for r in read_samples(run.eval_dir(variant) / "samples.jsonl")}
    rows = _test_rows(run, n)
    answers = [(records.get(str(rid)) or {}).get("answer") for rid in rows["id"]]
    scores = score_boxes(answers, rows["gt_bbox"])
    hits = [float(iou > 0.5) for iou in answer_box_ious(answers, rows["gt_bbox"])]  # as metrics.box_scores
    return {"box_acc50": scores["box_acc50"], "box_acc50_se": _standard_error(hits),
            "box_mean_iou": scores["box_mean_iou"]}


def _test_rows(run, n: int | None = None):
    from datasets import load_from_disk

    ds = load_from_disk(str(run.data))["test"]
    ds = ds.select(range(min(n or run.profile.eval_n, len(ds))))
    return ds.select_columns(["id", "gt_bbox", "shape_boxes", "model_size"])


def variant_metrics(run, variant: str) -> dict[str, Any]:
    from wise_rl.evaluate import load_metrics

    m = load_metrics(run.eval_dir(variant))
    out = {k: m.get(k) for k in VARIANT_KEYS if k in m}
    out["latency_s_mean"] = m.get("latency_mean_s")
    out.update(box_scores(run, variant))
    out["prompt"] = (m.get("settings") or {}).get("prompt")
    return {k: out.get(k) for k in (*VARIANT_KEYS, "prompt")}


def base_metrics(run, card: dict[str, Any] | None) -> dict[str, Any]:
    """The base model's metrics: from its ``card`` (``card.json`` of ``wise-rl pretrain-base``), else from the
    demo's quick answer-only eval of it (``RUN/eval/base``), else a note that there are none."""
    if card is not None and card.get("metrics") is not None:
        m = dict(card["metrics"])
        out = {k: m.get(k) for k in ("gIoU", "cIoU", "acc50", "box_acc50", "box_mean_iou", "format_valid",
                                     "completion_tokens_mean", "latency_s_mean", "n")}
        out["think_tokens_mean"] = 0.0
        rs = (card.get("baselines") or {}).get("random_shape") or {}
        out.update(source="card.json", prompt=card.get("prompt", "answer-only"),
                   card_random_shape_acc50=rs.get("acc@0.5"))
        if card.get("naming"):
            out["naming"] = {k: v for k, v in card["naming"].items() if k != "examples"}
        if card.get("vision_probe"):
            out["vision_probe"] = dict(card["vision_probe"])
        if card.get("metrics_by_family"):
            out["by_family"] = card["metrics_by_family"]
        return out
    if run.profile.base_eval_n and (run.eval_dir("base") / "metrics.json").is_file():
        from wise_rl.evaluate import load_metrics

        m = load_metrics(run.eval_dir("base"))
        out = {k: m.get(k) for k in ("gIoU", "cIoU", "acc50", "format_valid", "think_tokens_mean",
                                     "completion_tokens_mean", "n")}
        out["latency_s_mean"] = m.get("latency_mean_s")
        out.update(box_scores(run, "base", run.profile.base_eval_n))
        out.update(source="quick eval (answer-only prompt)", prompt="answer-only")
        return out
    return {"source": "none (no card.json and eval.base_n = 0)"}


def grpo_trend(run) -> dict[str, Any]:
    """First vs last logging window of the GRPO run's think (concise) length, total reward and bbox IoU reward;
    window = max(1, ⌊logged steps / 4⌋) log entries; ``first_se`` / ``last_se``: the standard error of each window's
    mean (sample standard deviation of its entries / √window; 0 for one entry)."""
    state = run.train_dir("grpo_wise") / "trainer_state.json"
    if not state.is_file():
        return {}
    history = [h for h in json.loads(state.read_text(encoding="utf-8")).get("log_history", []) if "reward" in h]
    if not history:
        return {}
    w = max(1, len(history) // 4)
    out: dict[str, Any] = {"logged_steps": len(history), "window": w}
    for key, name in (("completions/think_tokens", "think_tokens"),
                      ("self_distillation/concise_tokens_mean", "concise_tokens_wellformed"),
                      ("completions/d_think_tokens", "d_think_tokens"), ("completions/mean_length", "completion_length"),
                      ("reward", "reward"), ("rewards/bbox_iou/mean", "bbox_iou"), ("rewards/format/mean", "format"),
                      ("self_distillation/gate_pass_rate", "gate_pass_rate")):
        vals = [float(h[key]) for h in history if isinstance(h.get(key), (int, float)) and math.isfinite(h[key])]
        if vals:
            first, last = vals[:w], vals[-w:]
            out[name] = {"first": sum(first) / len(first), "last": sum(last) / len(last),
                         "first_se": _standard_error(first), "last_se": _standard_error(last)}
    return out


def grpo_same_prompts(run, before: str = "wise-s-sft", after: str = "wise-s") -> dict[str, Any]:
    """What GRPO changed, scene by scene: the WISE SFT checkpoint (``before``) and the GRPO'd model (``after``)
    under the same prompt on the same test scenes, greedy; free of the draw of scenes that moves a window's mean.
    The quantities are :func:`paired_scenes`'."""
    return paired_scenes(run, before, after)


def paired_scenes(run, before: str, after: str) -> dict[str, Any]:
    """Two evaluated variants compared on the same test scenes (greedy, so a scene's outcome is fixed per model).

    ``n`` scenes in both evals; ``box_acc50``: box IoU > 0.5 against the ground-truth box, ``before`` / ``after``
    shares, ``diff`` = mean over scenes of hit(after) − hit(before) (= after − before) and ``diff_se`` = its paired
    standard error (sample standard deviation of the per-scene differences, each −1, 0 or 1, / √n), with
    ``gained`` (scenes hit by ``after`` only) / ``lost`` (by ``before`` only); ``think_tokens`` (over its own
    ``n``, the scenes where both have a think-token count): ``before`` / ``after`` means, ``diff`` (after − before)
    and ``diff_se`` alike; ``identical``: share of scenes whose completions match character for character. ``{}``
    when either eval is missing or they share no scene."""
    from wise_rl.evaluate import read_samples
    from wise_rl.metrics import answer_box_ious

    paths = [run.eval_dir(v) / "samples.jsonl" for v in (before, after)]
    if not all(p.is_file() for p in paths):
        return {}
    b, a = ({str(r["id"]): r for r in read_samples(p)} for p in paths)
    rows = _test_rows(run)
    pairs = [(b[str(i)], a[str(i)], g) for i, g in zip(rows["id"], rows["gt_bbox"]) if str(i) in b and str(i) in a]
    if not pairs:
        return {}

    gt = [g for _, _, g in pairs]  # box acc@0.5: IoU > 0.5, as metrics.box_scores
    hit_before, hit_after = ([iou > 0.5 for iou in answer_box_ious([pair[k].get("answer") for pair in pairs], gt)]
                             for k in (0, 1))
    hits = list(zip(hit_before, hit_after))
    think = [(x["think_tokens"], y["think_tokens"]) for x, y, _ in pairs
             if isinstance(x.get("think_tokens"), (int, float)) and isinstance(y.get("think_tokens"), (int, float))]
    n = len(pairs)
    box_diffs = [float(h1) - float(h0) for h0, h1 in hits]
    out: dict[str, Any] = {"before": before, "after": after, "n": n,
                           "box_acc50": {"before": sum(h for h, _ in hits) / n, "after": sum(h for _, h in hits) / n,
                                         "gained": sum(not h0 and h1 for h0, h1 in hits),
                                         "lost": sum(h0 and not h1 for h0, h1 in hits),
                                         "diff": sum(box_diffs) / n, "diff_se": _standard_error(box_diffs)},
                           "identical": sum(x.get("completion") == y.get("completion") for x, y, _ in pairs) / n}
    if think:
        diffs = [y - x for x, y in think]
        out["think_tokens"] = {"n": len(think), "before": sum(x for x, _ in think) / len(think),
                               "after": sum(y for _, y in think) / len(think), "diff": sum(diffs) / len(diffs),
                               "diff_se": _standard_error(diffs)}
    return out


def ablation_pairs(run, pairs) -> list[dict[str, Any]]:
    """For each ``(wise, ablation)`` pair of evaluated variants: :func:`paired_scenes` with ``before`` = the
    ablation and ``after`` = the WISE variant, so every ``diff`` is WISE − ablation and ``gained`` counts the scenes
    only the WISE variant boxes; with ``wise`` / ``ablation`` naming them. Pairs with a missing eval are left out."""
    out = []
    for wise, ablation in pairs:
        paired = paired_scenes(run, ablation, wise)
        if paired:
            out.append({"wise": wise, "ablation": ablation, **paired})
    return out


def _standard_error(values: list[float]) -> float:
    if len(values) < 2:
        return 0.0
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1) / len(values))


GRPO_FORMAT_FLOOR = 0.5


def _target(value, threshold, ok) -> dict[str, Any]:
    return {"value": value, "threshold": threshold, "pass": bool(ok) if value is not None else False}


def _ratio(a, b):
    return a / b if a is not None and b not in (None, 0) else None


def evaluate_targets(variants: dict[str, dict[str, Any]], trend: dict[str, Any]) -> dict[str, Any]:
    v, s = variants.get("verbose", {}), variants.get("wise-s", {})
    t: dict[str, Any] = {}
    for key, m in (("verbose_box_acc50", v), ("wise_s_box_acc50", s)):
        acc = m.get("box_acc50")
        t[key] = _target(acc, f">= {TARGETS[key]}", acc is not None and acc >= TARGETS[key])
    acc, verbose_acc = s.get("box_acc50"), v.get("box_acc50")
    gap = None if acc is None or verbose_acc is None else verbose_acc - acc
    t["wise_s_vs_verbose"] = _target(
        gap, f"box_acc50(verbose) - box_acc50(wise-s) <= {TARGETS['wise_s_vs_verbose']}, with box_acc50(wise-s) >= "
             f"{TARGETS['wise_s_box_acc50']}",
        gap is not None and gap <= TARGETS["wise_s_vs_verbose"] + 1e-12 and t["wise_s_box_acc50"]["pass"])
    for name, m in variants.items():
        if name not in ARMS:
            continue
        fv = m.get("format_valid")
        t[f"format_valid_{name}"] = _target(fv, f">= {TARGETS['format_valid']}",
                                            fv is not None and fv >= TARGETS["format_valid"])
    # A cost ratio means something only when both sides answer in format: a model that emits nothing is cheap.
    valid = all((variants.get(k) or {}).get("format_valid") is not None
                and variants[k]["format_valid"] >= TARGETS["format_valid"] for k in ("verbose", "wise-s"))
    for key, metric in (("think_tokens_ratio", "think_tokens_mean"), ("latency_ratio", "latency_s_mean")):
        r = _ratio(v.get(metric), s.get(metric))
        t[key] = _target(r, f"verbose / wise-s >= {TARGETS[key]} (both format-valid >= {TARGETS['format_valid']})",
                         r is not None and r >= TARGETS[key] and valid)
        if r is not None and r >= TARGETS[key] and not valid:
            t[key]["note"] = "ratio reached, but not counted: verbose or wise-s is below the format-valid target"
        if r is None:
            t[key]["note"] = f"undefined: wise-s {metric} is 0 or missing"
    tt = trend.get("think_tokens")
    # Shorter only counts while the completions keep the format: a policy that stops closing <think> "shortens"
    # its concise part to nothing (format reward = share of well-formed completions, last window).
    fmt = (trend.get("format") or {}).get("last")
    formed = fmt is None or fmt >= GRPO_FORMAT_FLOOR
    # Shorter means beyond the noise: a window's mean follows which scenes its steps drew (names differ in length).
    noise = None if tt is None else 2 * math.hypot(tt.get("first_se", 0.0), tt.get("last_se", 0.0))
    shorter = tt is not None and tt["last"] < tt["first"] - noise
    t["grpo_concise_shorter"] = _target(
        None if tt is None else {"first_window": tt["first"], "last_window": tt["last"], "noise": noise},
        f"last GRPO window < first window by more than twice the standard error of the difference (mean think "
        f"tokens), format reward >= {GRPO_FORMAT_FLOOR} in the last",
        shorter and formed)
    if tt is not None and not shorter and tt["last"] < tt["first"]:
        t["grpo_concise_shorter"]["note"] = (f"shorter by {tt['first'] - tt['last']:.2f} tokens, within the noise "
                                             f"({noise:.2f})")
    if shorter and not formed:
        t["grpo_concise_shorter"]["note"] = f"shorter, but not counted: format reward {fmt:.2f} in the last window"
    # ... while box accuracy holds: the bbox IoU reward (share of completions with IoU > 0.5 would be noisier on a
    # few prompts) does not fall by more than the tolerance from the first to the last window.
    iou = trend.get("bbox_iou")
    drop = None if iou is None else iou["first"] - iou["last"]
    t["grpo_box_accuracy_holds"] = _target(
        None if iou is None else {"first_window": iou["first"], "last_window": iou["last"]},
        f"mean bbox IoU reward falls by at most {TARGETS['grpo_box_acc_drop']} from the first to the last window",
        drop is not None and drop <= TARGETS["grpo_box_acc_drop"])
    gate = trend.get("gate_pass_rate")
    if gate is not None:
        t["grpo_concise_shorter"]["gate_pass_rate"] = gate
    return t


def _plot_think_vs_acc(report: dict[str, Any], path: Path) -> Path | None:
    from wise_rl.report import _plt

    pts = [(name, m.get("think_tokens_mean"), m.get("acc50"), m.get("box_acc50"))
           for name, m in report["variants"].items()]
    pts = [p for p in pts if p[1] is not None and p[2] is not None]
    if not pts:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for name, x, acc, box in pts:
        ax.scatter([x], [100 * acc], s=70, zorder=3, label=f"{name}: acc@0.5 (mask)")
        ax.annotate(name, (x, 100 * acc), textcoords="offset points", xytext=(6, 6), fontsize=9)
        if box is not None:
            ax.scatter([x], [100 * box], s=40, marker="x", zorder=3, color="grey")
    base = report.get("base") or {}
    if base.get("acc50") is not None:
        ax.axhline(100 * base["acc50"], color="tab:green", linestyle="--", linewidth=1, label="base (answer-only)")
    if report.get("random_shape_acc50") is not None:
        ax.axhline(100 * report["random_shape_acc50"], color="tab:red", linestyle=":", linewidth=1,
                   label="random shape (box)")
    ax.set_xlabel("mean think tokens per sample (policy tokenizer)")
    ax.set_ylabel("acc@0.5 on the test split (%)  [× = box acc@0.5]")
    ax.set_title("Thinking cost vs accuracy (up-left is better)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def _num(x, digits=1) -> str:
    if x is None:
        return "–"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def _target_value(value) -> str:
    """A target's value in the report's table: a mapping as "k 0.12, …", a float to 3 decimals, none as "–"."""
    if isinstance(value, dict):
        return ", ".join(f"{k} {v:.2f}" for k, v in value.items())
    if isinstance(value, float):
        return f"{value:.3f}"
    return "–" if value is None else str(value)


def report_markdown(report: dict[str, Any]) -> str:
    """``report.md``, rendered from ``wise_rl/templates/demo_report.md.jinja`` (the keys: the module docstring and
    :func:`write_report`). Raises ``jinja2.UndefinedError`` when a key every report has is missing."""
    from wise_rl.testbed.pretrain.base_card import template_environment

    env = template_environment()
    env.filters.update(pct=_pct, num=_num, target_value=_target_value, stem=lambda f: Path(f).stem,
                       basename=lambda f: Path(f).name)
    return env.get_template("demo_report.md.jinja").render(report=report)


def _machine() -> str:
    from wise_rl.training.precision import describe_cpu

    return f"{describe_cpu()}, {os.cpu_count()} CPUs, training in fp32"


def write_report(run, variant_names, arms: dict[str, tuple[str, ...]], train_dirs: list[Path], grpo_dir: Path,
                 budget: dict[str, Any], card: dict[str, Any] | None, pairs=()) -> dict[str, Any]:
    """Collect metrics, check the targets, draw the plots and write ``report.json`` / ``report.md`` into
    ``run.out`` (``run``: a :class:`wise_rl.testbed.demo.Run`; the other arguments are the demo's stage layout,
    its budget summary, the base's card and the ``(wise, ablation)`` variant pairs, :func:`ablation_pairs`)."""
    from wise_rl.report import find_runs, plot_lengths, plot_loss, plot_rewards
    from wise_rl.testbed.shapeworld import random_shape_baseline

    t0 = time.perf_counter()
    variants = {v: variant_metrics(run, v) for v in variant_names}
    trend = grpo_trend(run)
    rs = random_shape_baseline(_test_rows(run), seed=run.profile.seed)
    timings = run.timings()
    arm_walls = {}
    for arm, stages in arms.items():
        walls = [timings.get(s, {}).get("wall_s") for s in stages]
        if all(w is not None for w in walls):
            arm_walls[arm] = float(sum(walls))
    report: dict[str, Any] = {
        "profile": asdict(run.profile),
        "base_model": str(run.base),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": _machine(),
        "variants": variants,
        "base": base_metrics(run, card),
        "random_shape_acc50": rs["acc@0.5"],
        "random_shape": rs,
        "grpo_trend": trend,
        "grpo_same_prompts": grpo_same_prompts(run),
        "targets": evaluate_targets(variants, trend),
        "budget": budget,
        "stages": timings,
        "arms_wall_s": arm_walls,
    }
    if pairs:
        report["ablations"] = ablation_pairs(run, pairs)
    # figures: reward components and lengths over GRPO steps, losses of all three training runs, cost vs accuracy
    training_runs, _ = find_runs(train_dirs)
    by_name = {r.path.name: r for r in training_runs}
    grpo = [by_name[n] for n in (grpo_dir.name,) if n in by_name]
    figures = [plot_rewards(grpo, run.out), plot_lengths(grpo, run.out), plot_loss(training_runs, run.out),
               _plot_think_vs_acc(report, run.out / "think_tokens_vs_accuracy.png")]
    report["figures"] = [str(f) for f in figures if f is not None]
    report["stages"]["report"] = {"wall_s": round(time.perf_counter() - t0, 1), "status": "done"}
    (run.out / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    (run.out / "report.md").write_text(report_markdown(report), encoding="utf-8")
    return report


# ----------------------------------------------------------------------------------------------------------------


def summary_table(report: dict[str, Any]) -> str:
    """The console summary: the variants table and the targets."""
    lines = [f"{'variant':<10} {'acc@0.5':>8} {'box acc':>8} {'gIoU':>6} {'format':>7} {'think tok':>9} "
             f"{'compl tok':>9} {'latency s':>9}"]
    for name, m in [("base", report["base"]), *report["variants"].items()]:
        lines.append(f"{name:<10} {_pct(m.get('acc50')):>8} {_pct(m.get('box_acc50')):>8} {_pct(m.get('gIoU')):>6} "
                     f"{_pct(m.get('format_valid')):>7} {_num(m.get('think_tokens_mean')):>9} "
                     f"{_num(m.get('completion_tokens_mean')):>9} {_num(m.get('latency_s_mean'), 4):>9}"
                     + (f"  box ± {_pct(m['box_acc50_se'])}" if m.get("box_acc50_se") is not None else ""))
    lines.append(f"random shape (box acc@0.5): {_pct(report.get('random_shape_acc50'))}")
    same = report.get("grpo_same_prompts") or {}
    if same.get("think_tokens"):
        lines.append(f"GRPO on the same {same['n']} prompts ({same['before']} → {same['after']}): think tokens "
                     f"{same['think_tokens']['before']:.2f} → {same['think_tokens']['after']:.2f}, box acc@0.5 "
                     f"{_pct(same['box_acc50']['before'])} → {_pct(same['box_acc50']['after'])} %")
    for a in report.get("ablations") or []:
        box = a["box_acc50"]
        lines.append(f"{a['wise']} vs {a['ablation']} on the same {a['n']} scenes: box acc@0.5 {_pct(box['after'])} vs "
                     f"{_pct(box['before'])} %, difference {100 * box['diff']:+.1f} ± {100 * box['diff_se']:.1f} "
                     f"points (standard error), {box['gained']} scenes gained, {box['lost']} lost")
    lines.append("targets: " + ", ".join(f"{k} {'PASS' if t['pass'] else 'fail'}" for k, t in report["targets"].items()))
    return "\n".join(lines)
