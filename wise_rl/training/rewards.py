"""GRPO/RLOO reward setup: the reward callables from ``reward_funcs`` + ``reward_options`` (registry names or dotted
paths, :mod:`rewards`), their resources loaded before step 1, the check that their ground-truth columns exist in the
data, the completion-length diagnostics logged with the first reward, and a warning when completions are clipped
before a tag a reward needs. Errors are :class:`ConfigError` naming the reward and its option.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys

from wise_rl import formats
from wise_rl.errors import ConfigError
from wise_rl.tokens import count_tokens
from wise_rl.training.script_args import GRPOScriptArguments

logger = logging.getLogger(__name__)


def reward_options(script_args: GRPOScriptArguments) -> dict[str, dict]:
    """``reward_options`` as a mapping (a JSON string from the command line is decoded)."""
    opts = script_args.reward_options
    if opts is None or opts == "":
        return {}
    if isinstance(opts, str):
        try:
            opts = json.loads(opts)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"reward_options: not valid JSON ({exc}): {opts!r}") from exc
    if not isinstance(opts, dict):
        raise ConfigError(f"reward_options: must be a mapping name → options, got {type(opts).__name__}")
    return opts


def _reward_spec(name: str) -> str:
    """A dotted ``module.function`` becomes the registry's ``module:function`` form; names pass through."""
    if "." in name and ":" not in name:
        module, _, attr = name.rpartition(".")
        return f"{module}:{attr}"
    return name


def build_reward_funcs(script_args: GRPOScriptArguments, tokenizer=None, layout: str = "three-stage") -> list:
    """The reward callables in ``reward_funcs`` order, built by ``rewards.get_reward(name, **reward_options[name])``
    (registry names, or dotted paths ``module.function`` / ``module:function``). Rewards that accept a
    ``tokenizer`` option (self_distillation, brevity, …) get the policy's tokenizer unless the options name one.

    The first function is wrapped by :func:`with_length_diagnostics`, which logs completion-part lengths and warns
    on completions clipped before a tag a reward needs. Every reward's resources are loaded here
    (:func:`load_reward_resources`): a wrong one stops the run before step 1."""
    from rewards import get_reward

    if os.getcwd() not in sys.path:  # dotted paths relative to the launch folder, as TRL's scripts allow
        sys.path.insert(0, os.getcwd())
    options = reward_options(script_args)
    funcs = []
    for i, name in enumerate(script_args.reward_funcs):
        opts = dict(options.get(name, {}))
        spec = _reward_spec(name)
        try:
            if tokenizer is not None and "tokenizer" not in opts:
                try:
                    func = get_reward(spec, tokenizer=tokenizer, **opts)
                except TypeError as exc:  # this reward takes no tokenizer option
                    if "tokenizer" not in str(exc):
                        raise
                    func = get_reward(spec, **opts)
            else:
                func = get_reward(spec, **opts)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"reward_funcs[{i}] {name!r} (options {opts}): {exc}") from exc
        funcs.append(func)
    load_reward_resources(funcs, list(script_args.reward_funcs), options)
    if funcs:
        funcs[0] = with_length_diagnostics(funcs[0], tokenizer, layout, list(script_args.reward_funcs))
    return funcs


def load_reward_resources(reward_funcs: list, names: list[str], options: dict[str, dict] | None = None) -> None:
    """Load, before step 1, every heavy resource the rewards will use (embedding model, SAM2 folder and weights,
    tokenizer): each reward with a ``load()`` method is asked to load now. A failure is a :class:`ConfigError` in
    one line naming ``reward_funcs[i]``, the reward, its options and what was tried: otherwise it would surface
    hours in, at the first completion that reaches the resource, as a library traceback."""
    options = options or {}
    for i, (func, name) in enumerate(zip(reward_funcs, names)):
        reward = getattr(func, "__wrapped__", func)
        load = getattr(reward, "load", None)
        if not callable(load):
            continue
        try:
            load()
        except ConfigError as exc:
            raise ConfigError(f"reward_funcs[{i}] {name!r} (reward_options {options.get(name, {})}): {exc}") from exc
        except (OSError, ValueError, RuntimeError, ImportError) as exc:
            reason = " ".join(str(exc).split())[:240]
            raise ConfigError(f"reward_funcs[{i}] {name!r} (reward_options {options.get(name, {})}): a resource "
                              f"cannot be loaded: {reason}") from exc


def check_reward_columns(reward_funcs: list, dataset, source: str = "the training data") -> None:
    """Refuse, before training, a reward whose ground-truth column is absent from ``dataset`` or None in every row:
    it would return None for every sample and the run would log ``rewards/NAME/mean: None`` to its end (e.g.
    ``mask_iou``, or a ``mask_iou`` gate, on refCOCOg_2k_840, which has no masks). Raises :class:`ConfigError`
    naming the reward and the column. Rewards without ``required_columns()`` (plain functions) are not checked."""
    for i, func in enumerate(reward_funcs):
        reward = getattr(func, "__wrapped__", func)
        needs = getattr(reward, "required_columns", None)
        for column in needs() if callable(needs) else ():
            if column not in dataset.column_names:
                why = "has no such column"
            elif dataset.with_format("arrow")[column].null_count == len(dataset):
                why = f"has it None in all {len(dataset)} rows"
            else:
                continue
            name = getattr(reward, "name", getattr(reward, "__name__", str(reward)))
            raise ConfigError(f"reward_funcs[{i}] {name!r} needs column {column!r}, but {source} {why}: the reward "
                              "would be None for every sample. Drop it, choose a gate the data supports "
                              "(reward_options, e.g. gate: bbox_iou) or use data with that column")


def completion_lengths(completion, tokenizer=None, layout: str = "three-stage") -> dict[str, int]:
    """Lengths of a completion's parts: ``think`` (the <think> content: concise for WISE), ``d_think`` and ``answer``
    by :func:`wise_rl.tokens.count_tokens` (tokens with ``tokenizer``, whitespace words without). Unparseable parts
    count 0."""
    parsed = formats.parse_completion(completion, "three-stage" if layout == "three-stage" else "think-answer")
    text = formats.completion_text(completion)
    if parsed.concise is None:  # format failed: locate the think block loosely
        i, j = text.find(formats.THINK_OPEN), text.find(formats.THINK_CLOSE)
        think = text[i + len(formats.THINK_OPEN): j] if 0 <= i < j else ""
    else:
        think = parsed.concise

    parts = {"think": think, "d_think": parsed.detailed, "answer": parsed.answer_text}
    return {part: count_tokens(text or "", tokenizer) for part, text in parts.items()}


# The closing tag each reward needs to score, per layout: a completion clipped before it scores 0 on that reward.
NEEDS_TAG = {
    "three-stage": {formats.D_THINK_CLOSE: ("format", "self_distillation", "brevity"),
                    formats.ANSWER_CLOSE: ("answer_schema", "bbox_iou", "bbox_l1", "points", "mask_iou")},
    "think-answer": {formats.ANSWER_CLOSE: ("format", "format_think_answer", "answer_schema", "bbox_iou", "bbox_l1",
                                            "points", "mask_iou")},
}
CLIP_WARN_EVERY = 50  # reward calls between two repeats of the clipped-completion warning
CLIP_WARN_RATIO = 0.1  # warn when at least this share of a batch is cut before a needed tag (a rare ramble is normal)


def clipped_before_tags(completions, completion_ids, tokenizer, layout: str, reward_names) -> dict | None:
    """Which rewards cannot score because completions were cut at ``max_completion_length`` before the tag they need.

    A completion is clipped when its last token is neither EOS nor padding (TRL's ``completions/clipped_ratio``
    rule); all clipped completions have ``max_completion_length`` tokens. Returns None when no tag is missed, else
    ``{"tag", "ratio" (clipped before the tag / all), "rewards" (of reward_names), "max_completion_length",
    "fit" (the longest completion that reached the tag, tokens, or None when none did)}`` for the first missed tag."""
    tok = getattr(tokenizer, "tokenizer", tokenizer)
    stop = {t for t in (getattr(tok, "eos_token_id", None), getattr(tok, "pad_token_id", None)) if t is not None}
    texts = [formats.completion_text(c) for c in completions]
    clipped = [bool(ids) and ids[-1] not in stop for ids in completion_ids]
    if not any(clipped):
        return None
    limit = max(len(ids) for ids, c in zip(completion_ids, clipped) if c)
    for tag, needs in NEEDS_TAG.get(layout, {}).items():
        affected = [n for n in reward_names if n in needs]
        missed = sum(c and tag not in t for c, t in zip(clipped, texts))
        if affected and missed:
            reached = [len(ids) for ids, t in zip(completion_ids, texts) if tag in t]
            return {"tag": tag, "ratio": missed / len(texts), "rewards": affected, "max_completion_length": limit,
                    "fit": max(reached) if reached else None}
    return None


def _clip_message(found: dict) -> str:
    fit = (f"the longest completion that reached it has {found['fit']} tokens" if found["fit"] else
           "no completion reached it")
    return (f"{found['ratio']:.0%} of the completions were cut at max_completion_length {found['max_completion_length']}"
            f" before {found['tag']}: {', '.join(found['rewards'])} score 0 on them ({fit}); raise "
            "max_completion_length so that the whole target fits")


def with_length_diagnostics(func, tokenizer=None, layout: str = "three-stage", reward_names=()):
    """Wrap a reward function so that each call also logs, through TRL's ``log_metric``, the mean think / d_think /
    answer lengths of the batch (``completions/think_tokens`` …) and ``completions/clipped_before_tag_ratio``, and
    warns (at the first call, then every :data:`CLIP_WARN_EVERY` calls while it lasts) when at least
    :data:`CLIP_WARN_RATIO` of the completions are clipped before a tag that one of ``reward_names`` needs
    (:func:`clipped_before_tags`). The reward values are unchanged."""
    calls = {"n": 0, "warned_at": None}

    @functools.wraps(func)
    def wrapped(*args, **kwargs):
        log_metric = kwargs.get("log_metric")
        completions = kwargs.get("completions")
        if log_metric is not None and completions:
            lengths = [completion_lengths(c, tokenizer, layout) for c in completions]
            for part in ("think", "d_think", "answer"):
                log_metric(f"completions/{part}_tokens", sum(d[part] for d in lengths) / len(lengths))
        if completions and kwargs.get("completion_ids") is not None:
            found = clipped_before_tags(completions, kwargs["completion_ids"], tokenizer, layout, reward_names)
            if log_metric is not None:
                log_metric("completions/clipped_before_tag_ratio", 0.0 if found is None else found["ratio"])
            due = calls["warned_at"] is None or calls["n"] - calls["warned_at"] >= CLIP_WARN_EVERY
            first = os.environ.get("RANK", "0") == "0"  # one process of a launch says it (each sees its own batch)
            if found is not None and found["ratio"] >= CLIP_WARN_RATIO and due and first:
                logger.warning("%s", _clip_message(found))
                calls["warned_at"] = calls["n"]
        calls["n"] += 1
        return func(*args, **kwargs)

    wrapped.__name__ = getattr(func, "__name__", type(func).__name__)
    return wrapped
