"""The demo's profiles (``recipes/demo/profile_<name>.yaml``) and its stage layout: the training stages, the
evaluated variants, the arms and, with ``ablations: true``, the two ablation arms and the pairs they are compared in.

Ablations (profile key ``ablations``; off in ``default``, on in ``long`` and ``smoke``)::

    sft_concise   SFT from the base on <think>concise</think><answer>…</answer> (no detailed part), under the WISE
                  inference prompts (recipes/demo/sft_concise.yaml)                            → RUN/concise_sft/
    grpo_concise  GRPO from sft_concise, the WISE rewards without self_distillation, format_think_answer for
                  format, under the wise prompt (recipes/demo/grpo_concise.yaml)               → RUN/concise_grpo/
    grpo_nosd     GRPO from the WISE SFT (sft_wise) with every WISE reward but self_distillation
                  (recipes/demo/grpo_nosd.yaml)                                               → RUN/nosd_grpo/
    eval_concise, eval_concise-s, eval_no-sd, eval_no-sd-s: the two arms under the wise and wise-s prompts

Each ablation gets the WISE arm's budget (``budget.sft_steps`` SFT steps, ``budget.grpo_steps`` GRPO steps, the same
sequences per step) and its seed. :data:`ABLATION_PAIRS` lists the (WISE variant, ablation) pairs whose paired
differences the report gives.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from wise_rl.errors import DemoError

PACKAGE_DIR = Path(__file__).resolve().parents[2]  # the wise_rl package
REPO_DIR = PACKAGE_DIR.parent
RECIPES_DIR = REPO_DIR / "recipes"
DEMO_RECIPES = RECIPES_DIR / "demo"

TRAIN_STAGES = {  # stage -> (recipe script, recipe config, output folder under RUN)
    "sft_verbose": ("sft", "sft_verbose.yaml", "verbose_sft"),
    "sft_wise": ("sft", "sft_wise.yaml", "wise_sft"),
    "grpo_wise": ("grpo", "grpo_wise.yaml", "wise_grpo"),
    "sft_concise": ("sft", "sft_concise.yaml", "concise_sft"),
    "grpo_concise": ("grpo", "grpo_concise.yaml", "concise_grpo"),
    "grpo_nosd": ("grpo", "grpo_nosd.yaml", "nosd_grpo"),
}
ABLATION_STAGES = ("sft_concise", "grpo_concise", "grpo_nosd")
# stage -> the stage whose output it starts from (None: the base model)
STARTS_FROM = {"sft_verbose": None, "sft_wise": None, "grpo_wise": "sft_wise", "sft_concise": None,
               "grpo_concise": "sft_concise", "grpo_nosd": "sft_wise"}
EVALS = {  # variant -> (trained stage whose model is evaluated, prompt)
    "verbose": ("sft_verbose", "verbose"),
    "wise": ("grpo_wise", "wise"),
    "wise-s": ("grpo_wise", "wise-s"),
    "wise-s-sft": ("sft_wise", "wise-s"),  # the same prompts before GRPO: what GRPO changed, scene by scene
    "concise": ("grpo_concise", "wise"),  # learn thin, use thin: its own GRPO prompt
    "concise-s": ("grpo_concise", "wise-s"),
    "no-sd": ("grpo_nosd", "wise"),  # WISE without the self-distillation reward
    "no-sd-s": ("grpo_nosd", "wise-s"),
}
ABLATION_EVALS = ("concise", "concise-s", "no-sd", "no-sd-s")
ABLATION_PAIRS = (("wise", "concise"), ("wise-s", "concise-s"), ("wise", "no-sd"), ("wise-s", "no-sd-s"))
VERBOSE_ARM = ("sft_verbose", "eval_verbose")
WISE_ARM = ("sft_wise", "grpo_wise", "eval_wise-s-sft", "eval_wise", "eval_wise-s")
CONCISE_ARM = ("sft_concise", "grpo_concise", "eval_concise", "eval_concise-s")
NO_SD_ARM = ("grpo_nosd", "eval_no-sd", "eval_no-sd-s")  # its SFT is the WISE arm's
ALL_STAGES = ("data", "base", *VERBOSE_ARM, *WISE_ARM, *CONCISE_ARM, *NO_SD_ARM, "report")
# Recipe options the demo sets itself (paths and the step budget); a profile may not override them.
RESERVED = ("model_name_or_path", "dataset", "dataset_split", "output_dir", "max_steps")


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
    eval_max_new_tokens: int = 320
    base_eval_n: int = 100
    threads: int = 1
    parallel_arms: bool = False
    ablations: bool = False  # also train and evaluate the concise-only and no-self-distillation arms
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)
    source: str = ""

    def fingerprint(self) -> dict[str, Any]:
        """Everything that changes results (not ``source``, ``threads`` nor ``parallel_arms``; ``ablations`` only
        when on, so a run folder written before the ablations existed keeps its identity)."""
        d = asdict(self)
        for k in ("source", "threads", "parallel_arms", *(() if self.ablations else ("ablations",))):
            d.pop(k)
        return d

    @property
    def train_stages(self) -> tuple[str, ...]:
        """The training stages this profile runs, in :data:`TRAIN_STAGES` order."""
        return tuple(s for s in TRAIN_STAGES if self.ablations or s not in ABLATION_STAGES)

    @property
    def evals(self) -> tuple[str, ...]:
        """The evaluated variants this profile runs, in :data:`EVALS` order."""
        return tuple(v for v in EVALS if self.ablations or v not in ABLATION_EVALS)

    def arms(self) -> dict[str, tuple[str, ...]]:
        """Arm name -> its stages (the wall time of an arm is the sum of its stages')."""
        arms = {"verbose": VERBOSE_ARM, "wise": WISE_ARM}
        return arms | ({"concise-only": CONCISE_ARM, "no-self-distillation": NO_SD_ARM} if self.ablations else {})


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
    for key in ("seed", "image_size", "prompt_style", "ablations"):
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
                        f"ablations, {', '.join(_PROFILE_SECTIONS)}, stages")
    if not isinstance(kwargs.get("ablations", False), bool):
        raise DemoError(f"{path}: ablations must be true or false, got {kwargs['ablations']!r}")
    if not isinstance(stages, dict) or any(s not in TRAIN_STAGES for s in stages):
        raise DemoError(f"{path}: stages: a mapping with keys among {', '.join(TRAIN_STAGES)}, got "
                        f"{list(stages) if isinstance(stages, dict) else stages!r}")
    for stage, overrides in stages.items():
        if not isinstance(overrides, dict):
            raise DemoError(f"{path}: stages.{stage}: must be a mapping of recipe option: value")
        bad = [k for k in overrides if k in RESERVED]
        if bad:
            raise DemoError(f"{path}: stages.{stage}: {bad} are set by the demo itself (paths, the budget rule)")
    profile = Profile(**kwargs)
    off = [s for s in stages if s not in profile.train_stages]
    if off:
        raise DemoError(f"{path}: stages.{off[0]}: an ablation stage; set ablations: true to run it")
    profile.stages = {s: dict(stages.get(s) or {}) for s in profile.train_stages}
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
