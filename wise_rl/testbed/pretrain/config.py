"""Settings of one ``wise-rl pretrain-base`` run (:class:`PretrainConfig`): every option, its check and the
command line that reproduces it. The run itself: :mod:`wise_rl.testbed.pretrain.run`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from wise_rl.testbed.pretrain.rows import parse_family_weights, parse_prompt_mix


@dataclass
class PretrainConfig:
    """Settings of one pre-training run (``wise-rl pretrain-base``). Exactly one of ``minutes`` / ``max_steps``
    bounds the run (both: whichever is reached first)."""

    out: str
    preset: str = "small"
    seed: int = 0
    image_size: int = 112
    minutes: float | None = None
    max_steps: int | None = None
    batch_size: int = 16
    lr: float = 1e-3
    min_lr_ratio: float = 0.05
    warmup_steps: int = 50
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    chunk: int = 256
    eval_n: int = 200
    eval_batch_size: int = 32
    max_new_tokens: int = 64
    curve_every: float | None = None  # minutes of training between curve evaluations (None: no curve evals)
    curve_n: int = 64
    logging_steps: int = 10
    threads: int | None = None
    init: str | None = None  # start from this model folder instead of a random-weight preset
    describe_share: float = 0.0  # share of rows that ask for a scene description instead of a box (see the docstring)
    stream_start: int = 0  # index of the first scene of the training stream (a continued run starts past the first)
    name_share: float = 0.0  # share of rows that ask to name the queried shape in words (see the docstring)
    named_box_share: float = 0.0  # share of grounding rows whose answer block follows the target's name
    described_box_share: float = 0.0  # share of those named rows that lead with the scene description
    reasoned_box_share: float = 0.0  # share of those described rows that lead with the whole detailed rationale
    prompt_mix: str | None = None  # "name:weight,…" templates that word the grounding questions (default answer-only)
    family_weights: str | None = None  # "family:weight,…" tilts the query families of the stream (default: alike)
    vision_steps: int = 0  # steps of the vision stage before grounding (0: none; see wise_rl.testbed.pretrain.vision_stage)
    vision_batch_size: int = 64
    vision_lr: float = 2e-3
    vision_keep: float = 0.0  # vision stage: weight of keeping the init tower's features (see wise_rl.testbed.pretrain.vision_stage)
    vision_lr_scale: float = 1.0  # grounding stage: the vision tower's lr = lr × this (0 freezes it)
    merger_lr_scale: float | None = None  # grounding stage: the merger's (projector's) lr = lr × this (None: as the tower)
    attention_weight: float = 0.0  # grounding stage: weight λ of attention supervision (0: none; attention_supervision)
    cell_word_weight: float = 0.0  # grounding stage: weight μ of the words at the vision tokens (0: none; cell_words)
    word_attention_weight: float = 0.0  # grounding stage: weight of word-region attention (attention_supervision)
    probe_n: int = 700  # held-out scenes of the vision probe written into the card (0: no probe)
    bf16: bool | None = None  # None: wise_rl.training.precision.resolve_bf16 (fp32 on a CPU, bf16 on a GPU)
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def grounding(self) -> bool:
        """Whether the run has a grounding stage (a budget in minutes or steps)."""
        return self.minutes is not None or self.max_steps is not None

    @property
    def cell_words(self) -> bool:
        """Whether grounding rows carry the words of every cell (cell-word or word-region supervision)."""
        return bool(self.cell_word_weight or self.word_attention_weight)

    def validate(self) -> None:
        if not self.grounding and not self.vision_steps:
            raise ValueError("pretrain-base needs a budget: --minutes M or --max-steps N (grounding), and/or "
                             "--vision-steps N (vision stage)")
        if self.vision_steps < 0 or self.vision_batch_size < 1 or not self.vision_lr > 0:
            raise ValueError(f"--vision-steps must be >= 0, --vision-batch-size >= 1 and --vision-lr > 0, got "
                             f"{self.vision_steps}, {self.vision_batch_size}, {self.vision_lr}")
        if self.vision_keep < 0:
            raise ValueError(f"--vision-keep must be >= 0, got {self.vision_keep}")
        if self.merger_lr_scale is not None and self.merger_lr_scale < 0:
            raise ValueError(f"--merger-lr-scale must be >= 0 (0 freezes the merger), got {self.merger_lr_scale}")
        if self.vision_lr_scale < 0:
            raise ValueError(f"--vision-lr-scale must be >= 0 (0 freezes the tower), got {self.vision_lr_scale}")
        for name in ("attention_weight", "cell_word_weight", "word_attention_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if self.probe_n < 0:
            raise ValueError(f"--probe-n must be >= 0, got {self.probe_n}")
        if self.minutes is not None and self.minutes <= 0:
            raise ValueError(f"--minutes must be > 0, got {self.minutes}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"--max-steps must be >= 1, got {self.max_steps}")
        for name in ("batch_size", "chunk", "eval_batch_size", "max_new_tokens", "logging_steps", "curve_n"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.eval_n < 0:
            raise ValueError(f"--eval-n must be >= 0, got {self.eval_n}")
        if not self.lr > 0:
            raise ValueError(f"--lr must be > 0, got {self.lr}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"--min-lr-ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.warmup_steps < 0:
            raise ValueError(f"--warmup-steps must be >= 0, got {self.warmup_steps}")
        parse_prompt_mix(self.prompt_mix)
        parse_family_weights(self.family_weights)
        if self.stream_start < 0:
            raise ValueError(f"--stream-start must be >= 0, got {self.stream_start}")
        if not 0 <= self.describe_share < 1:
            raise ValueError(f"--describe-share must be in [0, 1), got {self.describe_share}")
        if not 0 <= self.name_share < 1 or self.describe_share + self.name_share >= 1:
            raise ValueError(f"--name-share must be in [0, 1) and leave grounding rows next to --describe-share, got "
                             f"{self.name_share} + {self.describe_share}")
        for name in ("named_box_share", "described_box_share", "reasoned_box_share"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"--{name.replace('_', '-')} must be in [0, 1], got {getattr(self, name)}")
        if self.curve_every is not None and self.curve_every <= 0:
            raise ValueError(f"--curve-every must be > 0 minutes, got {self.curve_every}")

    def command(self) -> str:
        """The ``wise-rl pretrain-base`` command line that reproduces this run."""
        defaults = PretrainConfig(out=self.out)
        parts = ["wise-rl", "pretrain-base", "--out", str(self.out)]
        for name in ("preset", "seed", "image_size", "minutes", "max_steps", "batch_size", "lr", "min_lr_ratio",
                     "warmup_steps", "weight_decay", "max_grad_norm", "chunk", "eval_n", "eval_batch_size",
                     "max_new_tokens", "curve_every", "curve_n", "logging_steps", "threads", "init", "describe_share",
                     "stream_start", "prompt_mix", "family_weights", "name_share", "named_box_share",
                     "described_box_share", "reasoned_box_share", "vision_steps", "vision_batch_size", "vision_lr",
                     "vision_keep", "vision_lr_scale", "merger_lr_scale", "attention_weight", "cell_word_weight",
                     "word_attention_weight", "probe_n", "bf16"):
            value = getattr(self, name)
            if value is not None and (value != getattr(defaults, name) or name in ("seed", "minutes", "max_steps")):
                parts += [f"--{name.replace('_', '-')}", str(value)]
        return " ".join(parts)
