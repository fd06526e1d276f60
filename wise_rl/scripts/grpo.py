"""GRPO / RLOO for WISE: reinforce the three-stage output with the WISE rewards.

    accelerate launch recipes/grpo.py --config recipes/tiny/grpo.yaml
    python recipes/grpo.py --config recipes/tiny/grpo.yaml --algorithm rloo --max_steps 2
    accelerate launch --config_file deepspeed_configs/zero3.yaml recipes/grpo.py \
        --config recipes/qwen2.5-vl-7b/grpo_zero3.yaml

``algorithm: grpo`` uses ``trl.GRPOTrainer`` (any ``loss_type``; the ``ppo`` preset is GRPO with ``loss_type: grpo``,
``beta > 0`` and ``num_iterations > 1``, i.e. the PPO-clip objective with group-relative advantages — TRL has no
PPOTrainer); ``algorithm: rloo`` uses ``trl.RLOOTrainer``. Rewards come by name from the ``rewards`` registry
(``reward_funcs``, ``reward_weights``, ``reward_options``); the policy's tokenizer reaches the token-counting ones.
TRL logs ``rewards/<name>/mean`` for every component, the KL, completion lengths; this recipe adds
``completions/think_tokens`` etc.; ``sample_log_every: N`` writes ``sample_log_count`` completions with their rewards
to ``output_dir/samples.jsonl`` every N steps (from TRL's ``log_completions`` parquet files in
``output_dir/completions``), and a run whose rewards have no spread within any group for several logged steps
says so. ``output_dir/wise_rl.json`` records the prompt the model was trained with (``wise-rl eval`` / ``infer``
use it).

``python -m wise_rl.scripts.grpo``, ``wise-rl grpo CONFIG`` and ``recipes/grpo.py`` run the same :func:`cli`.

Shape (open-r1): parse → data → model → trainer → train → save; the run holds ``output_dir``; re-running the same
command resumes (weights included), leaves a finished run alone, and refuses a different run naming each difference
(``wise_rl.training.identity``); SIGTERM / SIGINT save a checkpoint at the end of the current step and exit 143 / 130.
"""

from __future__ import annotations

import logging
import sys

from wise_rl import formats, training
from wise_rl.models import info as model_info
from wise_rl.training import logs as training_logs

logger = logging.getLogger(__name__)


def main(script_args, training_args, model_args) -> dict:
    # ---- checks first: nothing heavy is loaded when a value is wrong
    training.validate_grpo_args(script_args, training_args, model_args)
    training.configure_logging(training_args)
    with training.hold_output_dir(training_args, f"wise-rl {script_args.algorithm}"):  # one writer per output_dir
        return _run(script_args, training_args, model_args)


def _run(script_args, training_args, model_args) -> dict:
    from wise_rl.models.folder_check import check_model_folder

    check_model_folder(training.ensure_model(script_args, model_args), "model_name_or_path")
    dataset = training.load_training_dataset(script_args, model_args.model_name_or_path)
    run_identity, finished = training.begin_run(script_args, training_args, model_args, dataset)
    if finished is not None:  # a finished run is left alone (raise max_steps to extend it)
        return finished
    training.maybe_init_cpu_deepspeed()
    trainer, processor, train_rows = build_trainer(script_args, training_args, model_args, dataset)
    _check_one_step_of_prompts(len(train_rows), training_args, trainer.accelerator.num_processes)
    training.apply_freezing(trainer.model, script_args)
    if trainer.accelerator.is_main_process:  # how to prompt the result: read by wise-rl eval / infer
        model_info.write(training_args.output_dir, model_info.training_record(
            [script_args.prompt_template or "wise-train"], script_args.algorithm,
            frame=training.dataset_frame(dataset)))

    # ---- train (resuming when a complete checkpoint exists) and save
    return training.train_and_save(trainer, processor, script_args, training_args, train_rows, run_identity)


def _check_one_step_of_prompts(n_rows: int, training_args, num_processes: int = 1) -> None:
    """One optimizer step takes ``per_device_train_batch_size × gradient_accumulation_steps × processes`` completions,
    ``num_generations`` per prompt; with fewer prompt rows than that the trainer runs 0 steps and would save the
    starting model as trained. Raises :class:`ConfigError` naming the numbers."""
    b, g = training_args.per_device_train_batch_size, training_args.gradient_accumulation_steps
    n = training_args.num_generations
    need = max(1, b * g * num_processes // n)
    if n_rows < need:
        raise training.ConfigError(
            f"dataset: {n_rows} prompt rows, fewer than one optimizer step takes ({need} = "
            f"per_device_train_batch_size {b} × gradient_accumulation_steps {g} × {num_processes} process(es) / "
            f"num_generations {n}): training would run 0 steps; give more rows or a smaller batch")


def build_trainer(script_args, training_args, model_args, dataset=None):
    """data → model → rewards → trainer, for validated arguments (``wise-rl bench grpo-step`` times this too);
    ``dataset``: the rows already loaded (default: :func:`wise_rl.training.load_training_dataset`)."""
    from trl import GRPOTrainer, RLOOTrainer

    prompt_template = script_args.prompt_template or "wise-train"
    layout = formats.PROMPT_SPECS[prompt_template]["layout"]
    callbacks = [training_logs.ZeroSpreadCallback()]
    if script_args.sample_log_every > 0:
        if not training_args.log_completions:  # TRL's parquet of every logged step, without its console table
            training_args.log_completions = True
            training_args.num_completions_to_print = 0
        if script_args.sample_log_every % training_args.logging_steps:
            logger.warning("sample_log_every %d is not a multiple of logging_steps %d: TRL logs completions only at "
                           "logging steps", script_args.sample_log_every, training_args.logging_steps)
        callbacks.append(training_logs.CompletionSamplesCallback(script_args.sample_log_every,
                                                                 script_args.sample_log_count))
    logger.info("%s: rewards=%s weights=%s prompt=%s model=%s out=%s", script_args.algorithm.upper(),
                script_args.reward_funcs, training_args.reward_weights, prompt_template,
                model_args.model_name_or_path, training_args.output_dir)

    # ---- data: sample-schema rows + a conversational prompt; gt_* columns ride along to the rewards
    if dataset is None:
        dataset = training.load_training_dataset(script_args, model_args.model_name_or_path)
    train_rows = training.grpo_rows(dataset, prompt_template)
    logger.info("%d training prompts", len(train_rows))

    # ---- model (a path + init kwargs), processor, rewards that see the policy's tokenizer
    model_path = training.ensure_model(script_args, model_args)
    processor = training.build_processor(script_args, model_args)
    # Left padding, as TRL loads a processor itself: the prompts it re-processes for the loss must line up with
    # the left-padded prompt ids (Qwen3-VL / Qwen3.5 take image positions from the processor's mm_token_type_ids).
    processor.tokenizer.padding_side = "left"
    training_args.model_init_kwargs = training.model_init_kwargs(training_args, model_args)
    reward_funcs = training.build_reward_funcs(script_args, processor.tokenizer, layout)
    training.check_reward_columns(reward_funcs, train_rows, f"dataset {script_args.dataset!r}")

    # ---- trainer
    trainer_cls = GRPOTrainer if script_args.algorithm == "grpo" else RLOOTrainer
    trainer = trainer_cls(
        model=model_path,
        reward_funcs=reward_funcs,
        args=training_args,
        train_dataset=train_rows,
        processing_class=processor,
        peft_config=training.peft_config(script_args, model_args),
        quantization_config=training.quantization_config(model_args),
        callbacks=callbacks,
    )
    training.router_logits_off_in_generation(trainer.model)
    return trainer, processor, train_rows


def cli(argv: list[str] | None = None, prog: str = "recipes/grpo.py") -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``; ``--config FILE.yaml`` plus overrides) and run :func:`main`; a
    user mistake (a wrong option, a bad row) is one line ``PROG: error: …`` and exit status 2 (``prog``: how the
    user called it, ``wise-rl grpo`` from the verb)."""
    return training.run_from_command_line(main, lambda: training.parse_grpo_args(argv), prog)


if __name__ == "__main__":
    sys.exit(cli())
