"""Shared machinery of the WISE rewards: the TRL call contract, ground-truth columns, token counting, the gate.

Every reward is called by TRL (``GRPOTrainer`` / ``RLOOTrainer``) as::

    reward(prompts=…, completions=…, completion_ids=…, trainer_state=…, log_extra=…, log_metric=…, **columns)

and returns one ``float`` (or ``None`` = no ground truth for that sample) per completion. ``columns`` holds every
dataset column aligned with the completions (``gt_bbox``, ``gt_points``, ``gt_mask``, ``image``…).

A completion that echoes a placeholder rationale of the training prompt (``wise_rl.formats.TEMPLATE_ECHOES``) scores
0 on every WISE reward, so the summed reward is 0 as in the official code. This takes precedence over "no ground
truth" (``None``).

No reward module is imported here (the correctness gate shared by several rewards is ``rewards/_gate.py``), so the
rewards import this module and nothing imports back.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

from rewards._parse import parse_batch
from wise_rl.formats import ParsedCompletion

logger = logging.getLogger(__name__)

CONTRACT_ARGS = ("prompts", "completions", "completion_ids", "trainer_state", "log_extra", "log_metric")


class Reward:
    """Base class of the callable, picklable WISE rewards.

    Subclasses set ``name`` (the registered name; TRL logs ``rewards/<name>/mean``), implement
    ``score(parsed, columns, log_metric)`` and list in ``_transient`` the attributes holding lazily loaded models,
    which are dropped when pickled and reloaded on first use.
    """

    name = "reward"
    _transient: tuple[str, ...] = ()
    ground_truth: tuple[str, ...] = ()  # dataset columns without which every score is None

    def required_columns(self) -> tuple[str, ...]:
        """Dataset columns this reward reads its ground truth from (checked before training: a column that is
        absent or None in every row would make the reward None for the whole run)."""
        return self.ground_truth

    def __init__(self) -> None:
        self.__name__ = self.name

    def __call__(
        self,
        prompts: Sequence[Any] | None = None,
        completions: Sequence[Any] | None = None,
        completion_ids: Sequence[Sequence[int]] | None = None,
        trainer_state: Any = None,
        log_extra: Any = None,
        log_metric: Any = None,
        **columns: Any,
    ) -> list[float | None]:
        if completions is None:
            raise TypeError(f"reward {self.name!r} needs completions=")
        parsed = parse_batch(completions)
        scores = self.score(parsed, Columns(columns, len(parsed), self.name), log_metric=log_metric)
        if len(scores) != len(parsed):  # a bug in a subclass, not in the data
            raise RuntimeError(f"reward {self.name!r} returned {len(scores)} scores for {len(parsed)} completions")
        if parsed and all(s is None for s in scores) and not self.__dict__.get("_warned_no_truth"):
            self._warned_no_truth = True  # once per reward object: TRL calls it every step
            missing = [c for c in self.required_columns() if all(v is None for v in columns.get(c) or [None])]
            logger.warning("reward %r returned None (no ground truth) for every sample of a batch of %d%s; it adds "
                           "nothing to the reward while this lasts (said once)", self.name, len(parsed),
                           f": column {', '.join(missing)} is missing or None" if missing else "")
        return [0.0 if p.failure == "echo" else s for p, s in zip(parsed, scores)]

    def score(self, parsed: list[ParsedCompletion], columns: Columns, log_metric=None) -> list[float | None]:
        raise NotImplementedError

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for key in self._transient:
            state[key] = None
        return state

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options().items())
        return f"<reward {self.name}({opts})>"

    def options(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_") and k != "__name__"}


class Columns:
    """Ground-truth columns of a batch, checked for alignment with the completions.

    A column that is absent means "no ground truth" for every row (each reward then returns ``None``).
    """

    def __init__(self, columns: dict[str, Any], n: int, reward: str):
        self._columns, self.n, self.reward = columns, n, reward

    def get(self, key: str) -> list[Any]:
        values = self._columns.get(key)
        if values is None:
            return [None] * self.n
        values = list(values)
        if len(values) != self.n:
            raise ValueError(
                f"reward {self.reward!r}: column {key!r} has {len(values)} values for {self.n} completions"
            )
        return values


def frame_thresholds(value: float, columns: Columns) -> list[float]:
    """A distance threshold written in pixels of the official 840×840 image, per row in the frame of the row's
    ground truth (``frame`` column, else ``abs{model_size}``; :func:`wise_rl.frames.scale_threshold`: 10 →
    11.9 in ``rel1000``, 1.33 in ``abs112``). Rows that carry neither keep ``value`` as given."""
    from wise_rl import frames

    out = []
    for name, size in zip(columns.get("frame"), columns.get("model_size")):
        if name is None and size is None:
            out.append(float(value))
        else:
            out.append(frames.scale_threshold(value, frames.row_frame({"frame": name, "model_size": size})))
    return out


# ----------------------------------------------------------------------------------------------------------------
# Ground truth conversion
# ----------------------------------------------------------------------------------------------------------------
def as_box(value: Any, reward: str, row: int) -> list[float] | None:
    """``[x1, y1, x2, y2]`` floats from a ground-truth column value, ``None`` when absent."""
    if value is None:
        return None
    try:
        box = [float(v) for v in value]
    except (TypeError, ValueError):
        raise ValueError(f"reward {reward!r}: gt_bbox of row {row} is not a list of numbers: {value!r}") from None
    if len(box) != 4:
        raise ValueError(f"reward {reward!r}: gt_bbox of row {row} needs 4 numbers, got {len(box)}")
    return box


def as_points(value: Any, reward: str, row: int) -> list[list[float]] | None:
    """``[[x, y], [x, y]]`` floats from a ground-truth column value, ``None`` when absent."""
    if value is None:
        return None
    try:
        points = [[float(x), float(y)] for x, y in value]
    except (TypeError, ValueError):
        raise ValueError(f"reward {reward!r}: gt_points of row {row} must be [[x, y], [x, y]], got {value!r}") from None
    if len(points) != 2:
        raise ValueError(f"reward {reward!r}: gt_points of row {row} needs 2 points, got {len(points)}")
    return points


def finite_or_zero(value: float) -> float:
    return value if math.isfinite(value) else 0.0


# ----------------------------------------------------------------------------------------------------------------
# Token counting
# ----------------------------------------------------------------------------------------------------------------
def brevity_factor(concise_tokens: int, detailed_tokens: int) -> float:
    """``max(0, 1 − concise / detailed)``; 0 when the detailed rationale is empty."""
    if detailed_tokens <= 0:
        return 0.0
    return max(0.0, 1.0 - concise_tokens / detailed_tokens)


def rationales(parsed: ParsedCompletion) -> tuple[str, str] | None:
    """(concise, detailed) block contents without tags, or None unless the three-stage format holds."""
    if not parsed.format_ok or parsed.concise is None or parsed.detailed is None:
        return None
    return parsed.concise, parsed.detailed
