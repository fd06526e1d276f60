"""Settings of one ``wise-rl pretrain-base`` run (:class:`PretrainConfig`): every option once, with its help text,
its check and the command line that reproduces it. ``wise-rl pretrain-base`` reads it with
``transformers.HfArgumentParser``, as the recipes read theirs (``--max-steps`` and ``--max_steps`` both work). The
run itself: :mod:`wise_rl.testbed.pretrain.run`."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from wise_rl.errors import ConfigError
from wise_rl.testbed.fixtures.tiny_model import PRESETS
from wise_rl.testbed.pretrain.rows import parse_family_weights, parse_prompt_mix


def _opt(default, help: str, **kwargs):
    """A field with its command-line help (``HfArgumentParser`` reads ``metadata``)."""
    return field(default=default, metadata={"help": help, **kwargs})


@dataclass
class PretrainConfig:
    """Settings of one pre-training run (``wise-rl pretrain-base``). At least one of ``minutes`` / ``max_steps`` /
    ``vision_steps`` bounds the run (``minutes`` and ``max_steps``: whichever is reached first). Shares are in
    [0, 1]; learning rates are peak rates of the warmup + cosine schedule (:func:`wise_rl.testbed.pretrain.run.lr_lambda`).
    :meth:`validate` raises :class:`wise_rl.errors.ConfigError` naming the option."""

    out: str = field(metadata={"help": "folder for the model, processor and card", "metavar": "DIR"})
    preset: str = _opt("small", "model size", choices=sorted(PRESETS))
    seed: int = _opt(0, "seed of weights, scenes and test split")
    image_size: int = _opt(112, "ShapeWorld image side, a multiple of 28")
    minutes: float | None = _opt(None, "training wall-time budget in minutes (the cosine schedule anneals over it; "
                                 "curve evaluations do not count)")
    max_steps: int | None = _opt(None, "number of optimizer steps of the grounding stage")
    batch_size: int = _opt(16, "grounding rows per optimizer step")
    lr: float = _opt(1e-3, "peak learning rate")
    min_lr_ratio: float = _opt(0.05, "final lr / peak lr of the cosine")
    warmup_steps: int = _opt(50, "linear warmup steps")
    weight_decay: float = _opt(0.01, "AdamW weight decay (not on biases, norms and embeddings)")
    max_grad_norm: float = _opt(1.0, "gradient clipping norm")
    chunk: int = _opt(256, "scenes rendered at a time")
    eval_n: int = _opt(200, "held-out test scenes for the final evaluation, 0 to skip (with --score-perception: "
                       "default the card's)")
    eval_batch_size: int = _opt(32, "evaluation batch size")
    max_new_tokens: int = _opt(64, "generation cap of the evaluation")
    curve_every: float | None = _opt(None, "evaluate on --curve-n held-out scenes every MIN training minutes "
                                     "(learning curve; default none)", metavar="MIN")
    curve_n: int = _opt(64, "held-out scenes of each curve evaluation")
    logging_steps: int = _opt(10, "steps between loss log entries")
    threads: int | None = _opt(None, "torch CPU threads (default 1 on CPU: faster for this model size, see "
                               "wise_rl.testbed.pretrain.run)")
    init: str | None = _opt(None, "continue from this model folder instead of a random-weight preset", metavar="DIR")
    describe_share: float = _opt(0.0, "share of training scenes that ask for a scene description (plain text, no "
                                 "query) instead of a box, so the model keeps writing", metavar="P")
    stream_start: int = _opt(0, "index of the first training scene in the stream (continuing a run: past its "
                             "samples_seen, so no scene repeats)", metavar="I")
    prompt_mix: str | None = _opt(None, "prompt templates that word the grounding questions, with weights, e.g. "
                                  "'answer-only:0.4,wise:0.3,verbose:0.3'; the target stays the answer block alone "
                                  "(default: answer-only)", metavar="NAME:W,...")
    family_weights: str | None = _opt(None, "tilt the query families of the training stream, e.g. "
                                      "'attribute:2,odd_one_out:2' (a family left out weighs 1; held-out scenes stay "
                                      "untilted; default: all alike)", metavar="FAMILY:W,...")
    name_share: float = _opt(0.0, "share of training scenes that ask to name the queried shape in words ('the red "
                             "pentagon at the bottom') instead of boxing it", metavar="P")
    named_box_share: float = _opt(0.0, "share of grounding rows whose answer block follows the target named in "
                                  "words, so the model grounds after text it wrote, as after a rationale", metavar="P")
    described_box_share: float = _opt(0.0, "share of the named rows that lead with the scene description too, so "
                                      "the model grounds after a long text", metavar="P")
    reasoned_box_share: float = _opt(0.0, "share of the described rows that lead with the whole detailed rationale "
                                     "instead, so the model can reason in words before it answers", metavar="P")
    vision_steps: int = _opt(0, "vision stage: steps of dense per-token colour/kind/box supervision of the vision "
                             "tower before grounding (0: none; wise_rl.testbed.pretrain.vision_stage)", metavar="N")
    vision_batch_size: int = _opt(64, "vision stage: scenes per step")
    vision_lr: float = _opt(2e-3, "vision stage: peak learning rate")
    vision_keep: float = _opt(0.0, "vision stage: weight of keeping the --init tower's features (relative squared "
                              "error), so a base that already grounds keeps what its language model reads",
                              metavar="W")
    vision_lr_scale: float = _opt(1.0, "grounding stage: the vision tower trains at lr × X (0 freezes it)",
                                  metavar="X")
    merger_lr_scale: float | None = _opt(None, "grounding stage: the merger (projector) trains at lr × X "
                                         "(default: as --vision-lr-scale)", metavar="X")
    attention_weight: float = _opt(0.0, "grounding stage: weight λ of attention supervision, one head per layer "
                                   "steered to the queried shape's cells (wise_rl.testbed.pretrain."
                                   "attention_supervision; 0: none)", metavar="λ")
    cell_word_weight: float = _opt(0.0, "grounding stage: weight μ of the words at the vision tokens, the colour "
                                   "and kind word of each cell's shape after every layer (wise_rl.testbed."
                                   "shapeworld.cell_words; 0: none)", metavar="μ")
    word_attention_weight: float = _opt(0.0, "grounding stage: weight ν of word-region attention, a head at every "
                                        "colour or kind word steered to the cells that show it (0: none)",
                                        metavar="ν")
    probe_n: int = _opt(700, "held-out scenes of the vision probe written into the card (also with "
                        "--score-perception; 0: no probe, keep the card's)", metavar="N")
    bf16: bool | None = _opt(None, "mixed precision (default: fp32 on a CPU, bf16 on a GPU; "
                             "wise_rl.training.precision.resolve_bf16)")
    progress: bool = _opt(True, "progress bars (the command line's --quiet turns them off)")

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
            raise ConfigError("pretrain-base needs a budget: --minutes M or --max-steps N (grounding), and/or "
                             "--vision-steps N (vision stage)")
        if self.vision_steps < 0 or self.vision_batch_size < 1 or not self.vision_lr > 0:
            raise ConfigError(f"--vision-steps must be >= 0, --vision-batch-size >= 1 and --vision-lr > 0, got "
                             f"{self.vision_steps}, {self.vision_batch_size}, {self.vision_lr}")
        if self.vision_keep < 0:
            raise ConfigError(f"--vision-keep must be >= 0, got {self.vision_keep}")
        if self.merger_lr_scale is not None and self.merger_lr_scale < 0:
            raise ConfigError(f"--merger-lr-scale must be >= 0 (0 freezes the merger), got {self.merger_lr_scale}")
        if self.vision_lr_scale < 0:
            raise ConfigError(f"--vision-lr-scale must be >= 0 (0 freezes the tower), got {self.vision_lr_scale}")
        for name in ("attention_weight", "cell_word_weight", "word_attention_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if self.probe_n < 0:
            raise ConfigError(f"--probe-n must be >= 0, got {self.probe_n}")
        if self.minutes is not None and self.minutes <= 0:
            raise ConfigError(f"--minutes must be > 0, got {self.minutes}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"--max-steps must be >= 1, got {self.max_steps}")
        for name in ("batch_size", "chunk", "eval_batch_size", "max_new_tokens", "logging_steps", "curve_n"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.eval_n < 0:
            raise ConfigError(f"--eval-n must be >= 0, got {self.eval_n}")
        if not self.lr > 0:
            raise ConfigError(f"--lr must be > 0, got {self.lr}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError(f"--min-lr-ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.warmup_steps < 0:
            raise ConfigError(f"--warmup-steps must be >= 0, got {self.warmup_steps}")
        parse_prompt_mix(self.prompt_mix)
        parse_family_weights(self.family_weights)
        if self.stream_start < 0:
            raise ConfigError(f"--stream-start must be >= 0, got {self.stream_start}")
        if not 0 <= self.describe_share < 1:
            raise ConfigError(f"--describe-share must be in [0, 1), got {self.describe_share}")
        if not 0 <= self.name_share < 1 or self.describe_share + self.name_share >= 1:
            raise ConfigError(f"--name-share must be in [0, 1) and leave grounding rows next to --describe-share, got "
                             f"{self.name_share} + {self.describe_share}")
        for name in ("named_box_share", "described_box_share", "reasoned_box_share"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be in [0, 1], got {getattr(self, name)}")
        if self.curve_every is not None and self.curve_every <= 0:
            raise ConfigError(f"--curve-every must be > 0 minutes, got {self.curve_every}")

    def command(self) -> str:
        """The ``wise-rl pretrain-base`` command line that reproduces this run: every option off its default, in
        field order (``seed``, ``minutes`` and ``max_steps`` always, when set)."""
        defaults = PretrainConfig(out=self.out)
        parts = ["wise-rl", "pretrain-base", "--out", str(self.out)]
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("out", "progress") or value is None:
                continue
            if value != getattr(defaults, f.name) or f.name in ("seed", "minutes", "max_steps"):
                parts += [f"--{f.name.replace('_', '-')}", str(value)]
        return " ".join(parts)
