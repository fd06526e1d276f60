"""What a training run is: the identity that a resume or a re-run in the same ``output_dir`` must match.

:func:`run_identity` is a flat JSON object of everything that changes the trained weights:

* ``base_model`` (``model_name_or_path`` as given) and ``base_weights``
  (:func:`wise_rl.models.folder_check.weights_digest`: the safetensors headers, sizes and a sample of every
  tensor's bytes, or the whole file when small — the same path holding retrained weights is another base);
* the adapter shape: ``use_peft``, ``lora_r``, ``lora_alpha``, ``lora_dropout``, the target modules,
  ``modules_to_save``, rsLoRA / DoRA, 4/8-bit loading;
* the data: every script argument (dataset, split, limit, prompt, target mode, rewards and their options, …)
  except the ones that only change logging or resuming (:data:`NOT_IDENTITY`), plus ``dataset_fingerprint``
  (``datasets.Dataset._fingerprint`` of the rows as loaded: another file at the same path is another dataset);
* the optimisation: :data:`TRAINING_KEYS` of the TRL config that exist on it (learning rate and schedule, seed,
  batch sizes, ``num_generations``, ``beta``, reward weights, lengths, precision…) and the number of processes.

``max_steps`` / ``num_train_epochs`` are not part of it: more steps extend a run (the one change that is safe).
:func:`differences` lists what differs; :func:`refuse_if_different` raises :class:`RunIdentityError` with every
difference on one line. The identity is written to ``output_dir/run_identity.json`` when training starts, into
every ``checkpoint-N`` (:class:`IdentityCallback`) and into ``DONE``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from wise_rl.errors import RunIdentityError

logger = logging.getLogger(__name__)

IDENTITY_FILE = "run_identity.json"
# Script arguments that do not change the weights.
NOT_IDENTITY = frozenset({"resume", "sample_log_every", "sample_log_count",
                          "dataset_test_split"})
TRAINING_KEYS = (
    "learning_rate", "lr_scheduler_type", "lr_scheduler_kwargs", "warmup_ratio", "warmup_steps", "weight_decay",
    "adam_beta1", "adam_beta2", "adam_epsilon", "max_grad_norm", "optim", "optim_args", "seed", "data_seed",
    "per_device_train_batch_size", "gradient_accumulation_steps", "bf16", "fp16", "tf32",
    "gradient_checkpointing", "max_length", "completion_only_loss", "assistant_only_loss", "packing",
    "num_generations", "beta", "epsilon", "epsilon_high", "loss_type", "num_iterations", "scale_rewards",
    "max_prompt_length", "max_completion_length", "temperature", "top_p", "top_k", "repetition_penalty",
    "reward_weights", "steps_per_generation", "generation_batch_size", "mask_truncated_completions",
    "importance_sampling_level", "use_vllm", "shuffle_dataset",
)
MODEL_KEYS = ("model_name_or_path", "model_revision", "dtype", "use_peft", "lora_r", "lora_alpha", "lora_dropout",
              "lora_target_modules", "lora_modules_to_save", "lora_task_type", "use_rslora", "use_dora",
              "load_in_4bit", "load_in_8bit", "bnb_4bit_quant_type")


def _plain(value: Any) -> Any:
    """A JSON-stable form of a config value (enums by value, tuples as lists)."""
    value = getattr(value, "value", value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in sorted(value.items())}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def run_identity(script_args, training_args, model_args, dataset=None, num_processes: int = 1) -> dict[str, Any]:
    """The identity of the run these arguments ask for, on ``dataset`` (the loaded rows; None: no fingerprint)."""
    import dataclasses

    from wise_rl.models.folder_check import weights_digest

    ident: dict[str, Any] = {}
    for key in MODEL_KEYS:
        if hasattr(model_args, key):
            ident[key] = _plain(getattr(model_args, key))
    base = Path(str(model_args.model_name_or_path)).expanduser()
    ident["base_weights"] = weights_digest(base) if base.is_dir() else None
    for f in dataclasses.fields(script_args):
        if f.name not in NOT_IDENTITY:
            ident[f.name] = _plain(getattr(script_args, f.name))
    ident["dataset_fingerprint"] = getattr(dataset, "_fingerprint", None)
    for key in TRAINING_KEYS:
        if hasattr(training_args, key):
            ident[key] = _plain(getattr(training_args, key))
    ident["num_processes"] = int(num_processes)
    return ident


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``key: old → new`` for every key both record with different values (a key only one side records is skipped:
    an identity written by an older version lacks the newer keys)."""
    out = []
    for key in sorted(set(old) | set(new)):
        if key not in old or key not in new:
            continue
        if old[key] != new[key]:
            out.append(f"{key}: {old[key]!r} → {new[key]!r}")
    return out


def refuse_if_different(recorded: dict[str, Any] | None, current: dict[str, Any], where, doing: str) -> None:
    """Raise :class:`RunIdentityError` naming ``where`` and each difference when ``recorded`` (None: a folder from
    before identities were recorded, accepted) differs from ``current``."""
    if recorded is None:
        return
    diffs = differences(recorded, current)
    if diffs:
        raise RunIdentityError(
            f"{where} holds another run than this command asks for ({'; '.join(diffs)}); {doing} would mix the two. "
            "Re-run with the recorded values, use another output_dir, or pass --resume false to start over "
            "(the earlier run is moved aside)")


def read_identity(folder) -> dict[str, Any] | None:
    """The identity recorded in ``folder`` (``run_identity.json``), None when there is none."""
    path = Path(folder) / IDENTITY_FILE
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        logger.warning("%s does not parse (%s): treated as absent", path, exc)
        return None
    return value if isinstance(value, dict) else None


def write_identity(folder, identity: dict[str, Any]) -> Path:
    path = Path(folder) / IDENTITY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(identity, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def _callback_base():
    from transformers import TrainerCallback

    return TrainerCallback


class IdentityCallback(_callback_base()):
    """Writes the run's identity into every ``checkpoint-N`` as it is saved (main process)."""

    def __init__(self, identity: dict[str, Any]):
        self.identity = identity

    def on_save(self, args, state, control, **kwargs):
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if state.is_world_process_zero and folder.is_dir():
            write_identity(folder, self.identity)
