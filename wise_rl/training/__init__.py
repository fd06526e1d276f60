"""Everything the training recipes (``wise_rl/scripts/sft.py``, ``wise_rl/scripts/grpo.py``) need, so that the
scripts stay thin: resume, logging, the sample callback, ``train_and_save``; the rest is re-exported from

- :mod:`wise_rl.training.checks`: ``validate_sft_args`` / ``validate_grpo_args`` (before anything heavy loads),
- :mod:`wise_rl.training.data`: ``load_training_dataset``, ``sft_rows``, ``grpo_rows``,
- :mod:`wise_rl.training.model`: ``ensure_model``, processor, quantization, LoRA, ``model_init_kwargs``, freezing,
- :mod:`wise_rl.training.rewards`: ``build_reward_funcs``, ``check_reward_columns``, length diagnostics,
- :mod:`wise_rl.training.recipe_args` / :mod:`wise_rl.training.script_args`: parsing and the script-argument dataclasses.

The recipes follow open-r1: ``TrlParser`` reads a YAML file (``--config FILE``) plus command-line overrides into
three dataclasses — the script arguments, TRL's ``SFTConfig`` / ``GRPOConfig`` / ``RLOOConfig`` and TRL's
``ModelConfig`` — then data → model → trainer → ``train()`` → save (crash safety: docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import contextlib
import json
import logging
import warnings
from pathlib import Path
from typing import Any

from wise_rl import formats
from wise_rl.errors import ConfigError  # re-exported: callers catch training.ConfigError
from wise_rl.training import checkpoints, identity, preemption
from wise_rl.training.checks import (  # noqa: F401  (re-exported: the scripts and tests call training.validate_*)
    prompt_templates,
    sft_prompt_template,
    validate_grpo_args,
    validate_sft_args,
)
from wise_rl.training.data import (  # noqa: F401
    dataset_frame,
    grpo_rows,
    is_grounding_row,
    load_training_dataset,
    rows_in_frame,
    sft_rows,
    training_frame,
)
from wise_rl.training.model import (  # noqa: F401  (re-exported: the scripts call training.ensure_model etc.)
    VISION_TOWER_NAMES,
    apply_freezing,
    build_processor,
    describe_model,
    ensure_model,
    freeze_vision_tower,
    maybe_init_cpu_deepspeed,
    model_init_kwargs,
    peft_config,
    quantization_config,
    router_logits_off_in_generation,
)
from wise_rl.training.recipe_args import (  # noqa: F401  (re-exported: recipes, demo, bench and tests call training.parse_*)
    ALGORITHMS,
    PRESETS_DIR,
    RECIPES_DIR,
    load_config,
    parse_grpo_args,
    parse_sft_args,
    run_from_command_line,
)
from wise_rl.training.rewards import (  # noqa: F401  (re-exported: the scripts call training.build_reward_funcs etc.)
    build_reward_funcs,
    check_reward_columns,
    completion_lengths,
    reward_options,
    with_length_diagnostics,
)
from wise_rl.training.script_args import (  # noqa: F401  (re-exported: callers use training.SFTScriptArguments etc.)
    DEFAULT_SFT_PROMPT,
    LORA_TARGETS,
    SFT_TARGET_MODES,
    WISE_REWARDS,
    GRPOScriptArguments,
    SFTScriptArguments,
    WiseScriptArguments,
)

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------------------------
# Checkpoints and resume (the checks themselves live in wise_rl.training.checkpoints)
# ----------------------------------------------------------------------------------------------------------------
def _truthy(value) -> bool:
    return value in ("true", "True", True)


def resolve_resume(script_args: WiseScriptArguments, training_args) -> str | None:
    """The checkpoint to resume from: ``resume_from_checkpoint`` (a folder, or ``true`` = last in output_dir), else
    the last complete checkpoint in output_dir when ``resume`` (the default), else None (fresh start).

    Incomplete checkpoints in output_dir are moved to ``output_dir/incomplete/`` (main process only); an explicit
    folder that is not complete is a :class:`ConfigError` saying why."""
    from accelerate import PartialState

    requested = training_args.resume_from_checkpoint
    if requested in ("false", "False", False):
        return None
    state = PartialState()
    if requested not in (None, "", "true", "True", True):
        problem = checkpoints.checkpoint_problem(requested)
        if problem:
            raise ConfigError(f"resume_from_checkpoint: {requested} is not a complete checkpoint ({problem})")
        return str(requested)
    if _truthy(requested) or script_args.resume:
        with state.main_process_first():  # only the main process moves incomplete folders
            last = checkpoints.last_complete_checkpoint(training_args.output_dir, quarantine=state.is_main_process)
        if last is None and _truthy(requested):
            raise ConfigError(f"resume_from_checkpoint: true, but {training_args.output_dir} has no complete checkpoint")
        if last is not None:
            logger.info("resuming from %s", last)
        return last
    return None


def _resuming(script_args: WiseScriptArguments, training_args) -> bool:
    return bool(script_args.resume) and training_args.resume_from_checkpoint not in ("false", "False", False)


def _explicit_checkpoint(training_args) -> str | None:
    requested = training_args.resume_from_checkpoint
    return None if requested in (None, "", "true", "True", True, "false", "False", False) else str(requested)


def finished_summary(script_args: WiseScriptArguments, training_args,
                     run_identity: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """When ``output_dir`` holds a run that already trained as far as this configuration asks (its ``DONE``
    marker, checked against the weights beside it), the summary of that run (``finished: True``) for the recipe
    to return without training; None otherwise. A larger ``max_steps`` (or more epochs) resumes and extends it;
    ``--resume false`` starts over. With ``run_identity``, a finished run of another identity is refused
    (:class:`~wise_rl.errors.RunIdentityError`, each difference named), extension or not."""
    if not _resuming(script_args, training_args) or _explicit_checkpoint(training_args):
        return None  # starting over, or an explicit checkpoint: the user asks to train from it
    record = checkpoints.read_done(training_args.output_dir)
    if record is None:
        return None
    if run_identity is not None:
        identity.refuse_if_different(record.get("identity"), run_identity,
                                     Path(training_args.output_dir, checkpoints.DONE_FILE), "re-running it")
    step = int(record["global_step"])
    if not checkpoints.reached_end(step, record, training_args.max_steps, training_args.num_train_epochs):
        return None
    logger.warning("%s already holds a finished run (step %d): nothing to do. Raise max_steps to extend it, or pass "
                   "--resume false to start over (its checkpoints are kept aside).", training_args.output_dir, step)
    return {"global_step": step, "resumed_from": None, "finished": True}


def _last_complete_quietly(output_dir) -> str | None:
    found = [p for _, p in checkpoints.list_checkpoints(output_dir) if checkpoints.checkpoint_problem(p) is None]
    return str(found[-1]) if found else None


def begin_run(script_args: WiseScriptArguments, training_args, model_args, dataset) -> tuple[dict, dict | None]:
    """``(identity, finished summary or None)`` of the run asked for, on the loaded ``dataset``; before the model
    loads. Raises :class:`~wise_rl.errors.RunIdentityError` when the finished run in ``output_dir`` or the
    checkpoint a resume would start from (its ``run_identity.json``, else ``output_dir``'s) is another run."""
    from accelerate import PartialState

    ident = identity.run_identity(script_args, training_args, model_args, dataset, PartialState().num_processes)
    finished = finished_summary(script_args, training_args, ident)
    if finished is not None or not _resuming(script_args, training_args):
        return ident, finished
    ckpt = _explicit_checkpoint(training_args) or _last_complete_quietly(training_args.output_dir)
    if ckpt is not None and Path(ckpt).is_dir():
        recorded = identity.read_identity(ckpt) or identity.read_identity(training_args.output_dir)
        identity.refuse_if_different(recorded, ident, ckpt, "resuming from it")
    return ident, None


@contextlib.contextmanager
def hold_output_dir(training_args, what: str):
    """Hold ``output_dir`` (:func:`wise_rl.outdir.hold_folder`) for the block, from the main process only (under
    accelerate / DeepSpeed every process runs the recipe; the others wait for it at the first collective)."""
    from accelerate import PartialState

    from wise_rl.outdir import hold_folder

    if not PartialState().is_main_process:
        yield Path(training_args.output_dir)
        return
    with hold_folder(training_args.output_dir, what) as folder:
        yield folder


# Re-exported for callers of the earlier API.
TRAINER_STATE = checkpoints.TRAINER_STATE
is_complete_checkpoint = checkpoints.is_complete_checkpoint
last_complete_checkpoint = checkpoints.last_complete_checkpoint


# ----------------------------------------------------------------------------------------------------------------
# Logging
# ----------------------------------------------------------------------------------------------------------------
def _trainer_callback_base():
    from transformers import TrainerCallback

    return TrainerCallback


class SampleCompletionsCallback(_trainer_callback_base()):
    """Every ``every`` optimizer steps, generate greedily for ``rows`` (fixed training prompts) and append
    ``{"step", "id", "prompt", "target", "completion"}`` lines to ``output_dir/samples.jsonl``; also logs them.

    All processes generate (ZeRO-3 needs every rank inside ``generate``); the main process writes.
    """

    def __init__(self, processor, rows: list[dict], every: int, max_new_tokens: int = 128):
        self.processor, self.rows, self.every, self.max_new_tokens = processor, rows, every, max_new_tokens

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.every <= 0 or not self.rows or state.global_step % self.every or model is None:
            return
        import torch
        from trl.data_utils import prepare_multimodal_messages

        from wise_rl.models import eval_mode

        records = []
        with eval_mode(model):
            for row in self.rows:
                messages = prepare_multimodal_messages(row["prompt"], images=[row["image"]])
                text = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
                enc = self.processor(text=[text], images=[row["image"]], return_tensors="pt")
                enc = {k: v.to(model.device) if hasattr(v, "to") else v for k, v in enc.items()}
                with torch.no_grad():
                    out = model.generate(**enc, max_new_tokens=self.max_new_tokens, do_sample=False)
                completion = self.processor.tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
                records.append({"step": state.global_step, "id": row.get("id"),
                                "target": formats.completion_text(row.get("completion")), "completion": completion})
        if state.is_world_process_zero:
            path = Path(args.output_dir) / "samples.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a", encoding="utf-8") as f:
                for rec in records:
                    f.write(json.dumps(rec) + "\n")
            for rec in records:
                logger.info("step %d sample %s: %s", rec["step"], rec["id"], " ".join(rec["completion"].split())[:200])


def sample_rows(dataset, count: int) -> list[dict]:
    """The first ``count`` rows as plain dicts (for :class:`SampleCompletionsCallback`)."""
    rows = []
    for i in range(min(count, len(dataset))):
        row = dict(dataset[i])
        row.setdefault("id", str(i))
        rows.append(row)
    return rows


def configure_logging(training_args) -> None:
    """Python / transformers / datasets log levels from ``log_level`` (main process) like open-r1.

    The recipe's own news (what is trained, trainable parameters, resuming from …, model saved to …) is INFO from
    this project's loggers: at the default ``log_level: passive`` the main process shows it and the libraries stay
    at their default (warnings); other processes show warnings only, so each line appears once."""
    import datasets
    import transformers

    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    level = training_args.get_process_log_level()
    own = level
    if training_args.log_level == "passive" and training_args.should_log:
        own = logging.INFO
    for name in ("wise_rl", "recipes", "rewards"):
        logging.getLogger(name).setLevel(own)
    logger.setLevel(own)
    datasets.utils.logging.set_verbosity(level)
    transformers.utils.logging.set_verbosity(level)
    # Deprecation notices raised from inside the libraries' training step (TRL asks for a renamed attribute at every
    # step): shown once, not once per step.
    warnings.filterwarnings("once", category=FutureWarning, module=r"(transformers|trl|accelerate|peft)\.")


def save_final(trainer, processor, output_dir, identity: dict[str, Any] | None = None) -> None:
    """Save the final model (adapter when PEFT) + processor into ``output_dir``, then the ``DONE`` marker.

    An earlier ``DONE`` is removed first and the new one is written last, with the digest of the weights beside it
    (:func:`wise_rl.models.folder_check.weights_digest`) and the run's ``identity``: a save killed midway leaves no
    marker, and a marker that does not match the weights is reported as stale. ``wise_rl.json`` gets the digest
    too."""
    from wise_rl.models import info as model_info
    from wise_rl.models.folder_check import weights_digest

    main = trainer.accelerator.is_main_process
    if main:
        Path(output_dir, checkpoints.DONE_FILE).unlink(missing_ok=True)
    trainer.accelerator.wait_for_everyone()
    trainer.save_model(output_dir)
    if main:
        processor.save_pretrained(output_dir)
        digest = weights_digest(output_dir)
        record = model_info.read(output_dir) if model_info.find(output_dir) == Path(output_dir, model_info.FILENAME) else None
        if record is not None:
            model_info.write(output_dir, record | {"weights_digest": digest})
        checkpoints.write_done(output_dir, trainer.state.global_step, trainer.state.max_steps,
                               trainer.args.num_train_epochs, weights_digest=digest, identity=identity)
    trainer.accelerator.wait_for_everyone()


def _at_end(checkpoint: str, training_args) -> bool:
    """The checkpoint already reached this configuration's last step (a run killed after its final save)."""
    state = json.loads((Path(checkpoint) / checkpoints.TRAINER_STATE).read_text(encoding="utf-8"))
    return checkpoints.reached_end(int(state["global_step"]), state, training_args.max_steps,
                                   training_args.num_train_epochs)


def _restore_final_checkpoint(trainer, checkpoint: str) -> dict[str, Any]:
    """Load the weights and state of a checkpoint that already reached the last step, without training (resuming
    it through ``trainer.train`` would run one step past ``max_steps``)."""
    from transformers import TrainerState

    trainer._load_from_checkpoint(checkpoint)
    trainer.state = TrainerState.load_from_json(str(Path(checkpoint) / checkpoints.TRAINER_STATE))
    logger.info("%s is the last step (%d): saving it as the final model without training", checkpoint,
                trainer.state.global_step)
    return {}


def train_and_save(trainer, processor, script_args: WiseScriptArguments, training_args, train_rows,
                   run_identity: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train (resuming from the last complete checkpoint when there is one), save metrics, state and the final model.

    Crash safety (docs/ARCHITECTURE.md, "Runs that crash"): resumed weights are the checkpoint's
    (:func:`wise_rl.training.checkpoints.restore_weights_on_resume`); a checkpoint that already reached the last step is
    saved as the final model without training; ``--resume false`` in a used folder moves the earlier run's
    checkpoints aside; a full disk raises :class:`wise_rl.outdir.DiskFullError` naming output_dir. ``run_identity``
    (:func:`begin_run`) is written to ``output_dir``, every checkpoint and ``DONE``. SIGTERM / SIGINT end the current
    step, save ``checkpoint-N`` and raise ``SystemExit(143 / 130)`` (:mod:`wise_rl.training.preemption`).

    Returns the run's summary: ``global_step``, ``resumed_from``, the model description and the train metrics.
    """
    from wise_rl.outdir import disk_full_errors

    model_info = describe_model(trainer.model)
    logger.info("model: %s", model_info)
    checkpoints.restore_weights_on_resume(trainer)
    checkpoint = resolve_resume(script_args, training_args)
    main = trainer.accelerator.is_main_process
    if checkpoint is None and not _resuming(script_args, training_args):
        if main:
            checkpoints.set_aside_previous_run(training_args.output_dir)
        trainer.accelerator.wait_for_everyone()
    if run_identity is not None:
        if main:
            identity.write_identity(training_args.output_dir, run_identity)
        trainer.add_callback(identity.IdentityCallback(run_identity))
    with disk_full_errors(training_args.output_dir, "saving a checkpoint"):
        if checkpoint is not None and _at_end(checkpoint, training_args):
            metrics = _restore_final_checkpoint(trainer, checkpoint)
        else:
            metrics = _train(trainer, checkpoint, training_args.output_dir)
    metrics["train_samples"] = len(train_rows)
    with disk_full_errors(training_args.output_dir, "saving the final model"):
        trainer.log_metrics("train", metrics)
        trainer.save_metrics("train", metrics)
        trainer.save_state()
        save_final(trainer, processor, training_args.output_dir, run_identity)
    logger.info("model saved to %s", training_args.output_dir)
    if hasattr(trainer, "end"):
        trainer.end()
    return {"global_step": trainer.state.global_step, "resumed_from": checkpoint, **model_info, **metrics}


def _train(trainer, checkpoint: str | None, output_dir) -> dict[str, Any]:
    """``trainer.train`` with SIGTERM / SIGINT turned into a saved checkpoint and ``SystemExit(128 + signal)``."""
    import threading

    callback = preemption.PreemptionCallback(preemption.exact_stop_every(trainer.args))
    trainer.add_callback(callback)
    in_main_thread = threading.current_thread() is threading.main_thread()
    if in_main_thread:
        callback.install()
    try:
        metrics = dict(trainer.train(resume_from_checkpoint=checkpoint).metrics)
    finally:
        if in_main_thread:
            callback.uninstall()
        trainer.remove_callback(callback)
    preemption.exit_if_interrupted(callback, output_dir)
    return metrics
