"""Plots (PNG, matplotlib Agg) and a markdown summary of training runs and eval runs.

Training runs are read from the trainer's ``trainer_state.json`` (``log_history``) in a run folder or, when the
folder has none, in its last ``checkpoint-N``. Eval runs are folders with a ``metrics.json`` (``wise-rl eval``).
A folder given to :func:`build_report` is searched two levels deep, so a demo folder holding both kinds works.

Figures written to the output folder (only those with data):

``rewards.png``   one panel per reward component (``rewards/<name>/mean``) plus the total ``reward``, over steps;
                  a component that never scored says why in its panel (:func:`never_scored`)
``lengths.png``   completion length (``completions/mean_length``), concise / think token counts
                  (``self_distillation/concise_tokens_mean`` and any ``…think…tokens…`` key) over steps
``loss.png``      training loss over steps: SFT and GRPO on separate panels (their scales differ)
``eval_cost_accuracy.png``  mean think tokens (x) vs gIoU (y), one labelled point per eval run
``report.md``     tables of the above with the figures linked
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

REWARD_RE = re.compile(r"^rewards/(?P<name>.+)/mean$")
# Plain names for the reward components and logged keys (a reader of the plots need not know the code).
PLAIN_NAMES = {
    "reward": "total reward (sum of the weighted components)",
    "format": "format: the three-stage layout holds",
    "answer_schema": "answer: valid bbox + two points JSON",
    "bbox_iou": "box IoU with the ground truth",
    "bbox_l1": "box corners within 10 px",
    "points": "both points inside the box",
    "self_distillation": "self-distillation (concise ≈ detailed, shorter)",
    "mask_iou": "mask IoU with the ground truth",
    "brevity": "brevity (concise shorter than detailed)",
    "length_l1_max": "length target met",
    "completions/mean_length": "completion length",
    "completions/think_tokens": "concise (<think>) tokens",
    "completions/d_think_tokens": "detailed (<d_think>) tokens",
    "completions/answer_tokens": "answer tokens",
    "self_distillation/concise_tokens_mean": "concise tokens (self-distillation reward)",
    "self_distillation/detailed_tokens_mean": "detailed tokens (self-distillation reward)",
    "loss": "training loss",
}


def plain_name(key: str) -> str:
    """A plot title for a logged key: :data:`PLAIN_NAMES`, a reward's plain name, else the key with its
    punctuation turned into spaces."""
    m = REWARD_RE.match(key)
    name = m.group("name") if m else key
    return (PLAIN_NAMES.get(key) or PLAIN_NAMES.get(name) or PLAIN_NAMES.get(name.removesuffix("_reward"))
            or name.replace("/", ": ").replace("_", " "))
LENGTH_KEYS = ("completions/mean_length", "self_distillation/concise_tokens_mean",
               "self_distillation/detailed_tokens_mean")


@dataclass
class TrainingRun:
    name: str
    path: Path
    log_history: list[dict[str, Any]]

    def series(self, key: str) -> tuple[list[float], list[float]]:
        """(steps, values) of ``key`` over the log history (entries without it are skipped)."""
        xs, ys = [], []
        for entry in self.log_history:
            value = entry.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                xs.append(float(entry.get("step", len(xs))))
                ys.append(float(value))
        return xs, ys

    def keys(self) -> list[str]:
        seen: dict[str, None] = {}
        for entry in self.log_history:
            for k in entry:
                seen.setdefault(k, None)
        return list(seen)


@dataclass
class EvalRun:
    name: str
    path: Path
    metrics: dict[str, Any] = field(default_factory=dict)


def _trainer_state(folder: Path) -> Path | None:
    direct = folder / "trainer_state.json"
    if direct.is_file():
        return direct
    checkpoints = []
    for c in folder.glob("checkpoint-*"):
        m = re.fullmatch(r"checkpoint-(\d+)", c.name)
        if m and (c / "trainer_state.json").is_file():
            checkpoints.append((int(m.group(1)), c / "trainer_state.json"))
    return max(checkpoints)[1] if checkpoints else None


def _name(path: Path, roots: Sequence[Path]) -> str:
    for root in roots:
        try:
            rel = path.relative_to(root.parent)
            return str(rel)
        except ValueError:
            continue
    return path.name


def find_runs(paths: Sequence[str | Path]) -> tuple[list[TrainingRun], list[EvalRun]]:
    """Training and eval runs in ``paths`` (each path itself, its children and grandchildren)."""
    roots = [Path(p) for p in paths]
    training: list[TrainingRun] = []
    evals: list[EvalRun] = []
    seen: set[Path] = set()
    for root in roots:
        if not root.exists():
            raise FileNotFoundError(f"no run folder at {root}")
        candidates = [root] + sorted(p for p in root.glob("*") if p.is_dir() and not p.name.startswith("checkpoint-"))
        candidates += sorted(p for c in candidates[1:] for p in c.glob("*")
                             if p.is_dir() and not p.name.startswith("checkpoint-"))
        for folder in candidates:
            folder = folder.resolve()
            if folder in seen:
                continue
            seen.add(folder)
            state = _trainer_state(folder)
            if state is not None:
                try:
                    history = json.loads(state.read_text(encoding="utf-8")).get("log_history", [])
                except (OSError, json.JSONDecodeError) as exc:
                    raise ValueError(f"{state}: not a readable trainer_state.json ({exc})") from exc
                if history:
                    training.append(TrainingRun(_name(folder, [r.resolve() for r in roots]), folder, history))
                else:
                    logger.warning("%s: empty log_history, skipped", state)
            metrics_file = folder / "metrics.json"
            if metrics_file.is_file():
                try:
                    m = json.loads(metrics_file.read_text(encoding="utf-8"))
                except (OSError, json.JSONDecodeError) as exc:
                    raise ValueError(f"{metrics_file}: not readable JSON ({exc})") from exc
                if "gIoU" in m:
                    evals.append(EvalRun(_name(folder, [r.resolve() for r in roots]), folder, m))
    return training, evals


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _panel_grid(n: int) -> tuple[int, int]:
    cols = min(3, n)
    return math.ceil(n / cols), cols


def never_scored(runs: list[TrainingRun], key: str) -> str | None:
    """Why the reward ``key`` (``rewards/<name>/mean``) never scored, when it logged 0 at every step of every run
    (None when it scored somewhere, or logged nothing): completions cut before the tag it needs
    (``completions/clipped_before_tag_ratio``, else TRL's ``completions/clipped_ratio``), a closed gate
    (``<name>/gate_pass_rate``), or no reason in the logs."""
    values = [v for r in runs for v in r.series(key)[1]]
    if not values or any(v != 0 for v in values):
        return None
    name = REWARD_RE.match(key).group("name") if REWARD_RE.match(key) else key

    def mean(k):
        got = [v for r in runs for v in r.series(k)[1]]
        return sum(got) / len(got) if got else None

    clipped = mean("completions/clipped_before_tag_ratio")
    if clipped is None:
        clipped = mean("completions/clipped_ratio")
    if clipped is not None and clipped >= 0.5:
        return (f"never scored: {clipped:.0%} of the completions were cut at max_completion_length before the tag it "
                "needs; raise max_completion_length")
    gate = mean(f"{name}/gate_pass_rate")
    if gate is not None and gate == 0:
        return "never scored: no completion passed its correctness gate"
    return "never scored: 0 at every logged step"


def _plot_series(runs: list[TrainingRun], keys: list[str], titles: dict[str, str], path: Path,
                 suptitle: str, ylabel: str, notes: dict[str, str] | None = None) -> Path | None:
    keys = [k for k in keys if any(r.series(k)[0] for r in runs)]
    if not keys:
        return None
    plt = _plt()
    from matplotlib.ticker import MaxNLocator

    rows, cols = _panel_grid(len(keys))
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.3 * rows), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        for run in runs:
            xs, ys = run.series(key)
            if xs:
                ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, markersize=3, linewidth=1.4, label=run.name)
        ax.set_title(titles.get(key) or plain_name(key), fontsize=10)
        ax.set_xlabel("optimizer step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if (notes or {}).get(key):  # a panel that says why it is flat
            ax.text(0.5, 0.5, "\n".join(_wrap(notes[key], 40)), transform=ax.transAxes, ha="center", va="center",
                    fontsize=8, color="C3", bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "C3"})
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    legend: dict[str, Any] = {}  # every run once, from whichever panel draws it
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    handles, labels = list(legend.values()), list(legend)
    if len(runs) > 1 or len(labels) > 0:
        fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=8, frameon=False)
    fig.suptitle(suptitle)
    fig.tight_layout(rect=(0, 0.06 if len(labels) else 0, 1, 0.96))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_rewards(runs: list[TrainingRun], out: Path) -> Path | None:
    keys = sorted({k for r in runs for k in r.keys() if REWARD_RE.match(k)})
    titles = {k: plain_name(k) for k in keys}
    if any(r.series("reward")[0] for r in runs):
        keys = ["reward", *keys]
        titles["reward"] = plain_name("reward")
    notes = {k: note for k in keys if (note := never_scored(runs, k))}
    return _plot_series(runs, keys, titles, out / "rewards.png", "Reward components over training", "mean reward",
                        notes)


def _wrap(text: str, width: int) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width)


def is_rl_run(run: TrainingRun) -> bool:
    """A GRPO / RLOO run (it logs rewards); otherwise SFT."""
    return any(REWARD_RE.match(k) or k == "reward" for k in run.keys())


def plot_lengths(runs: list[TrainingRun], out: Path) -> Path | None:
    extra = sorted({k for r in runs for k in r.keys()
                    if k not in LENGTH_KEYS and "think" in k and ("token" in k or "length" in k)})
    keys = [*LENGTH_KEYS, *extra]
    return _plot_series(runs, keys, {}, out / "lengths.png", "Completion and think lengths over training",
                        "tokens")


def plot_loss(runs: list[TrainingRun], out: Path) -> Path | None:
    """The training loss, SFT runs and GRPO/RLOO runs on separate panels: their scales differ by orders of magnitude
    (a GRPO loss is ~0 by construction, its gradient comes from the advantages)."""
    groups = {"SFT loss (cross-entropy on the completion)": [r for r in runs if not is_rl_run(r)],
              "GRPO / RLOO loss (policy objective; ~0 by construction)": [r for r in runs if is_rl_run(r)]}
    renamed = [TrainingRun(r.name, r.path, [{**e, f"loss:{title}": e["loss"]} for e in r.log_history if "loss" in e])
               for title, members in groups.items() for r in members]
    keys = [f"loss:{title}" for title, members in groups.items() if members]
    return _plot_series(renamed, keys, {k: k.split(":", 1)[1] for k in keys}, out / "loss.png", "Training loss",
                        "loss")


def eval_label(run: EvalRun) -> str:
    prompt = (run.metrics.get("settings") or {}).get("prompt")
    return f"{run.name} ({prompt})" if prompt and prompt not in run.name else run.name


def plot_eval(evals: list[EvalRun], out: Path) -> Path | None:
    """Mean think tokens (x) vs gIoU (y), one marker per eval run named in a legend (labels beside the points
    overlap when runs are close). Runs whose think tokens were not measured on every sample (no ``<think>``
    block, ``think_tokens_n`` < n) are drawn hollow and say so in the legend; runs with none measured are listed
    under the plot instead of being drawn at x = 0."""
    from wise_rl.evaluate import think_cost_note

    points, unmeasured = [], []
    for e in evals:
        x, y = e.metrics.get("think_tokens_mean"), e.metrics.get("gIoU")
        if y is None:
            continue
        if x is None:
            unmeasured.append(eval_label(e))
        else:
            points.append((e, x, y))
    if not points and not unmeasured:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.2, 4.8))
    markers = "osD^vP*X"
    for i, (e, x, y) in enumerate(points):
        note = think_cost_note(e.metrics)
        label = eval_label(e) + (f" — think tokens {note}" if note else "")
        colour = f"C{i % 10}"
        ax.scatter([x], [100 * y], s=70, zorder=3, marker=markers[i % len(markers)], label=label,
                   facecolors="none" if note else colour, edgecolors=colour, linewidths=1.6)
    if points:
        xs = [x for _, x, _ in points]
        ys = [100 * y for _, _, y in points]
        xpad = max(1.0, 0.15 * (max(xs) - min(xs)))
        ypad = max(1.0, 0.15 * (max(ys) - min(ys)))
        ax.set_xlim(max(0.0, min(xs) - xpad), max(xs) + xpad)
        ax.set_ylim(max(0.0, min(ys) - ypad), min(100.0, max(ys) + ypad))
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=1 if len(points) > 3 else len(points),
                  fontsize=8, frameon=False)
    ax.set_xlabel("mean think tokens per sample (cost)")
    ax.set_ylabel("gIoU % (accuracy)")
    ax.set_title("Cost vs accuracy across eval runs (up and to the left is better)", fontsize=10)
    ax.grid(alpha=0.3)
    if unmeasured:
        fig.text(0.01, 0.01, "not plotted (think tokens not measured: no <think> block): " + ", ".join(unmeasured),
                 fontsize=7)
    fig.tight_layout()
    path = out / "eval_cost_accuracy.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _f(value, pct=False, digits=2) -> str:
    if value is None:
        return "–"
    if pct:
        return f"{100 * value:.{digits}f}"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


# The concise part's length, as the recipes log it (every GRPO step), else as the self-distillation reward does
# (only the well-formed completions of a step)
CONCISE_KEYS = ("completions/think_tokens", "self_distillation/concise_tokens_mean")


def _first(last: dict[str, Any], keys: Sequence[str]):
    return next((last[k] for k in keys if k in last), None)


def _training_table(runs: list[TrainingRun]) -> list[str]:
    lines = ["| run | steps | final loss | final reward | reward components (last log) | completion len | "
             "concise tokens |", "|---|---|---|---|---|---|---|"]
    for r in runs:
        last: dict[str, Any] = {}
        for entry in r.log_history:  # the last value of each key
            last.update({k: v for k, v in entry.items() if isinstance(v, (int, float))})
        comps = ", ".join(f"{REWARD_RE.match(k).group('name')}={last[k]:.3f}" for k in sorted(last)
                          if REWARD_RE.match(k))
        step = max((e.get("step", 0) for e in r.log_history), default=0)
        lines.append(f"| {r.name} | {step} | {_f(last.get('loss'), digits=4)} | {_f(last.get('reward'), digits=3)} | "
                     f"{comps or '–'} | {_f(last.get('completions/mean_length'), digits=1)} | "
                     f"{_f(_first(last, CONCISE_KEYS), digits=1)} |")
    return lines


def _think_note(m: dict[str, Any]) -> str:
    from wise_rl.evaluate import think_cost_note

    note = think_cost_note(m)
    return f" ({note})" if note else ""


def _eval_table(evals: list[EvalRun]) -> list[str]:
    lines = ["| eval | prompt | n | failed | gIoU % | cIoU % | acc@0.5 % | think tok (mean / median) | "
             "completion tok | s/sample | samples/s |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for e in evals:
        m = e.metrics
        prompt = (m.get("settings") or {}).get("prompt", "–")
        lines.append(
            f"| {e.name} | {prompt} | {m.get('n')} | {m.get('n_failed')} | {_f(m.get('gIoU'), True)} | "
            f"{_f(m.get('cIoU'), True)} | {_f(m.get('acc50'), True)} | {_f(m.get('think_tokens_mean'), digits=1)} / "
            f"{_f(m.get('think_tokens_median'), digits=1)}{_think_note(m)} | {_f(m.get('completion_tokens_mean'), digits=1)} | "
            f"{_f(m.get('latency_mean_s'), digits=4)} | {_f(m.get('samples_per_s'), digits=1)} |"
        )
    return lines


def build_report(paths: Sequence[str | Path], out_dir: str | Path | None = None) -> dict[str, Any]:
    """Write the figures and ``report.md`` for the runs under ``paths`` into ``out_dir`` (default: the first path
    + ``/report``). Returns ``{"figures": [...], "report": path, "training": n, "evals": n}``; raises when nothing
    readable is found."""
    training, evals = find_runs(paths)
    if not training and not evals:
        raise FileNotFoundError(
            f"no trainer_state.json (run or checkpoint-N) nor metrics.json found under {', '.join(map(str, paths))}"
        )
    out = Path(out_dir) if out_dir is not None else Path(paths[0]) / "report"
    out.mkdir(parents=True, exist_ok=True)
    figures = [p for p in (plot_rewards(training, out), plot_lengths(training, out), plot_loss(training, out),
                           plot_eval(evals, out)) if p is not None]
    md = ["# wise-rl report", ""]
    if training:
        md += ["## Training runs", "", *_training_table(training), ""]
        flat = {k: note for k in sorted({k for r in training for k in r.keys() if REWARD_RE.match(k)})
                if (note := never_scored(training, k))}
        md += [f"- `{REWARD_RE.match(k).group('name')}` {note}" for k, note in flat.items()] + ([""] if flat else [])
    if evals:
        md += ["## Eval runs", "", "IoUs in percent (protocol per run in its metrics.json); think tokens counted "
               "with the policy tokenizer on the `<think>` content.", "", *_eval_table(evals), ""]
    if figures:
        md += ["## Figures", ""] + [f"![{p.stem}]({p.name})" for p in figures] + [""]
    report = out / "report.md"
    report.write_text("\n".join(md), encoding="utf-8")
    return {"figures": [str(p) for p in figures], "report": str(report), "training": len(training),
            "evals": len(evals)}
