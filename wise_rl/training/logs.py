"""What a GRPO / RLOO run tells its user while it trains: sample completions where ``sample_log_every`` says, and a
warning when the rewards stop carrying any signal.

* :class:`CompletionSamplesCallback` — TRL's own ``log_completions`` writes every logged step's completions to
  ``output_dir/completions/completions_<step>.parquet``; its console table (``num_completions_to_print``) prints at
  every logging step with cells cut to a few characters. The recipe turns the table off
  (``num_completions_to_print: 0``) and this callback reads the parquet of every ``sample_log_every``-th step:
  ``sample_log_count`` completions, their rewards and advantage are appended to ``output_dir/samples.jsonl`` (the
  SFT recipe writes its samples there too) and logged as one line each.
* :class:`ZeroSpreadCallback` — TRL logs ``frac_reward_zero_std``, the share of prompt groups whose rewards are all
  equal. A group with zero spread has zero advantage for every sample, so it contributes no gradient (the loss
  and the gradient norm are 0 when every group is like that). After ``patience`` logged steps in a row where every
  group has zero spread, the callback warns once, saying what usually fixes it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

logger = logging.getLogger(__name__)

SAMPLES_FILE = "samples.jsonl"


def _text(value: Any) -> str:
    """The text of a prompt or completion as TRL stores it (a string, or a list of chat messages)."""
    if isinstance(value, str):
        return value
    if hasattr(value, "tolist"):
        value = value.tolist()
    parts = []
    for message in value or []:
        content = message.get("content") if isinstance(message, dict) else message
        if hasattr(content, "tolist"):
            content = content.tolist()
        if isinstance(content, list):
            parts += [b.get("text", "") for b in content if isinstance(b, dict) and b.get("type", "text") == "text"]
        elif content is not None:
            parts.append(str(content))
    return "\n".join(p for p in parts if p)


def completion_samples(parquet_path, count: int) -> list[dict[str, Any]]:
    """The first ``count`` rows of one TRL completions parquet as ``{"step", "prompt", "completion", "rewards":
    {name: value}, "reward" (their sum), "advantage"}``."""
    import pandas as pd

    frame = pd.read_parquet(parquet_path)
    fixed = {"step", "prompt", "completion", "advantage", "image"}
    reward_cols = [c for c in frame.columns if c not in fixed]
    records = []
    for _, row in frame.head(count).iterrows():
        rewards = {c: (None if pd.isna(row[c]) else float(row[c])) for c in reward_cols
                   if isinstance(row[c], (int, float)) or pd.isna(row[c])}
        records.append({
            "step": int(row["step"]), "prompt": _text(row["prompt"]), "completion": _text(row["completion"]),
            "rewards": rewards, "reward": sum(v for v in rewards.values() if v is not None),
            "advantage": None if pd.isna(row.get("advantage")) else float(row["advantage"]),
        })
    return records


class CompletionSamplesCallback(TrainerCallback):
    """Every ``every`` steps, ``count`` of the completions TRL logged (``log_completions``) go to
    ``output_dir/samples.jsonl`` and to the log. Main process only (TRL writes the parquet there)."""

    def __init__(self, every: int, count: int):
        self.every, self.count = every, count
        self.done: set[int] = set()

    def _flush(self, args, state) -> None:
        if not state.is_world_process_zero or self.every <= 0:
            return
        folder = Path(args.output_dir) / "completions"
        for path in sorted(folder.glob("completions_*.parquet")):
            step = int(path.stem.split("_")[-1])
            if step in self.done or step % self.every:
                continue
            self.done.add(step)
            records = completion_samples(path, self.count)
            with open(Path(args.output_dir) / SAMPLES_FILE, "a", encoding="utf-8") as fh:
                for rec in records:
                    fh.write(json.dumps(rec) + "\n")
            for rec in records:
                rewards = ", ".join(f"{k} {v:.2f}" for k, v in rec["rewards"].items() if v is not None)
                logger.info("step %d sample: reward %.2f (%s): %s", step, rec["reward"], rewards,
                            " ".join(rec["completion"].split())[:200])

    def on_step_end(self, args, state, control, **kwargs):
        self._flush(args, state)  # TRL writes a step's parquet after that step's callbacks: read it one step later

    def on_train_end(self, args, state, control, **kwargs):
        self._flush(args, state)


class ZeroSpreadCallback(TrainerCallback):
    """Warns once when ``frac_reward_zero_std`` has been 1 for ``patience`` logged steps in a row."""

    def __init__(self, patience: int = 3):
        self.patience, self.run, self.warned = patience, 0, False

    def on_log(self, args, state, control, logs=None, **kwargs):
        value = (logs or {}).get("frac_reward_zero_std")
        if value is None:
            return
        self.run = self.run + 1 if value >= 1.0 else 0
        if self.run >= self.patience and not self.warned and state.is_world_process_zero:
            self.warned = True
            logger.warning(
                "step %d: for %d logged steps every group of %s completions got identical rewards "
                "(frac_reward_zero_std = 1), so every advantage is 0 and the policy does not change. Start from a "
                "model that sometimes answers (e.g. after SFT), sample more diverse completions (temperature, "
                "num_generations), or add a reward that varies between them.",
                state.global_step, self.run, getattr(args, "num_generations", "the"))
