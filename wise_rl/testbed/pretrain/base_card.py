"""The card of a pre-training run: ``card.json`` (config, metrics, baselines, throughput, machine, lineage) and its
human-readable ``model_card.md`` (:func:`model_card_markdown`), written by :func:`wise_rl.testbed.pretrain.run.pretrain`
and updated by :func:`wise_rl.testbed.pretrain.perception.score_perception`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wise_rl.testbed.pretrain.rows import NAME_PROMPT, PROMPT

CARD_JSON, CARD_MD, EVAL_DIR = "card.json", "model_card.md", "eval"
TEMPLATES = Path(__file__).resolve().parents[2] / "templates"


def _f(v, pct: bool = False) -> str:
    if v is None:
        return "—"
    return f"{100 * v:.1f} %" if pct else (f"{v:.3f}" if isinstance(v, float) else str(v))


def template_environment():
    """The jinja2 environment of the project's markdown templates (``wise_rl/templates/*.md.jinja``, package data):
    block tags on their own lines leave no blank line, a missing required key is an error, and the filters ``f``
    (3 decimals; "—" for none), ``pct`` (a share as "12.3 %"), ``g`` (``%g``) and ``thousands`` ("1,234")."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), trim_blocks=True, lstrip_blocks=True,
                             keep_trailing_newline=True, undefined=jinja2.StrictUndefined, autoescape=False)
    env.filters.update(f=_f, pct=lambda v: _f(v, pct=True), g=lambda v: f"{v:g}", thousands=lambda v: f"{v:,}")
    return env


def model_card_markdown(card: dict[str, Any]) -> str:
    """The human-readable card of a pre-training run, rendered from ``wise_rl/templates/base_card.md.jinja``.
    Raises ``jinja2.UndefinedError`` when ``card`` lacks a key every card has (``metrics``, ``machine`` …)."""
    mix = card.get("prompt_mix") or {PROMPT: 1.0}
    mixed = set(mix) != {PROMPT}
    return template_environment().get_template("base_card.md.jinja").render(
        card=card, mix=mix if mixed else None, mix_total=sum(mix.values()), name_prompt=NAME_PROMPT)
