"""The WISE output format, defined once: tags, target builder, typed parser and named prompt templates.

Training target (three-stage, concise first so that it must summarise what the detailed part then explains)::

    <think>concise</think><answer>{"bbox": [x1, y1, x2, y2], "points_1": [x, y], "points_2": [x, y]}</answer><d_think>detailed</d_think>

At inference (``wise`` / ``wise-s``) only ``<think>…</think><answer>…</answer>`` is generated; the ``verbose``
baseline (Seg-Zero style) puts the detailed chain of thought inside ``<think>``.

>>> target = build_target("red is largest", {"bbox": [1, 2, 30, 40], "points_1": [5, 6], "points_2": [7, 8]}, "...")
>>> parse_completion(target).concise
'red is largest'
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
D_THINK_OPEN, D_THINK_CLOSE = "<d_think>", "</d_think>"
TAGS = (THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE, D_THINK_OPEN, D_THINK_CLOSE)

# The placeholder rationales of the official training prompt; a completion that echoes one scores 0 everywhere.
TEMPLATE_ECHOES = (
    "<think> streamlined thinking process here </think>",
    "<d_think> detailed thinking process here </d_think>",
)

# The example answer shown inside the official prompt (it is part of the prompt text, word for word).
EXAMPLE_ANSWER = '{"bbox": [10,100,200,210], "points_1": [30,110], "points_2": [35,180]}'

Layout = Literal["three-stage", "think-answer"]
"""``three-stage``: think, answer, d_think (WISE training). ``think-answer``: think, answer (inference, verbose)."""

ANSWER_KEYS = {"bbox": 4, "points_1": 2, "points_2": 2}


# ----------------------------------------------------------------------------------------------------------------
# Building targets
# ----------------------------------------------------------------------------------------------------------------
def _as_ints(values) -> list[int]:
    return [int(round(float(v))) for v in values]


def answer_dict(bbox, points) -> dict[str, list[int]]:
    """The answer object from a bbox ``[x1, y1, x2, y2]`` and two points ``[[x, y], [x, y]]`` (model frame, ints)."""
    (p1, p2) = points
    return {"bbox": _as_ints(bbox), "points_1": _as_ints(p1), "points_2": _as_ints(p2)}


def answer_json(answer: dict[str, Any]) -> str:
    """Serialise an answer exactly as targets carry it: ``{"bbox": [..], "points_1": [..], "points_2": [..]}``."""
    return json.dumps({k: answer[k] for k in ANSWER_KEYS}, separators=(", ", ": "))


def build_target(concise: str, answer: dict[str, Any], detailed: str, mode: str = "wise") -> str:
    """The completion a model is trained to emit.

    ``mode="wise"`` → ``<think>concise</think><answer>{json}</answer><d_think>detailed</d_think>``;
    ``mode="verbose"`` → ``<think>detailed</think><answer>{json}</answer>`` (the chain-of-thought baseline);
    ``mode="concise"`` → ``<think>concise</think><answer>{json}</answer>`` (what the WISE inference prompts ask for,
    learnt without the detailed part: the "learn thin" ablation);
    ``mode="answer"`` → ``<answer>{json}</answer>`` (grounding only, no rationale: base-model pre-training).
    """
    body = f"{ANSWER_OPEN}{answer_json(answer)}{ANSWER_CLOSE}"
    if mode == "wise":
        return f"{THINK_OPEN}{concise.strip()}{THINK_CLOSE}{body}{D_THINK_OPEN}{detailed.strip()}{D_THINK_CLOSE}"
    if mode == "verbose":
        return f"{THINK_OPEN}{detailed.strip()}{THINK_CLOSE}{body}"
    if mode == "concise":
        return f"{THINK_OPEN}{concise.strip()}{THINK_CLOSE}{body}"
    if mode == "answer":
        return body
    raise ValueError(f"unknown target mode {mode!r}; expected one of 'wise', 'verbose', 'concise', 'answer'")


# ----------------------------------------------------------------------------------------------------------------
# Parsing completions
# ----------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ParsedCompletion:
    """A completion split into its blocks. ``ok`` is True only when the layout matched and the answer is valid.

    ``failure`` names the first problem found (``None`` when ok): ``empty``, ``echo``, ``missing_think``,
    ``missing_answer``, ``missing_d_think``, ``wrong_order``, ``unexpected_text``, ``answer_not_json``,
    ``answer_schema``.
    """

    text: str
    layout: str
    concise: str | None = None  # content of <think> (the detailed CoT for the verbose layout)
    answer_text: str | None = None  # raw content of <answer>
    answer: dict[str, Any] | None = None  # validated answer object (numbers as floats)
    detailed: str | None = None  # content of <d_think>
    format_ok: bool = False  # blocks present, in order, nothing but whitespace around them
    failure: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.format_ok and self.answer is not None

    @property
    def bbox(self) -> list[float] | None:
        return None if self.answer is None else self.answer["bbox"]

    @property
    def points(self) -> list[list[float]] | None:
        return None if self.answer is None else [self.answer["points_1"], self.answer["points_2"]]


_BLOCK = r"{o}(?P<{name}>.*?){c}"
_THREE_STAGE = re.compile(
    r"\s*"
    + _BLOCK.format(o=re.escape(THINK_OPEN), c=re.escape(THINK_CLOSE), name="think")
    + r"\s*"
    + _BLOCK.format(o=re.escape(ANSWER_OPEN), c=re.escape(ANSWER_CLOSE), name="answer")
    + r"\s*"
    + _BLOCK.format(o=re.escape(D_THINK_OPEN), c=re.escape(D_THINK_CLOSE), name="d_think")
    + r"\s*",
    re.DOTALL,
)
_THINK_ANSWER = re.compile(
    r"\s*"
    + _BLOCK.format(o=re.escape(THINK_OPEN), c=re.escape(THINK_CLOSE), name="think")
    + r"\s*"
    + _BLOCK.format(o=re.escape(ANSWER_OPEN), c=re.escape(ANSWER_CLOSE), name="answer")
    + r"\s*",
    re.DOTALL,
)
_BLOCKS = {
    "think": (THINK_OPEN, THINK_CLOSE),
    "answer": (ANSWER_OPEN, ANSWER_CLOSE),
    "d_think": (D_THINK_OPEN, D_THINK_CLOSE),
}


def completion_text(completion: Any) -> str:
    """Text of a completion given as a string or in TRL's conversational form ``[{"role", "content"}]``."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return completion_text(completion.get("content", ""))
    if isinstance(completion, (list, tuple)):
        parts = []
        for message in completion:
            content = message.get("content", "") if isinstance(message, dict) else message
            if isinstance(content, list):  # multimodal content parts
                content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
            parts.append(str(content))
        return "".join(parts)
    if completion is None:
        return ""
    raise TypeError(f"completion must be a string or a list of messages, got {type(completion).__name__}")


class _Unusable:
    """A JSON value no coordinate can be: an over-long number literal, ``NaN`` or ``±Infinity``."""

    __slots__ = ("literal",)

    def __init__(self, literal: str):
        self.literal = literal[:20]

    def __repr__(self) -> str:
        return f"<unusable number {self.literal!r}…>"


# Longest number literal read as a number: a coordinate never needs more, and longer ones are how model text hits
# Python's limits (a 400-digit int overflows float(), a 4,301-digit one exceeds int()'s digit limit).
MAX_NUMBER_CHARS = 64


def _guarded_int(literal: str) -> int | _Unusable:
    return int(literal) if len(literal) <= MAX_NUMBER_CHARS else _Unusable(literal)


def _guarded_float(literal: str) -> float | _Unusable:
    if len(literal) > MAX_NUMBER_CHARS:
        return _Unusable(literal)
    value = float(literal)  # never raises on a JSON float literal; 1e999 → inf, rejected here
    return value if math.isfinite(value) else _Unusable(literal)


# Every number of model text goes through these hooks, so the decoder itself cannot raise on a number.
_DECODER = json.JSONDecoder(parse_int=_guarded_int, parse_float=_guarded_float, parse_constant=_Unusable)


def extract_answer_object(answer_text: str) -> dict[str, Any] | None:
    """The first JSON object inside the answer block (as the official code reads it), or None. Never raises:
    unusable numbers (longer than ``MAX_NUMBER_CHARS``, ``NaN``, ``±Infinity``, overflowing exponents) are kept as
    placeholders that :func:`validate_answer` rejects; nesting too deep for the decoder gives None."""
    start = answer_text.find("{")
    if start < 0:
        return None
    try:
        obj, _ = _DECODER.raw_decode(answer_text[start:])
    except (ValueError, RecursionError):  # JSONDecodeError is a ValueError
        return None
    return obj if isinstance(obj, dict) else None


def _coordinate(value: Any) -> float | None:
    """A finite float from a JSON number, or None (bools, strings, placeholders, NaN, ±inf, ints beyond float)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        out = float(value)
    except OverflowError:
        return None
    return out if math.isfinite(out) else None


def validate_answer(obj: Any) -> dict[str, list[float]] | None:
    """The answer with ``bbox`` (4 numbers), ``points_1`` and ``points_2`` (2 numbers each) as finite floats, or
    None. Never raises."""
    if not isinstance(obj, dict):
        return None
    out: dict[str, list[float]] = {}
    for key, n in ANSWER_KEYS.items():
        values = obj.get(key)
        if not isinstance(values, (list, tuple)) or len(values) != n:
            return None
        floats = [_coordinate(v) for v in values]
        if any(f is None for f in floats):
            return None
        out[key] = floats
    return out


def _diagnose(text: str, names: tuple[str, ...]) -> str:
    """Why ``text`` does not match the layout made of ``names`` blocks."""
    positions = []
    for name in names:
        open_tag, close_tag = _BLOCKS[name]
        i, j = text.find(open_tag), text.find(close_tag)
        if i < 0 or j < 0 or j < i:
            return f"missing_{name}"
        positions.append(i)
    if positions != sorted(positions):
        return "wrong_order"
    return "unexpected_text"


def parse_completion(completion: Any, layout: Layout = "three-stage") -> ParsedCompletion:
    """Split a completion into its blocks; never raises on bad text (the failure reason says what is wrong).

    Whitespace between and around blocks is tolerated; missing blocks, wrong order or other text outside the
    blocks are format failures. A completion whose format fails still exposes whatever answer object it holds
    (so an answer-only reward can score it), but ``ok`` is False.
    """
    text = completion_text(completion)
    if layout not in ("three-stage", "think-answer"):
        raise ValueError(f"unknown layout {layout!r}; expected 'three-stage' or 'think-answer'")
    if not text.strip():
        return ParsedCompletion(text=text, layout=layout, failure="empty")
    if any(echo in text for echo in TEMPLATE_ECHOES):
        return ParsedCompletion(text=text, layout=layout, failure="echo")

    pattern = _THREE_STAGE if layout == "three-stage" else _THINK_ANSWER
    names = ("think", "answer", "d_think") if layout == "three-stage" else ("think", "answer")
    match = pattern.fullmatch(text)
    if match is None:
        failure = _diagnose(text, names)
        # Keep the answer object if an answer block exists, for rewards that only look at the answer.
        a_open, a_close = text.find(ANSWER_OPEN), text.find(ANSWER_CLOSE)
        answer_text = text[a_open + len(ANSWER_OPEN) : a_close] if 0 <= a_open < a_close else None
        answer = validate_answer(extract_answer_object(answer_text)) if answer_text is not None else None
        return ParsedCompletion(text=text, layout=layout, answer_text=answer_text, answer=answer, failure=failure)

    answer_text = match.group("answer")
    raw = extract_answer_object(answer_text)
    answer = validate_answer(raw)
    failure = None if answer is not None else ("answer_not_json" if raw is None else "answer_schema")
    return ParsedCompletion(
        text=text,
        layout=layout,
        concise=match.group("think").strip(),
        answer_text=answer_text,
        answer=answer,
        detailed=match.group("d_think").strip() if layout == "three-stage" else None,
        format_ok=True,
        failure=failure,
    )


# ----------------------------------------------------------------------------------------------------------------
# Prompt templates
# ----------------------------------------------------------------------------------------------------------------
def normalise_question(query: str) -> str:
    """The official normalisation: lower-case, strip a trailing period."""
    q = query.strip().lower()
    return q[:-1] if q.endswith(".") else q


_FIND = "Please find '{question}' with bbox and points."
_COMPARE = "Compare the difference between objects and find the most closely matched one."
_JSON = "Output the one bbox and points of two largest inscribed circles inside the interested object in JSON format."

# Pieces are joined with no spaces, exactly as the official code does.
_TEMPLATES: dict[str, str] = {
    # The official WISE training prompt, word for word.
    "wise-train": _FIND
    + _COMPARE
    + "Output the detailed thinking process in <d_think> </d_think>, the streamlined thinking process in "
    "<think> </think> and final answer in <answer> </answer> tags."
    + _JSON
    + "i.e., <think> streamlined thinking process here </think>"
    + "<answer>{answer}</answer>"
    + "<d_think> detailed thinking process here </d_think>",
    # WISE inference: concise think + answer only; the detailed part is never asked for.
    "wise": _FIND
    + _COMPARE
    + "Output the streamlined thinking process in <think> </think> and final answer in <answer> </answer> tags."
    + _JSON
    + "i.e., <think> streamlined thinking process here </think>"
    + "<answer>{answer}</answer>",
    # WISE-S: the same, with the official brevity instruction inside the think example.
    "wise-s": _FIND
    + _COMPARE
    + "Output the streamlined thinking process in <think> </think> and final answer in <answer> </answer> tags."
    + _JSON
    + "i.e., <think> streamlined thinking process here (within 10 words, the shorter the better, one word is best)"
    " </think>"
    + "<answer>{answer}</answer>",
    # Seg-Zero style verbose chain of thought: the detailed reasoning goes inside <think>.
    "verbose": _FIND
    + _COMPARE
    + "Output the thinking process in <think> </think> and final answer in <answer> </answer> tags."
    + _JSON
    + "i.e., <think> thinking process here </think>"
    + "<answer>{answer}</answer>",
    # Grounding only (pre-trains the ShapeWorld base model): no rationale, and short, because on a CPU the prompt
    # length sets the cost of every pre-training step.
    "answer-only": "Find '{question}'. Answer with its bbox and two points in JSON inside <answer> </answer>.",
}

# Compact wordings of the same four requests (same tags, same layouts, same stop strings), for small models: each is
# a short instruction followed by the `answer-only` prompt word for word, so the question sits as close to the answer
# as in grounding pre-training (why, measured: docs/testbed.md, "Base model"). The demo uses them (profile
# `prompt_style: compact`); real models keep the official ones.
COMPACT_SUFFIX = "-compact"
_TEMPLATES |= {
    "verbose-compact": "Think step by step in <think> </think> first. " + _TEMPLATES["answer-only"],
    "wise-compact": "Think briefly in <think> </think> first. " + _TEMPLATES["answer-only"],
    "wise-s-compact": "Think briefly in <think> </think> first (within 10 words, the shorter the better). "
    + _TEMPLATES["answer-only"],
    "wise-train-compact": "Think briefly in <think> </think> first; after the answer, explain in detail in "
    "<d_think> </d_think>. " + _TEMPLATES["answer-only"],
}
OFFICIAL_PROMPTS = ("answer-only", "verbose", "wise", "wise-s", "wise-train")

# What each template asks the model to produce: the layout to parse, the stop string at inference and whether
# the <think> content is the concise rationale (WISE) or a detailed one (verbose).
PROMPT_SPECS: dict[str, dict[str, Any]] = {
    "wise-train": {"layout": "three-stage", "stop": D_THINK_CLOSE, "target_mode": "wise"},
    "wise": {"layout": "think-answer", "stop": ANSWER_CLOSE, "target_mode": "wise"},
    "wise-s": {"layout": "think-answer", "stop": ANSWER_CLOSE, "target_mode": "wise"},
    "verbose": {"layout": "think-answer", "stop": ANSWER_CLOSE, "target_mode": "verbose"},
    "answer-only": {"layout": "answer-only", "stop": ANSWER_CLOSE, "target_mode": "answer"},
}
PROMPT_SPECS |= {name + COMPACT_SUFFIX: dict(PROMPT_SPECS[name]) for name in ("wise-train", "wise", "wise-s", "verbose")}


def prompt_fits_target(template: str, target_mode: str) -> bool:
    """Whether SFT rows rendered with ``template`` may carry ``target_mode`` targets: the mode the template asks
    for, or ``concise`` under a template that asks for ``<think>concise</think><answer>…</answer>`` (the WISE
    inference prompts ``wise`` and ``wise-s``, any wording). ``KeyError`` for an unknown template."""
    spec = PROMPT_SPECS[template]
    if spec["target_mode"] == target_mode:
        return True
    return target_mode == "concise" and spec["target_mode"] == "wise" and spec["layout"] == "think-answer"


def styled_prompt(name: str, style: str = "official") -> str:
    """The template that asks for what ``name`` asks for, in ``style`` ('official' or 'compact'); ``answer-only``
    is already compact. A comma-separated list maps item by item."""
    if style not in ("official", "compact"):
        raise ValueError(f"prompt style must be 'official' or 'compact', got {style!r}")
    if "," in name:
        return ",".join(styled_prompt(n.strip(), style) for n in name.split(","))
    if name not in _TEMPLATES:
        raise ValueError(f"unknown prompt template {name!r}; known: {', '.join(available_prompts())}")
    base = name.removesuffix(COMPACT_SUFFIX)
    if style == "official" or base == "answer-only":
        return base
    return base + COMPACT_SUFFIX


def available_prompts() -> list[str]:
    return sorted(_TEMPLATES)


def render_prompt(name: str, query: str) -> str:
    """The user-turn text of the named template for ``query``."""
    if name not in _TEMPLATES:
        raise ValueError(f"unknown prompt template {name!r}; known: {', '.join(available_prompts())}")
    return _TEMPLATES[name].format(question=normalise_question(query), answer=EXAMPLE_ANSWER)


def parse_for_prompt(completion: Any, prompt_name: str) -> ParsedCompletion:
    """Parse a completion with the layout the named prompt asks for.

    For ``answer-only`` the text must be a single answer block; it is reported with an empty rationale.
    """
    spec = PROMPT_SPECS.get(prompt_name)
    if spec is None:
        raise ValueError(f"unknown prompt template {prompt_name!r}; known: {', '.join(available_prompts())}")
    if spec["layout"] != "answer-only":
        return parse_completion(completion, spec["layout"])
    text = completion_text(completion)
    m = re.fullmatch(r"\s*<answer>(?P<answer>.*?)</answer>\s*", text, re.DOTALL)
    if m is None:
        return ParsedCompletion(text=text, layout="answer-only", failure="missing_answer")
    raw = extract_answer_object(m.group("answer"))
    answer = validate_answer(raw)
    failure = None if answer is not None else ("answer_not_json" if raw is None else "answer_schema")
    return ParsedCompletion(
        text=text, layout="answer-only", concise="", answer_text=m.group("answer"), answer=answer,
        format_ok=True, failure=failure,
    )
