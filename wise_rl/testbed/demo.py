"""``wise-rl demo``: WISE end to end on ShapeWorld, from the shipped base model, through the real recipes.

Stages (each one skipped when its outputs are complete, so an interrupted demo resumes where it stopped)::

    data         ShapeWorld train/test (fixed seed), save_to_disk      → RUN/data/ (+ DONE)
    base         the base model's metrics: its card.json, else a quick answer-only eval → RUN/eval/base/
    sft_verbose  arm (a), recipes/sft.py with recipes/demo/sft_verbose.yaml → RUN/verbose_sft/ (+ DONE)
    sft_wise     arm (b), recipes/sft.py with recipes/demo/sft_wise.yaml    → RUN/wise_sft/ (+ DONE)
    grpo_wise    arm (b), recipes/grpo.py with recipes/demo/grpo_wise.yaml  → RUN/wise_grpo/ (+ DONE)
    eval_*       wise_rl.evaluate.run_eval on the test split, greedy, stopped at </answer>:
                 verbose (arm a, `verbose` prompt), wise and wise-s (arm b)     → RUN/eval/<variant>/metrics.json
    report       RUN/report.md, RUN/report.json, RUN/*.png (always rewritten)

The recipes are the user-facing ones: each stage's config is ``recipes/demo/<stage>.yaml`` with the profile's
overrides and the run's paths merged in, written to ``RUN/configs/<stage>.yaml`` (re-run any stage by hand with
``python recipes/sft.py --config RUN/configs/sft_wise.yaml``). They run in this process (progress bars and
tracebacks as usual); with ``runtime.parallel_arms`` the verbose arm (sft_verbose, eval_verbose) runs at the same
time in a child process (``python -m wise_rl.testbed.demo --child``, one thread each: a 2-core machine trains both arms at
once), whose output goes to ``RUN/logs/verbose_arm.log`` (its tail is printed if it fails).

Profiles are YAML data in ``recipes/demo/profile_<name>.yaml`` (``default`` for ``make demo``, ``long`` for
``make demo-long``, ``smoke`` for the test) or any file given with ``--profile``.

Same budget. Both arms get the same number of optimizer steps over the same number of sequences per step::

    steps(verbose SFT) = budget.sft_steps + budget.grpo_steps
    steps(WISE)        = budget.sft_steps (SFT warm-start) + budget.grpo_steps (GRPO)
    sequences per step = SFT batch (per_device_train_batch_size × gradient_accumulation_steps)
                       = GRPO completions per step (num_generations × prompts per step)

so the verbose arm sees ``(sft_steps + grpo_steps) × B`` supervised targets and WISE ``sft_steps × B`` targets
plus ``grpo_steps × B`` sampled completions scored by the rewards. The profile is checked for equal sequences per
step (an error names the offending values); the wall time of each arm is reported next to it.

``report.json`` (per variant ``verbose``, ``wise``, ``wise-s``): ``gIoU``, ``cIoU``, ``acc50`` (mask IoU ≥ 0.5 of
the box-decoded answer against the shape's mask, LISA protocol, as ``wise-rl eval``), ``box_acc50`` /
``box_mean_iou`` (box IoU > 0.5 of the predicted bbox against the ground-truth bbox, the measure of
``random_shape_acc50``), ``format_valid``, ``think_tokens_mean``, ``completion_tokens_mean``, ``latency_s_mean``;
``base`` (the card's held-out metrics, else a quick eval), ``random_shape_acc50`` (box a random shape of each test
scene, :func:`wise_rl.data.shapeworld.random_shape_baseline`), the GRPO length trend, and ``targets``::

    verbose_box_acc50       box_acc50(verbose) ≥ 0.50 (the baseline must be a real one)
    wise_s_box_acc50        box_acc50(wise-s) ≥ 0.60
    wise_s_vs_verbose       box_acc50(verbose) − box_acc50(wise-s) ≤ 0.03 (within 3 points), and wise_s_box_acc50 passes
    format_valid_<variant>  format_valid ≥ 0.95                           (each variant)
    think_tokens_ratio      think_tokens_mean(verbose) / think_tokens_mean(wise-s) ≥ 5   } counted only when verbose
    latency_ratio           latency_s_mean(verbose) / latency_s_mean(wise-s) ≥ 3         } and wise-s are format-valid
    grpo_concise_shorter    mean think tokens of the first GRPO logging window > that of the last window
                            (window = max(1, ⌊logged steps / 4⌋) entries of ``completions/think_tokens``),
                            with the self-distillation gate's pass rate over GRPO beside it
    grpo_box_accuracy_holds the mean bbox IoU reward falls by at most 0.05 from the first to the last window

each with ``value``, ``threshold`` and ``pass``: whatever is reached is reported as it is.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

PACKAGE_DIR = Path(__file__).resolve().parent.parent  # the wise_rl package
REPO_DIR = PACKAGE_DIR.parent
RECIPES_DIR = REPO_DIR / "recipes"
DEMO_RECIPES = RECIPES_DIR / "demo"
DEFAULT_BASE = PACKAGE_DIR / "assets" / "shapeworld-base"
PRETRAIN_COMMAND = "wise-rl pretrain-base --out wise_rl/assets/shapeworld-base"

TRAIN_STAGES = {  # stage -> (recipe script, recipe config, output folder under RUN)
    "sft_verbose": ("sft", "sft_verbose.yaml", "verbose_sft"),
    "sft_wise": ("sft", "sft_wise.yaml", "wise_sft"),
    "grpo_wise": ("grpo", "grpo_wise.yaml", "wise_grpo"),
}
EVALS = {  # variant -> (trained stage whose model is evaluated, prompt)
    "verbose": ("sft_verbose", "verbose"),
    "wise": ("grpo_wise", "wise"),
    "wise-s": ("grpo_wise", "wise-s"),
}
VARIANT_KEYS = ("gIoU", "cIoU", "acc50", "box_acc50", "box_mean_iou", "format_valid", "think_tokens_mean",
                "completion_tokens_mean", "latency_s_mean", "n", "n_failed")
VERBOSE_ARM = ("sft_verbose", "eval_verbose")
WISE_ARM = ("sft_wise", "grpo_wise", "eval_wise", "eval_wise-s")
ALL_STAGES = ("data", "base", *VERBOSE_ARM, *WISE_ARM, "report")
# Recipe options the demo sets itself (paths and the step budget); a profile may not override them.
RESERVED = ("model_name_or_path", "dataset", "dataset_split", "output_dir", "max_steps", "tiny_model_preset")
# On box acc@0.5 (box IoU > 0.5 against the queried shape's box): the measure of the random-shape baseline.
TARGETS = {"verbose_box_acc50": 0.50, "wise_s_box_acc50": 0.60, "wise_s_vs_verbose": 0.03, "format_valid": 0.95,
           "think_tokens_ratio": 5.0, "latency_ratio": 3.0, "grpo_box_acc_drop": 0.05}


class DemoError(RuntimeError):
    """The demo cannot run as asked; the message says what and how to fix it."""


# ----------------------------------------------------------------------------------------------------------------
# Profiles
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class Profile:
    """A demo profile (``recipes/demo/profile_<name>.yaml``); see that folder for the meaning of each key."""

    name: str
    seed: int = 0
    image_size: int = 112
    prompt_style: str = "official"  # or "compact": formats.styled_prompt maps every recipe and eval prompt
    n_train: int = 2000
    n_test: int = 200
    sft_steps: int = 60
    grpo_steps: int = 20
    eval_n: int = 200
    eval_batch_size: int = 16
    eval_max_new_tokens: int = 256
    base_eval_n: int = 100
    threads: int = 1
    parallel_arms: bool = False
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)
    source: str = ""

    def fingerprint(self) -> dict[str, Any]:
        """Everything that changes results (not ``source``, ``threads`` nor ``parallel_arms``)."""
        d = asdict(self)
        for k in ("source", "threads", "parallel_arms"):
            d.pop(k)
        return d


_PROFILE_SECTIONS = {
    "data": {"n_train": "n_train", "n_test": "n_test"},
    "budget": {"sft_steps": "sft_steps", "grpo_steps": "grpo_steps"},
    "eval": {"n": "eval_n", "batch_size": "eval_batch_size", "max_new_tokens": "eval_max_new_tokens",
             "base_n": "base_eval_n"},
    "runtime": {"threads": "threads", "parallel_arms": "parallel_arms"},
}


def profile_path(name_or_path: str) -> Path:
    """``recipes/demo/profile_<name>.yaml`` for a name, else the path itself."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.is_file():
            raise DemoError(f"--profile {name_or_path}: no such file")
        return p
    cand = DEMO_RECIPES / f"profile_{name_or_path}.yaml"
    if not cand.is_file():
        known = sorted(q.stem.removeprefix("profile_") for q in DEMO_RECIPES.glob("profile_*.yaml"))
        raise DemoError(f"--profile {name_or_path!r}: unknown profile; known: {', '.join(known)} (or a YAML path)")
    return cand


def load_profile(name_or_path: str) -> Profile:
    """Read and check a profile; an unknown key or a bad value raises :class:`DemoError` naming it."""
    import yaml

    path = profile_path(name_or_path)
    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise DemoError(f"{path}: a profile is a YAML mapping")
    kwargs: dict[str, Any] = {"name": str(data.pop("name", path.stem.removeprefix("profile_"))), "source": str(path)}
    for key in ("seed", "image_size", "prompt_style"):
        if key in data:
            kwargs[key] = data.pop(key)
    for section, keys in _PROFILE_SECTIONS.items():
        values = data.pop(section, None) or {}
        if not isinstance(values, dict):
            raise DemoError(f"{path}: {section}: must be a mapping")
        for k, v in values.items():
            if k not in keys:
                raise DemoError(f"{path}: {section}.{k}: unknown key; known: {', '.join(keys)}")
            kwargs[keys[k]] = v
    stages = data.pop("stages", None) or {}
    if data:
        raise DemoError(f"{path}: unknown key(s) {sorted(data)}; known: name, seed, image_size, prompt_style, "
                        f"{', '.join(_PROFILE_SECTIONS)}, stages")
    if not isinstance(stages, dict) or any(s not in TRAIN_STAGES for s in stages):
        raise DemoError(f"{path}: stages: a mapping with keys among {', '.join(TRAIN_STAGES)}, got "
                        f"{list(stages) if isinstance(stages, dict) else stages!r}")
    for stage, overrides in stages.items():
        if not isinstance(overrides, dict):
            raise DemoError(f"{path}: stages.{stage}: must be a mapping of recipe option: value")
        bad = [k for k in overrides if k in RESERVED]
        if bad:
            raise DemoError(f"{path}: stages.{stage}: {bad} are set by the demo itself (paths, the budget rule)")
    kwargs["stages"] = {s: dict(stages.get(s) or {}) for s in TRAIN_STAGES}
    profile = Profile(**kwargs)
    for key in ("n_train", "n_test", "sft_steps", "grpo_steps", "eval_n", "eval_batch_size", "eval_max_new_tokens",
                "threads"):
        value = getattr(profile, key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise DemoError(f"{path}: {key} must be a positive integer, got {value!r}")
    if not isinstance(profile.base_eval_n, int) or profile.base_eval_n < 0:
        raise DemoError(f"{path}: eval.base_n must be an integer ≥ 0, got {profile.base_eval_n!r}")
    if profile.eval_n > profile.n_test:
        raise DemoError(f"{path}: eval.n ({profile.eval_n}) is larger than data.n_test ({profile.n_test})")
    if profile.prompt_style not in ("official", "compact"):
        raise DemoError(f"{path}: prompt_style must be 'official' or 'compact', got {profile.prompt_style!r}")
    if profile.image_size % 28:
        raise DemoError(f"{path}: image_size must be a multiple of 28, got {profile.image_size}")
    return profile


# ----------------------------------------------------------------------------------------------------------------
# Base model
# ----------------------------------------------------------------------------------------------------------------
def check_base(base: str | os.PathLike | None) -> Path:
    """The base model folder, or a :class:`DemoError` saying how to create it."""
    path = Path(base) if base is not None else DEFAULT_BASE
    if (path / "config.json").is_file() and any(path.glob("*.safetensors")):
        return path
    what = "the embedded ShapeWorld base model" if base is None else "a base model"
    raise DemoError(
        f"no base model at {path} (expected {what}: config.json + *.safetensors + processor files).\n"
        f"The demo starts from the ShapeWorld base model; create it with:\n"
        f"    {PRETRAIN_COMMAND}\n"
        f"(or pass --base DIR with any model folder saved by `wise-rl pretrain-base` / `wise-rl tiny-model`)."
    )


def base_card(base: Path) -> dict[str, Any] | None:
    card = base / "card.json"
    if not card.is_file():
        return None
    try:
        return json.loads(card.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DemoError(f"{card}: not valid JSON ({exc})") from exc


# ----------------------------------------------------------------------------------------------------------------
# Run folder
# ----------------------------------------------------------------------------------------------------------------
class Run:
    """Paths and state of one demo run folder."""

    def __init__(self, out: str | os.PathLike, profile: Profile, base: Path):
        self.out, self.profile, self.base = Path(out), profile, Path(base)

    data = property(lambda self: self.out / "data")
    configs = property(lambda self: self.out / "configs")
    logs = property(lambda self: self.out / "logs")

    def train_dir(self, stage: str) -> Path:
        return self.out / TRAIN_STAGES[stage][2]

    def eval_dir(self, variant: str) -> Path:
        return self.out / "eval" / variant

    def config_path(self, stage: str) -> Path:
        return self.configs / f"{stage}.yaml"

    # ---- the run's identity: a different profile or base in the same folder is an error, not a silent mix
    def check_identity(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        ident = {"profile": self.profile.fingerprint(), "base": str(self.base.resolve())}
        path = self.out / "demo.json"
        if path.is_file():
            old = json.loads(path.read_text(encoding="utf-8"))
            for key in ("profile", "base"):
                if old.get(key) != ident[key]:
                    raise DemoError(
                        f"{self.out} holds a demo run with another {key} ({old.get(key)!r} vs {ident[key]!r}); "
                        "use another --out folder or delete it to start over"
                    )
        path.write_text(json.dumps(ident | {"profile_source": self.profile.source}, indent=1) + "\n",
                        encoding="utf-8")

    # ---- stage timings (kept across resumed runs)
    def timings(self) -> dict[str, Any]:
        path = self.out / "stages.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}

    def record(self, stage: str, wall_s: float | None, status: str) -> None:
        path = self.out / "stages.json"
        # the parent and the background arm both write here: read-modify-write under a lock
        with open(self.out / ".stages.lock", "w") as lock:
            try:
                import fcntl

                fcntl.flock(lock, fcntl.LOCK_EX)
            except ImportError:  # no fcntl (Windows): the arms write different keys, a lost update is unlikely
                pass
            data = self.timings()
            entry = data.get(stage, {})
            if status == "done":
                entry = {"wall_s": round(wall_s, 3), "status": "done"}  # ms: a smoke eval can take < 0.05 s
            else:
                entry = {**entry, "status": status}
            data[stage] = entry
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
            os.replace(tmp, path)


# ----------------------------------------------------------------------------------------------------------------
# Recipe configs and budget
# ----------------------------------------------------------------------------------------------------------------
def _recipe_yaml(name: str) -> dict[str, Any]:
    from wise_rl.training import load_config

    return load_config(DEMO_RECIPES / name)


def sequences_per_step(config: dict[str, Any]) -> int:
    """Sequences per optimizer step: per_device_train_batch_size × gradient_accumulation_steps (SFT: targets;
    GRPO: completions, i.e. num_generations × prompts)."""
    return int(config.get("per_device_train_batch_size", 8)) * int(config.get("gradient_accumulation_steps", 1))


def stage_configs(run: Run) -> dict[str, dict[str, Any]]:
    """Each training stage's recipe config: ``recipes/demo/<stage>.yaml`` + profile overrides + the run's paths +
    the step budget. Raises :class:`DemoError` when the arms would not get the same sequences per step."""
    p = run.profile
    steps = {"sft_verbose": p.sft_steps + p.grpo_steps, "sft_wise": p.sft_steps, "grpo_wise": p.grpo_steps}
    models = {"sft_verbose": run.base, "sft_wise": run.base, "grpo_wise": run.train_dir("sft_wise")}
    out: dict[str, dict[str, Any]] = {}
    for stage, (_, yaml_name, _) in TRAIN_STAGES.items():
        cfg = _recipe_yaml(yaml_name)
        cfg.update(p.stages.get(stage, {}))
        cfg.update(model_name_or_path=str(models[stage]), dataset=str(run.data), dataset_split="train",
                   output_dir=str(run.train_dir(stage)), max_steps=steps[stage], seed=p.seed)
        cfg.pop("tiny_model_preset", None)
        if "prompt_template" in cfg:
            cfg["prompt_template"] = _styled(run, cfg["prompt_template"], f"stages.{stage}.prompt_template")
        out[stage] = cfg
    per_step = {s: sequences_per_step(c) for s, c in out.items()}
    if len(set(per_step.values())) != 1:
        raise DemoError(
            f"{p.source}: the arms must train on the same number of sequences per optimizer step (the same-budget "
            f"rule); got {per_step} (per_device_train_batch_size × gradient_accumulation_steps)"
        )
    gens = int(out["grpo_wise"].get("num_generations", 8))
    if per_step["grpo_wise"] % gens:
        raise DemoError(f"{p.source}: GRPO completions per step ({per_step['grpo_wise']}) must be a multiple of "
                        f"num_generations ({gens})")
    return out


def _styled(run: Run, prompt: str, where: str) -> str:
    """``prompt`` in the profile's ``prompt_style`` (a recipe or override naming an unknown template: DemoError)."""
    from wise_rl import formats

    try:
        return formats.styled_prompt(prompt, run.profile.prompt_style)
    except ValueError as exc:
        raise DemoError(f"{run.profile.source}: {where}: {exc}") from None


def budget_summary(run: Run, configs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    p = run.profile
    b = sequences_per_step(configs["sft_wise"])
    gens = int(configs["grpo_wise"].get("num_generations", 8))
    return {
        "rule": "same optimizer steps, same sequences per step",
        "sequences_per_step": b,
        "verbose": {"sft_steps": p.sft_steps + p.grpo_steps, "sft_targets": (p.sft_steps + p.grpo_steps) * b},
        "wise": {"sft_steps": p.sft_steps, "grpo_steps": p.grpo_steps, "sft_targets": p.sft_steps * b,
                 "grpo_completions": p.grpo_steps * b, "grpo_prompts": p.grpo_steps * b // gens,
                 "num_generations": gens},
    }


def write_configs(run: Run) -> dict[str, dict[str, Any]]:
    import yaml

    configs = stage_configs(run)
    run.configs.mkdir(parents=True, exist_ok=True)
    for stage, cfg in configs.items():
        script = TRAIN_STAGES[stage][0]
        header = (f"# Written by `wise-rl demo` (profile {run.profile.name}): recipes/demo/{TRAIN_STAGES[stage][1]} "
                  f"+ profile overrides + run paths.\n# Re-run by hand: python recipes/{script}.py --config "
                  f"{run.config_path(stage)}\n")
        run.config_path(stage).write_text(header + yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return configs


# ----------------------------------------------------------------------------------------------------------------
# Stages
# ----------------------------------------------------------------------------------------------------------------
def _data_done(run: Run) -> bool:
    marker = run.data / "DONE"
    if not marker.is_file():
        return False
    info = json.loads(marker.read_text(encoding="utf-8"))
    p = run.profile
    return info == {"n_train": p.n_train, "n_test": p.n_test, "seed": p.seed, "image_size": p.image_size}


def stage_data(run: Run, progress: bool = True) -> None:
    """ShapeWorld train/test with the profile's seed and sizes, saved to ``RUN/data`` (then a DONE marker)."""
    import shutil

    from wise_rl.testbed.shapeworld import generate_dataset

    p = run.profile
    if run.data.exists():
        shutil.rmtree(run.data)
    generate_dataset(p.n_train, p.n_test, seed=p.seed, image_size=p.image_size, out_dir=str(run.data),
                     progress=progress)
    (run.data / "DONE").write_text(json.dumps({"n_train": p.n_train, "n_test": p.n_test, "seed": p.seed,
                                               "image_size": p.image_size}) + "\n", encoding="utf-8")


def _train_done(run: Run, stage: str) -> bool:
    folder = run.train_dir(stage)
    if not (folder / "DONE").is_file():
        return False
    done = json.loads((folder / "DONE").read_text(encoding="utf-8"))
    return done.get("global_step") == stage_configs(run)[stage]["max_steps"]


def _load_recipe(script: str):
    import importlib

    return importlib.import_module(f"wise_rl.scripts.{script}")


def stage_train(run: Run, stage: str) -> dict[str, Any]:
    """Run the stage's recipe in this process on ``RUN/configs/<stage>.yaml`` (resumes from its checkpoints)."""
    from wise_rl import training

    script = TRAIN_STAGES[stage][0]
    recipe = _load_recipe(script)
    parse = training.parse_sft_args if script == "sft" else training.parse_grpo_args
    args = parse(["--config", str(run.config_path(stage))])
    return recipe.main(*args)


def _eval_done(run: Run, variant: str, n: int) -> bool:
    path = run.eval_dir(variant) / "metrics.json"
    if not path.is_file():
        return False
    return json.loads(path.read_text(encoding="utf-8")).get("n") == n


def stage_eval(run: Run, variant: str, model: Path, prompt: str, n: int, progress: bool = True) -> dict[str, Any]:
    """``wise_rl.evaluate.run_eval`` on the first ``n`` test scenes (greedy, stopped at ``</answer>``)."""
    from wise_rl.evaluate import EvalConfig, run_eval

    p = run.profile
    cfg = EvalConfig(model=str(model), dataset=str(run.data), split="test", prompt=prompt,
                     batch_size=p.eval_batch_size, max_new_tokens=p.eval_max_new_tokens, limit=n,
                     model_size=p.image_size)
    return run_eval(cfg, run.eval_dir(variant), progress=progress)


def _run_stage(run: Run, stage: str, progress: bool = True) -> None:
    """Run one stage unless its outputs are complete; record its wall time."""
    p = run.profile
    if stage == "data":
        done = _data_done(run)
    elif stage == "base":
        done = base_card(run.base) is not None and (base_card(run.base) or {}).get("metrics") is not None
        done = done or p.base_eval_n == 0 or _eval_done(run, "base", p.base_eval_n)
    elif stage in TRAIN_STAGES:
        done = _train_done(run, stage)
    elif stage.startswith("eval_"):
        done = _eval_done(run, stage.removeprefix("eval_"), p.eval_n)
    else:
        raise ValueError(f"unknown stage {stage!r}")
    if done:
        status = "from card.json" if stage == "base" and base_card(run.base) else "skipped (done)"
        _say(f"[demo] {stage}: {status}")
        run.record(stage, None, status)
        return
    _say(f"[demo] {stage}: running")
    t0 = time.perf_counter()
    if stage == "data":
        stage_data(run, progress)
    elif stage == "base":
        stage_eval(run, "base", run.base, "answer-only", p.base_eval_n, progress)
    elif stage in TRAIN_STAGES:
        stage_train(run, stage)
    else:
        variant = stage.removeprefix("eval_")
        trained, prompt = EVALS[variant]
        stage_eval(run, variant, run.train_dir(trained), _styled(run, prompt, "eval"), p.eval_n, progress)
    wall = time.perf_counter() - t0
    run.record(stage, wall, "done")
    _say(f"[demo] {stage}: done in {wall:.1f} s")


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------------------------
def box_scores(run: Run, variant: str, n: int | None = None) -> dict[str, float]:
    """Box IoU (pixel-inclusive, as the baselines) of each sample's predicted bbox vs the ground-truth bbox:
    ``box_acc50`` = share with IoU > 0.5, ``box_mean_iou``; a sample without an answer scores 0."""
    from wise_rl.evaluate import read_samples
    from wise_rl.metrics import box_scores as score_boxes

    records = {r["id"]: r for r in read_samples(run.eval_dir(variant) / "samples.jsonl")}
    rows = _test_rows(run, n)
    answers = [(records.get(str(rid)) or {}).get("answer") for rid in rows["id"]]
    scores = score_boxes(answers, rows["gt_bbox"])
    return {"box_acc50": scores["box_acc50"], "box_mean_iou": scores["box_mean_iou"]}


def _test_rows(run: Run, n: int | None = None):
    from datasets import load_from_disk

    ds = load_from_disk(str(run.data))["test"]
    ds = ds.select(range(min(n or run.profile.eval_n, len(ds))))
    return ds.select_columns(["id", "gt_bbox", "shape_boxes", "model_size"])


def variant_metrics(run: Run, variant: str) -> dict[str, Any]:
    from wise_rl.evaluate import load_metrics

    m = load_metrics(run.eval_dir(variant))
    out = {k: m.get(k) for k in VARIANT_KEYS if k in m}
    out["latency_s_mean"] = m.get("latency_mean_s")
    out.update(box_scores(run, variant))
    out["prompt"] = (m.get("settings") or {}).get("prompt")
    return {k: out.get(k) for k in (*VARIANT_KEYS, "prompt")}


def base_metrics(run: Run) -> dict[str, Any]:
    card = base_card(run.base)
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


def grpo_trend(run: Run) -> dict[str, Any]:
    """First vs last logging window of the GRPO run's think (concise) length, total reward and bbox IoU reward;
    window = max(1, ⌊logged steps / 4⌋) log entries."""
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
            out[name] = {"first": sum(first) / len(first), "last": sum(last) / len(last)}
    return out


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
    shorter = tt is not None and tt["last"] < tt["first"]
    t["grpo_concise_shorter"] = _target(
        None if tt is None else {"first_window": tt["first"], "last_window": tt["last"]},
        f"last GRPO window < first window (mean think tokens), format reward >= {GRPO_FORMAT_FLOOR} in the last",
        shorter and formed)
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


def report_markdown(report: dict[str, Any]) -> str:
    p = report["profile"]
    lines = [
        f"# WISE demo on ShapeWorld — profile `{p['name']}`", "",
        f"Base model: `{report['base_model']}` ({report['base'].get('source')}). Test split: {p['eval_n']} scenes "
        f"(seed {p['seed']}, {p['image_size']} px). Generated {report['date']} on {report['machine']}.", "",
        "| variant | prompt | acc@0.5 % | box acc@0.5 % | gIoU % | cIoU % | format valid % | think tok | "
        "completion tok | latency s/sample |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    rows = [("base", report["base"])] + list(report["variants"].items())
    for name, m in rows:
        lines.append(f"| {name} | {m.get('prompt') or '–'} | {_pct(m.get('acc50'))} | {_pct(m.get('box_acc50'))} | "
                     f"{_pct(m.get('gIoU'))} | {_pct(m.get('cIoU'))} | {_pct(m.get('format_valid'))} | "
                     f"{_num(m.get('think_tokens_mean'))} | {_num(m.get('completion_tokens_mean'))} | "
                     f"{_num(m.get('latency_s_mean'), 4)} |")
    lines.append(f"| random shape | – | – | {_pct(report.get('random_shape_acc50'))} | – | – | – | 0 | – | – |")
    lines += [
        "",
        "acc@0.5 = share of test scenes whose box-decoded prediction has mask IoU ≥ 0.5 with the queried shape "
        "(LISA protocol, `wise-rl eval`); a perfect box reaches only ≈ 0.5 mask IoU on a triangle. Box acc@0.5 = "
        "box IoU > 0.5 against the ground-truth box, the measure of the random-shape baseline (box a random shape "
        "of the scene). Think tokens: the `<think>` content, policy tokenizer. verbose: arm (a) with the verbose "
        "prompt; wise / wise-s: arm (b) (SFT + GRPO) with the WISE inference prompts (the prompt column names each "
        "template), generation stopped at `</answer>`.", "",
    ]
    if p.get("prompt_style") == "compact":
        lines += [
            "Prompts: the compact wordings of the same requests (`*-compact` in `wise_rl/formats.py`: same tags, "
            "layouts and stop strings). The official prompts put 100–130 tokens of instructions between the "
            "question and the answer; this 1 M-parameter model does not learn to ground across that in a CPU "
            "budget. Real models keep the official prompts (`prompt_style: official`).", "",
        ]
    naming = report["base"].get("naming")
    if naming:
        lines += [
            f"What the base sees, in words (its card, {naming['n']} held-out scenes, \"which shape is …? Name it.\"): "
            f"it names the queried shape's colour and kind in {_pct(naming['name_acc'])} % of the scenes (naming "
            f"a random shape of the scene: {_pct(naming['random_shape'])} %) and some shape of the scene in "
            f"{_pct(naming['name_in_scene'])} % (a blind guess: {_pct(naming.get('random_guess'))} %). Every "
            "rationale, concise or detailed, names shapes; a base that cannot name them bounds the accuracy of both "
            "rationale arms, whatever the SFT and GRPO do.", "",
        ]
    probe = report["base"].get("vision_probe")
    if probe:
        lines += [
            f"A linear probe on the base's vision token that holds each shape ({probe['n_scored']} shapes scored) "
            f"reads its colour {_pct(probe['colour_acc'])} % of the time (most frequent colour "
            f"{_pct(probe['colour_majority'])} %) and its kind {_pct(probe['kind_acc'])} % (most frequent kind "
            f"{_pct(probe['kind_majority'])} %).", "",
        ]
    families = report["base"].get("by_family")
    if families:
        lines += ["The base's box acc@0.5 per query family (its card) beside boxing a random shape: " + "; ".join(
            f"{name} {_pct(f['box_acc50'])} % ({_pct(f['random_shape_acc50'])} %)" for name, f in families.items())
            + ".", ""]
    lines += [
        "## Targets", "", "| target | value | threshold | pass |", "|---|---|---|---|",
    ]
    for name, t in report["targets"].items():
        value = t["value"]
        if isinstance(value, dict):
            value = ", ".join(f"{k} {v:.2f}" for k, v in value.items())
        elif isinstance(value, float):
            value = f"{value:.3f}"
        note = f" ({t['note']})" if t.get("note") else ""
        lines.append(f"| {name} | {value if value is not None else '–'} | {t['threshold']} | "
                     f"{'PASS' if t['pass'] else 'fail'}{note} |")
    b = report["budget"]
    lines += [
        "", "## Budget", "",
        f"Same budget = {b['rule']} ({b['sequences_per_step']} sequences per optimizer step).", "",
        f"- verbose arm: SFT {b['verbose']['sft_steps']} steps ({b['verbose']['sft_targets']} targets)",
        f"- WISE arm: SFT {b['wise']['sft_steps']} steps ({b['wise']['sft_targets']} targets) + GRPO "
        f"{b['wise']['grpo_steps']} steps ({b['wise']['grpo_completions']} completions = {b['wise']['grpo_prompts']} "
        f"prompts × {b['wise']['num_generations']})",
        "", "## GRPO trend (first vs last logging window)", "",
    ]
    trend = report.get("grpo_trend") or {}
    if trend:
        lines.append(f"{trend['logged_steps']} logged steps, window {trend['window']}.")
        lines.append("")
        for k, v in trend.items():
            if isinstance(v, dict):
                lines.append(f"- {k}: {v['first']:.3f} → {v['last']:.3f}")
    else:
        lines.append("(no GRPO log)")
    lines += ["", "## Stage wall times", "", "| stage | wall s | status |", "|---|---|---|"]
    for stage, t in report["stages"].items():
        lines.append(f"| {stage} | {_num(t.get('wall_s'))} | {t.get('status')} |")
    if report.get("arms_wall_s"):
        lines += ["", "Arm wall times (s): " + ", ".join(f"{k} {v:.1f}" for k, v in report["arms_wall_s"].items())]
    if report["figures"]:
        lines += ["", "## Figures", ""] + [f"![{Path(f).stem}]({Path(f).name})" for f in report["figures"]]
    lines.append("")
    return "\n".join(lines)


def _machine() -> str:
    import platform

    from wise_rl.precision import cpu_has_native_bf16, cpu_model

    bf16 = "native bf16" if cpu_has_native_bf16() else "no native bf16"
    return f"{cpu_model()} ({platform.machine()}, {os.cpu_count()} CPUs, {bf16}; training in fp32)"


def stage_report(run: Run) -> dict[str, Any]:
    """Collect metrics, check the targets, draw the plots and write ``report.json`` / ``report.md``."""
    from wise_rl.report import find_runs, plot_lengths, plot_loss, plot_rewards
    from wise_rl.testbed.shapeworld import random_shape_baseline

    t0 = time.perf_counter()
    variants = {v: variant_metrics(run, v) for v in EVALS}
    trend = grpo_trend(run)
    configs = stage_configs(run)
    rs = random_shape_baseline(_test_rows(run), seed=run.profile.seed)
    timings = run.timings()
    arms = {}
    for arm, stages in (("verbose", VERBOSE_ARM), ("wise", WISE_ARM)):
        walls = [timings.get(s, {}).get("wall_s") for s in stages]
        if all(w is not None for w in walls):
            arms[arm] = float(sum(walls))
    report: dict[str, Any] = {
        "profile": asdict(run.profile),
        "base_model": str(run.base),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": _machine(),
        "variants": variants,
        "base": base_metrics(run),
        "random_shape_acc50": rs["acc@0.5"],
        "random_shape": rs,
        "grpo_trend": trend,
        "targets": evaluate_targets(variants, trend),
        "budget": budget_summary(run, configs),
        "stages": timings,
        "arms_wall_s": arms,
    }
    # figures: reward components and lengths over GRPO steps, losses of all three training runs, cost vs accuracy
    training_runs, _ = find_runs([run.train_dir(s) for s in TRAIN_STAGES])
    by_name = {r.path.name: r for r in training_runs}
    grpo = [by_name[n] for n in (TRAIN_STAGES["grpo_wise"][2],) if n in by_name]
    figures = [plot_rewards(grpo, run.out), plot_lengths(grpo, run.out), plot_loss(training_runs, run.out),
               _plot_think_vs_acc(report, run.out / "think_tokens_vs_accuracy.png")]
    report["figures"] = [str(f) for f in figures if f is not None]
    report["stages"]["report"] = {"wall_s": round(time.perf_counter() - t0, 1), "status": "done"}
    (run.out / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    (run.out / "report.md").write_text(report_markdown(report), encoding="utf-8")
    return report


# ----------------------------------------------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------------------------------------------
def _set_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


def _spawn_arm(run: Run, stages: tuple[str, ...], args_profile: str, progress: bool) -> tuple[subprocess.Popen, Path]:
    run.logs.mkdir(parents=True, exist_ok=True)
    log = run.logs / "verbose_arm.log"
    cmd = [sys.executable, "-m", "wise_rl.testbed.demo", "--child", "--out", str(run.out), "--base", str(run.base),
           "--profile", args_profile, "--stages", ",".join(stages)]
    if not progress:
        cmd.append("--quiet")
    env = dict(os.environ, OMP_NUM_THREADS=str(run.profile.threads), PYTHONUNBUFFERED="1")
    fh = open(log, "w", encoding="utf-8")  # noqa: SIM115 - closed after the child ends
    proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=str(REPO_DIR))
    proc._wise_log = fh  # type: ignore[attr-defined]
    return proc, log


def _wait_arm(proc: subprocess.Popen, log: Path, progress: bool) -> None:
    import re

    from tqdm.auto import tqdm

    if proc.poll() is None:
        _say(f"[demo] waiting for the verbose arm (log: {log})")
        bar = tqdm(desc="verbose arm", unit="step", disable=not progress)
        pattern = re.compile(r"(\d+)/(\d+) \[")
        while proc.poll() is None:
            try:
                tail = log.read_text(encoding="utf-8", errors="replace")[-4000:]
            except OSError:
                tail = ""
            hits = pattern.findall(tail)
            if hits:
                done, total = (int(x) for x in hits[-1])
                bar.total = total
                bar.n = done
                bar.refresh()
            time.sleep(1.0)
        bar.close()
    proc.wait()
    proc._wise_log.close()  # type: ignore[attr-defined]
    if proc.returncode != 0:
        tail = "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-40:])
        raise DemoError(f"the verbose arm failed (exit {proc.returncode}); last lines of {log}:\n{tail}")


def run_demo(out: str | os.PathLike = "runs/demo", base: str | os.PathLike | None = None, profile: str = "default",
             progress: bool = True, parallel: bool | None = None) -> dict[str, Any]:
    """Run (or resume) the whole demo into ``out``; returns the report (also in ``out/report.json``)."""
    for key in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ.setdefault(key, "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    base_path = check_base(base)
    prof = load_profile(profile)
    run = Run(out, prof, base_path)
    run.check_identity()
    write_configs(run)
    _set_threads(prof.threads)
    parallel = prof.parallel_arms if parallel is None else parallel
    wall0 = time.perf_counter()

    _run_stage(run, "data", progress)
    proc = None
    if parallel and not all(_stage_done(run, s) for s in VERBOSE_ARM):
        proc, log = _spawn_arm(run, VERBOSE_ARM, str(prof.source), progress)
        _say(f"[demo] verbose arm started in the background (pid {proc.pid}, log {log})")
        own = ("base", *WISE_ARM)
    else:
        own = ("base", *VERBOSE_ARM, *WISE_ARM)
    try:
        for stage in own:
            _run_stage(run, stage, progress)
    except BaseException:
        if proc is not None and proc.poll() is None:
            proc.terminate()
        raise
    if proc is not None:
        _wait_arm(proc, log, progress)
    report = stage_report(run)
    report["wall_s"] = round(time.perf_counter() - wall0, 1)
    (run.out / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    return report


def _stage_done(run: Run, stage: str) -> bool:
    if stage in TRAIN_STAGES:
        return _train_done(run, stage)
    return _eval_done(run, stage.removeprefix("eval_"), run.profile.eval_n)


def summary_table(report: dict[str, Any]) -> str:
    """The console summary: the variants table and the targets."""
    lines = [f"{'variant':<8} {'acc@0.5':>8} {'box acc':>8} {'gIoU':>6} {'format':>7} {'think tok':>9} "
             f"{'compl tok':>9} {'latency s':>9}"]
    for name, m in [("base", report["base"]), *report["variants"].items()]:
        lines.append(f"{name:<8} {_pct(m.get('acc50')):>8} {_pct(m.get('box_acc50')):>8} {_pct(m.get('gIoU')):>6} "
                     f"{_pct(m.get('format_valid')):>7} {_num(m.get('think_tokens_mean')):>9} "
                     f"{_num(m.get('completion_tokens_mean')):>9} {_num(m.get('latency_s_mean'), 4):>9}")
    lines.append(f"random shape (box acc@0.5): {_pct(report.get('random_shape_acc50'))}")
    lines.append("targets: " + ", ".join(f"{k} {'PASS' if t['pass'] else 'fail'}" for k, t in report["targets"].items()))
    return "\n".join(lines)


def _child_main(argv: list[str] | None = None) -> int:
    """Internal: run some stages of an existing demo run (the background arm)."""
    parser = argparse.ArgumentParser(prog="python -m wise_rl.testbed.demo")
    parser.add_argument("--child", action="store_true", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--base", required=True)
    parser.add_argument("--profile", required=True)
    parser.add_argument("--stages", required=True)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    prof = load_profile(args.profile)
    run = Run(args.out, prof, check_base(args.base))
    _set_threads(prof.threads)
    for stage in args.stages.split(","):
        if stage not in ALL_STAGES:
            raise DemoError(f"--stages: unknown stage {stage!r}; known: {', '.join(ALL_STAGES)}")
        _run_stage(run, stage, progress=not args.quiet)
    return 0


if __name__ == "__main__":
    sys.exit(_child_main())
