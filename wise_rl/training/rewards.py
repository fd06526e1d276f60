"""GRPO/RLOO reward setup: the reward callables from ``reward_funcs`` + ``reward_options`` (registry names or dotted
paths, :mod:`rewards`), the check that their ground-truth columns exist in the data, and the completion-length
diagnostics logged with the first reward. Errors are :class:`ConfigError` naming the reward and its option.
"""

from __future__ import annotations

import functools
import json
import os
import sys

from wise_rl import formats
from wise_rl.errors import ConfigError
from wise_rl.training.script_args import GRPOScriptArguments


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

    The first function is wrapped by :func:`with_length_diagnostics`, which logs completion-part lengths."""
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
    if funcs:
        funcs[0] = with_length_diagnostics(funcs[0], tokenizer, layout)
    return funcs


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
    in tokens (``tokenizer``) or whitespace words (no tokenizer). Unparseable parts count 0."""
    parsed = formats.parse_completion(completion, "three-stage" if layout == "three-stage" else "think-answer")
    text = formats.completion_text(completion)
    if parsed.concise is None:  # format failed: locate the think block loosely
        i, j = text.find(formats.THINK_OPEN), text.find(formats.THINK_CLOSE)
        think = text[i + len(formats.THINK_OPEN): j] if 0 <= i < j else ""
    else:
        think = parsed.concise

    def count(s: str | None) -> int:
        if not s:
            return 0
        if tokenizer is None:
            return len(s.split())
        return len(tokenizer(s, add_special_tokens=False)["input_ids"])

    return {"think": count(think), "d_think": count(parsed.detailed), "answer": count(parsed.answer_text)}


def with_length_diagnostics(func, tokenizer=None, layout: str = "three-stage"):
    """Wrap a reward function so that each call also logs, through TRL's ``log_metric``, the mean think / d_think /
    answer lengths of the batch (``completions/think_tokens`` …). The reward values are unchanged."""

    @functools.wraps(func)
    def wrapped(*args, **kwargs):
        log_metric = kwargs.get("log_metric")
        completions = kwargs.get("completions")
        if log_metric is not None and completions:
            lengths = [completion_lengths(c, tokenizer, layout) for c in completions]
            for part in ("think", "d_think", "answer"):
                log_metric(f"completions/{part}_tokens", sum(d[part] for d in lengths) / len(lengths))
        return func(*args, **kwargs)

    wrapped.__name__ = getattr(func, "__name__", type(func).__name__)
    return wrapped
