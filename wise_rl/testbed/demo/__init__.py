"""``wise-rl demo``: WISE end to end on ShapeWorld, from the shipped base model, through the real recipes.

Stages (each one skipped when its outputs are complete, so an interrupted demo resumes where it stopped)::

    data         ShapeWorld train/test (fixed seed), save_to_disk      → RUN/data/ (+ DONE)
    base         the base model's metrics: its card.json, else a quick answer-only eval → RUN/eval/base/
    sft_verbose  arm (a), recipes/sft.py with recipes/demo/sft_verbose.yaml → RUN/verbose_sft/ (+ DONE)
    sft_wise     arm (b), recipes/sft.py with recipes/demo/sft_wise.yaml    → RUN/wise_sft/ (+ DONE)
    grpo_wise    arm (b), recipes/grpo.py with recipes/demo/grpo_wise.yaml  → RUN/wise_grpo/ (+ DONE)
    eval_*       wise_rl.evaluate.run_eval on the test split, greedy, stopped at </answer>: verbose (arm a,
                 `verbose` prompt), wise and wise-s (arm b), wise-s-sft (arm b before GRPO) → RUN/eval/<variant>/
    report       RUN/report.md, RUN/report.json, RUN/*.png (always rewritten; :mod:`wise_rl.testbed.demo.report`)

With ``ablations: true`` the concise-only and no-self-distillation arms run too (:mod:`wise_rl.testbed.demo.profile`).
Each stage's config is ``recipes/demo/<stage>.yaml`` + the profile's overrides + the run's paths, written to
``RUN/configs/<stage>.yaml`` (re-run a stage with ``python recipes/sft.py --config RUN/configs/…``). With
``runtime.parallel_arms`` the :data:`BACKGROUND_STAGES` train meanwhile in a child process (``python -m
wise_rl.testbed.demo --child``, one thread each; log in ``RUN/logs/``, its tail printed on failure). The evals run
after all training, alone, so latencies compare. Profiles: ``recipes/demo/profile_<name>.yaml`` (``default``,
``long``, ``smoke``) or a file given with ``--profile``. A bad profile or base raises ``DemoError``.

Same budget: every arm gets the same optimizer steps over the same number of sequences per step::

    steps(verbose SFT) = budget.sft_steps + budget.grpo_steps
    steps(WISE)        = budget.sft_steps (SFT warm-start) + budget.grpo_steps (GRPO); the ablations alike
    sequences per step = SFT batch (per_device_train_batch_size × gradient_accumulation_steps)
                       = GRPO completions per step (num_generations × prompts per step)

Unequal sequences per step raise ``DemoError`` naming them.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from wise_rl.errors import DemoError  # noqa: F401  (re-exported)
from wise_rl.testbed.demo.profile import (  # noqa: F401  (re-exported: the stage layout and the profiles)
    ABLATION_PAIRS,
    ALL_STAGES,
    DEMO_RECIPES,
    EVALS,
    PACKAGE_DIR,
    RECIPES_DIR,
    REPO_DIR,
    RESERVED,
    STARTS_FROM,
    TRAIN_STAGES,
    VERBOSE_ARM,
    WISE_ARM,
    Profile,
    load_profile,
    profile_path,
)
from wise_rl.testbed.demo.report import write_report

logger = logging.getLogger(__name__)

DEFAULT_BASE = PACKAGE_DIR / "assets" / "shapeworld-base"
PRETRAIN_COMMAND = "wise-rl pretrain-base --out wise_rl/assets/shapeworld-base"
# Stages the background process trains with ``runtime.parallel_arms`` (the rest train in this process).
BACKGROUND_STAGES = ("sft_verbose", "sft_concise", "grpo_concise")


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
        from wise_rl.models.info import weights_digest
        from wise_rl.testbed.shapeworld import generator_digest

        ident = {"profile": self.profile.fingerprint(), "base": str(self.base.resolve()),
                 "base_weights": weights_digest(self.base),  # the same path retrained is another base
                 "shapeworld": generator_digest(self.profile.seed, self.profile.image_size)}
        path = self.out / "demo.json"
        if path.is_file():
            old = json.loads(path.read_text(encoding="utf-8"))
            for key in ident:
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
            data = self.timings()  # a skipped stage keeps its first wall time; ms: a smoke eval can take < 0.05 s
            data[stage] = ({"wall_s": round(wall_s, 3), "status": "done"} if status == "done"
                           else {**data.get(stage, {}), "status": status})
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
    """Each training stage's recipe config (the profile's stages): ``recipes/demo/<stage>.yaml`` + profile
    overrides + the run's paths + the step budget. Raises :class:`DemoError` when the stages would not get the same
    sequences per step."""
    p = run.profile
    steps = {s: p.sft_steps if s.startswith("sft_") else p.grpo_steps for s in p.train_stages}
    steps["sft_verbose"] = p.sft_steps + p.grpo_steps
    out: dict[str, dict[str, Any]] = {}
    for stage in p.train_stages:
        cfg = _recipe_yaml(TRAIN_STAGES[stage][1])
        cfg.update(p.stages.get(stage, {}))
        start = STARTS_FROM[stage]
        cfg.update(model_name_or_path=str(run.base if start is None else run.train_dir(start)), dataset=str(run.data),
                   dataset_split="train", output_dir=str(run.train_dir(stage)), max_steps=steps[stage], seed=p.seed)
        if "prompt_template" in cfg:
            cfg["prompt_template"] = _styled(run, cfg["prompt_template"], f"stages.{stage}.prompt_template")
        out[stage] = cfg
    per_step = {s: sequences_per_step(c) for s, c in out.items()}
    if len(set(per_step.values())) != 1:
        raise DemoError(
            f"{p.source}: the arms must train on the same number of sequences per optimizer step (the same-budget "
            f"rule); got {per_step} (per_device_train_batch_size × gradient_accumulation_steps)"
        )
    for stage in (s for s in out if s.startswith("grpo_")):
        gens = int(out[stage].get("num_generations", 8))
        if per_step[stage] % gens:
            raise DemoError(f"{p.source}: GRPO completions per step ({per_step[stage]}) must be a multiple of "
                            f"num_generations ({gens}) ({stage})")
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
        **({"ablations": "the WISE arm's: the same SFT and GRPO steps, sequences per step and seed"}
           if p.ablations else {}),
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
def stage_report(run: Run) -> dict[str, Any]:
    """Collect metrics, check the targets, draw the plots and write ``report.json`` / ``report.md``
    (:func:`wise_rl.testbed.demo.report.write_report`)."""
    pairs = ABLATION_PAIRS if run.profile.ablations else ()
    return write_report(run, run.profile.evals, run.profile.arms(),
                        [run.train_dir(s) for s in run.profile.train_stages], run.train_dir("grpo_wise"),
                        budget_summary(run, stage_configs(run)), base_card(run.base), pairs)
# Driver
# ----------------------------------------------------------------------------------------------------------------
def _set_threads(n: int) -> None:
    """The profile's thread count, set and recorded (every eval's ``metrics.json`` names it beside its latency)."""
    from wise_rl.threads import apply_threads

    apply_threads(n, cuda=False, source="the demo profile's threads")


def _spawn_arm(run: Run, stages: tuple[str, ...], args_profile: str, progress: bool) -> tuple[subprocess.Popen, Path]:
    run.logs.mkdir(parents=True, exist_ok=True)
    log = run.logs / ("verbose_arm.log" if stages == ("sft_verbose",) else "background_arms.log")
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
        _say(f"[demo] waiting for the background arm (log: {log})")
        bar = tqdm(desc="background arm", unit="step", disable=not progress)
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
        raise DemoError(f"the background arm failed (exit {proc.returncode}); last lines of {log}:\n{tail}")


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
    ordered = tuple(dict.fromkeys(s for arm in prof.arms().values() for s in arm))  # arm by arm, each stage once
    own = ("base", *(s for s in ordered if s in TRAIN_STAGES))
    background = tuple(s for s in BACKGROUND_STAGES if s in own and not _stage_done(run, s))
    if parallel and background:
        proc, log = _spawn_arm(run, background, str(prof.source), progress)
        _say(f"[demo] {', '.join(background)} started in the background (pid {proc.pid}, log {log})")
        own = tuple(s for s in own if s not in background)
    try:
        for stage in own:
            _run_stage(run, stage, progress)
    except BaseException:
        if proc is not None and proc.poll() is None:
            proc.terminate()
        raise
    if proc is not None:
        _wait_arm(proc, log, progress)
    # Every eval runs after all training, alone on the CPUs: latencies measured under load would not compare.
    for stage in (s for s in ordered if s.startswith("eval_")):
        _run_stage(run, stage, progress)
    report = stage_report(run)
    report["wall_s"] = round(time.perf_counter() - wall0, 1)
    (run.out / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    return report


def _stage_done(run: Run, stage: str) -> bool:
    if stage in TRAIN_STAGES:
        return _train_done(run, stage)
    return _eval_done(run, stage.removeprefix("eval_"), run.profile.eval_n)


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
    known = [s for s in ALL_STAGES if s not in TRAIN_STAGES or s in prof.train_stages]
    for stage in args.stages.split(","):
        if stage not in known:
            raise DemoError(f"--stages: unknown stage {stage!r} for profile {prof.name}; known: {', '.join(known)}")
        _run_stage(run, stage, progress=not args.quiet)
    return 0

