"""Checkpoints a run can trust: completeness checks, quarantine, weight restore on resume, the finished marker.

A training run writes ``output_dir/checkpoint-N/`` every ``save_steps`` and, at the end, the final model plus a
``DONE`` marker in ``output_dir``. A run can be killed at any moment (``kill -9``, a full disk, a lost node); re-running
the same command must then continue exactly where the last complete checkpoint left off, and must leave a finished
run alone. This module holds the pieces of that contract that do not depend on the recipe:

* :func:`checkpoint_problem` / :func:`is_complete_checkpoint`: a checkpoint is complete when every file the resume
  reads parses: ``trainer_state.json`` (written last by transformers, so present only after a full save) holds a
  JSON object with ``global_step``; the weights (``model.safetensors``, its shards, or ``adapter_model.safetensors``)
  have a valid safetensors header and their full length; ``optimizer.pt`` / ``scheduler.pt`` / ``rng_state*.pth``
  (torch zip archives) have their central directory. The checks read headers only (milliseconds for a 7B model).
* :func:`last_complete_checkpoint`: the newest complete ``checkpoint-N``; incomplete ones are moved to
  ``output_dir/incomplete/`` so that a later save of step N does not mix with stale files and so that they hold no
  ``save_total_limit`` slot (transformers counts every ``output_dir/checkpoint-*`` folder).
* :func:`restore_weights_on_resume`: a documented workaround for huggingface/transformers#43701 (open for
  transformers 5.24): ``Trainer._load_from_checkpoint`` loads a full model's ``model.safetensors`` with a plain
  ``load_state_dict``, but ``save_pretrained`` writes the checkpoint under the model's *legacy* key names (for
  Qwen2.5-VL ``visual.*`` and ``model.layers.*``, while the module has ``model.visual.*`` and
  ``model.language_model.layers.*``). Every key misses, a warning is logged, and training continues from the
  initial weights with the restored optimizer and step count. The workaround renames the checkpoint's keys with the
  model's own conversion mapping (the one ``from_pretrained`` applies) and refuses to continue when any parameter
  is still missing. LoRA adapters and DeepSpeed / FSDP checkpoints load through transformers unchanged.
* :func:`finished_run` / :func:`write_done` / :func:`read_done`: ``output_dir/DONE`` records the step, ``max_steps``
  and epochs a run finished with, the digest of its final weights and the run's identity; a re-run asking for no
  more is a no-op; a marker whose digest does not match the weights beside it is stale and not trusted.
"""

from __future__ import annotations

import json
import logging
import time
import zipfile
from pathlib import Path
from typing import Any

from wise_rl.errors import CheckpointError  # noqa: F401  (re-exported)
from wise_rl.models.folder_check import safetensors_problem

logger = logging.getLogger(__name__)

TRAINER_STATE = "trainer_state.json"
DONE_FILE = "DONE"
INCOMPLETE_DIR = "incomplete"
PREFIX = "checkpoint"
_WEIGHT_FILES = ("model.safetensors", "adapter_model.safetensors")
_SHARD_INDEX = "model.safetensors.index.json"
_TORCH_ARCHIVES = ("optimizer.pt", "scheduler.pt", "scaler.pt")


# ----------------------------------------------------------------------------------------------------------------
# Completeness
# ----------------------------------------------------------------------------------------------------------------
def checkpoint_problem(path) -> str | None:
    """Why ``path`` is not a complete checkpoint (a short reason), or None when it is complete."""
    path = Path(path)
    if not path.is_dir():
        return "not a folder"
    state_file = path / TRAINER_STATE
    if not state_file.is_file():
        return f"no {TRAINER_STATE} (the save was interrupted)"
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return f"{TRAINER_STATE} does not parse ({exc})"
    if not isinstance(state, dict) or not isinstance(state.get("global_step"), int):
        return f"{TRAINER_STATE} holds no global_step"
    weights = [path / name for name in _WEIGHT_FILES if (path / name).is_file()]
    index = path / _SHARD_INDEX
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (OSError, ValueError, KeyError, AttributeError) as exc:
            return f"{_SHARD_INDEX} does not parse ({exc})"
        missing = [s for s in shards if not (path / s).is_file()]
        if missing:
            return f"weight shard(s) missing: {', '.join(missing)}"
        weights += [path / s for s in shards]
    deepspeed = any(p.is_dir() and p.name.startswith("global_step") for p in path.iterdir())
    if not weights and not deepspeed:
        return "no weights (model.safetensors, its shards, adapter_model.safetensors or a DeepSpeed global_step*)"
    for w in weights:
        problem = safetensors_problem(w)
        if problem:
            return problem
    archives = [path / n for n in _TORCH_ARCHIVES] + sorted(path.glob("rng_state*.pth"))
    for archive in archives:
        if archive.is_file() and not zipfile.is_zipfile(archive):
            return f"{archive.name} is truncated or not a torch archive"
    return None


def is_complete_checkpoint(path) -> bool:
    """True when every file a resume reads from ``path`` parses (see :func:`checkpoint_problem`)."""
    return checkpoint_problem(path) is None


def checkpoint_step(path) -> int:
    """``global_step`` of a complete checkpoint."""
    return int(json.loads((Path(path) / TRAINER_STATE).read_text(encoding="utf-8"))["global_step"])


def list_checkpoints(output_dir) -> list[tuple[int, Path]]:
    """``(step, folder)`` of every ``checkpoint-N`` folder in ``output_dir``, by step."""
    out = Path(output_dir)
    if not out.is_dir():
        return []
    found = []
    for child in out.iterdir():
        name = child.name
        if child.is_dir() and name.startswith(PREFIX + "-") and name[len(PREFIX) + 1:].isdigit():
            found.append((int(name[len(PREFIX) + 1:]), child))
    return sorted(found)


def last_complete_checkpoint(output_dir, quarantine: bool = True) -> str | None:
    """The newest complete ``checkpoint-N`` in ``output_dir`` (None when there is none).

    Incomplete ones (a run killed while saving, a full disk, an empty ``trainer_state.json``) are reported with
    their reason and, when ``quarantine``, moved to ``output_dir/incomplete/checkpoint-N.<unix time>``: nothing is
    deleted, a later save of step N starts from an empty folder, and they take no ``save_total_limit`` slot.
    """
    best = None
    for _step, child in list_checkpoints(output_dir):
        problem = checkpoint_problem(child)
        if problem is None:
            best = child
            continue
        if quarantine:
            dest = Path(output_dir) / INCOMPLETE_DIR / f"{child.name}.{int(time.time() * 1000)}"
            dest.parent.mkdir(exist_ok=True)
            child.rename(dest)
            logger.warning("checkpoint %s is incomplete (%s): moved to %s", child, problem, dest)
        else:
            logger.warning("checkpoint %s is incomplete (%s): skipped", child, problem)
    return None if best is None else str(best)


# ----------------------------------------------------------------------------------------------------------------
# Finished runs
# ----------------------------------------------------------------------------------------------------------------
def write_done(output_dir, global_step: int, max_steps: int, num_train_epochs: float,
               weights_digest: str | None = None, identity: dict[str, Any] | None = None) -> None:
    """Mark ``output_dir`` finished: the final model there is the one of ``global_step``, whose weights have
    ``weights_digest`` (:func:`wise_rl.models.folder_check.weights_digest`), trained as ``identity`` says."""
    record = {"global_step": int(global_step), "max_steps": int(max_steps), "num_train_epochs": num_train_epochs,
              "weights_digest": weights_digest, "identity": identity}
    path = Path(output_dir, DONE_FILE)
    tmp = path.with_name(DONE_FILE + ".tmp")
    tmp.write_text(json.dumps(record) + "\n", encoding="utf-8")
    tmp.replace(path)


def read_done(output_dir) -> dict[str, Any] | None:
    """The ``DONE`` record of ``output_dir`` when it parses and its ``weights_digest`` (when recorded) matches the
    weights beside it; None otherwise. A marker that does not parse or describes other weights (a run killed while
    saving a new final model) is reported as stale and not trusted."""
    from wise_rl.models.folder_check import weights_digest

    path = Path(output_dir, DONE_FILE)
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        int(record["global_step"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logger.warning("%s does not parse (%s): the run is treated as unfinished", path, exc)
        return None
    recorded = record.get("weights_digest")
    if recorded is not None and recorded != weights_digest(output_dir):
        logger.warning("%s is stale: it describes the weights of step %s, but the model beside it has other weights "
                       "(a save was interrupted); the run is treated as unfinished and resumes from its last "
                       "checkpoint", path, record["global_step"])
        return None
    return record


def reached_end(step: int, recorded: dict[str, Any], max_steps: int, num_train_epochs: float) -> bool:
    """True when a run at ``step`` (with ``recorded`` = the ``max_steps`` / ``num_train_epochs`` it ran with) has
    nothing left to do under the requested ``max_steps`` (> 0 wins, as in transformers) or ``num_train_epochs``."""
    if max_steps > 0:
        return step >= max_steps
    planned = recorded.get("max_steps")
    return (isinstance(planned, int) and planned > 0 and step >= planned
            and float(num_train_epochs) <= float(recorded.get("num_train_epochs") or 0))


def finished_run(output_dir, max_steps: int, num_train_epochs: float) -> dict[str, Any] | None:
    """The ``DONE`` record of ``output_dir`` (:func:`read_done`: parsed and matching its weights) when that run
    already trained as far as asked, else None (no marker, a stale one, or a request to go further: then the run
    resumes from its last checkpoint)."""
    record = read_done(output_dir)
    if record is None:
        return None
    return record if reached_end(int(record["global_step"]), record, max_steps, num_train_epochs) else None


def set_aside_previous_run(output_dir) -> Path | None:
    """Move an earlier run's ``checkpoint-*`` folders, ``DONE`` and ``run_identity.json`` into ``output_dir/previous-<unix time>/`` (a
    fresh start in a used folder must not resume from, or rotate away, another run's checkpoints). Returns the
    folder they went to, or None when there was nothing to move."""
    out = Path(output_dir)
    markers = [out / name for name in (DONE_FILE, "run_identity.json") if (out / name).is_file()]
    movable = [p for _, p in list_checkpoints(out)] + markers
    if not movable:
        return None
    dest = out / f"previous-{int(time.time() * 1000)}"
    dest.mkdir()
    for p in movable:
        p.rename(dest / p.name)
    logger.warning("starting over in %s: the earlier run's checkpoints were moved to %s", out, dest)
    return dest


# ----------------------------------------------------------------------------------------------------------------
# Weights (workaround for huggingface/transformers#43701)
# ----------------------------------------------------------------------------------------------------------------
def _read_full_state_dict(checkpoint: Path) -> dict | None:
    """The full-model safetensors state dict of ``checkpoint`` (single file or shards), None when it has none."""
    import safetensors.torch

    single = checkpoint / "model.safetensors"
    if single.is_file():
        return safetensors.torch.load_file(str(single), device="cpu")
    index = checkpoint / _SHARD_INDEX
    if index.is_file():
        state: dict = {}
        for shard in sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())):
            state.update(safetensors.torch.load_file(str(checkpoint / shard), device="cpu"))
        return state
    return None


def to_model_keys(model, state_dict: dict) -> dict:
    """``state_dict`` (as ``save_pretrained`` wrote it) under ``model``'s own parameter names: each key is renamed
    with the model's conversion mapping, exactly as ``from_pretrained`` renames checkpoint keys; a key that
    already names a model tensor is kept. A mapping that would have to merge or split tensors (a
    ``WeightConverter``) raises :class:`CheckpointError`."""
    from transformers.conversion_mapping import get_model_conversion_mapping
    from transformers.core_model_loading import WeightConverter, WeightRenaming, rename_source_key

    mapping = get_model_conversion_mapping(model)
    renamings = [m for m in mapping if isinstance(m, WeightRenaming)]
    converters = [m for m in mapping if isinstance(m, WeightConverter)]
    own = model.state_dict()
    out = {}
    for key, tensor in state_dict.items():
        if key in own:
            out[key] = tensor
            continue
        renamed, converter = rename_source_key(key, renamings, converters, model.base_model_prefix, own)
        if converter is not None:
            raise CheckpointError(f"checkpoint key {key!r} needs a tensor conversion ({converter}); this resume "
                                  "path only renames keys")
        out[renamed] = tensor
    return out


def load_checkpoint_weights(model, checkpoint) -> int:
    """Copy a full-model checkpoint's weights into ``model`` in place; returns the number of tensors loaded.

    Raises :class:`CheckpointError` naming the parameters the checkpoint lacks (tied parameters, e.g. an
    ``lm_head`` tied to the embeddings, count as loaded through their twin) or holds in excess.
    """
    checkpoint = Path(checkpoint)
    state = _read_full_state_dict(checkpoint)
    if state is None:
        raise CheckpointError(f"{checkpoint}: no model.safetensors (or shards) to restore the weights from")
    state = to_model_keys(model, state)
    result = model.load_state_dict(state, strict=False)
    loaded = {t.data_ptr() for k, t in model.state_dict().items() if k in state}
    own = model.state_dict()
    missing = [k for k in result.missing_keys if own[k].data_ptr() not in loaded]
    if missing or result.unexpected_keys:
        raise CheckpointError(
            f"{checkpoint}: the weights do not match the model ({len(missing)} missing, e.g. {missing[:3]}; "
            f"{len(result.unexpected_keys)} unexpected, e.g. {list(result.unexpected_keys)[:3]}); refusing to "
            "resume from the initial weights"
        )
    return len(state)


def restore_weights_on_resume(trainer) -> None:
    """Make ``trainer.train(resume_from_checkpoint=…)`` restore a full model's weights (transformers#43701).

    Replaces the bound ``_load_from_checkpoint`` of this trainer instance (no subclass, no fork): a plain model
    with a ``model.safetensors`` checkpoint loads through :func:`load_checkpoint_weights`; everything else (PEFT
    adapters, FSDP, ZeRO-3 partitioned parameters, ``.bin`` weights) goes to transformers' own method. (Inside
    ``train()`` DeepSpeed restores the module from its own ``global_step*`` files and never calls this.)
    """
    original = trainer._load_from_checkpoint

    def _load_from_checkpoint(resume_from_checkpoint, model=None):
        target = trainer.model if model is None else model
        ckpt = Path(resume_from_checkpoint)
        own_path = (hasattr(target, "config") and not hasattr(target, "peft_config") and not trainer.is_fsdp_enabled
                    and not any(hasattr(p, "ds_id") for p in target.parameters())  # ZeRO-3 partitioned
                    and ((ckpt / "model.safetensors").is_file() or (ckpt / _SHARD_INDEX).is_file()))
        if not own_path:
            return original(resume_from_checkpoint, model)
        n = load_checkpoint_weights(target, ckpt)
        logger.info("restored %d weight tensors from %s", n, ckpt)
        return None

    trainer._load_from_checkpoint = _load_from_checkpoint
