"""SFT warm-start for WISE: teach the three-stage target before GRPO.

    accelerate launch recipes/sft.py --config recipes/tiny/sft.yaml            # any accelerate config
    python recipes/sft.py --config recipes/tiny/sft.yaml --max_steps 20        # single process, CLI overrides

The target (``target_mode: wise``) is ``<think>concise</think><answer>{json}</answer><d_think>detailed</d_think>``
with the ``wise-train`` prompt; ``target_mode: verbose`` trains the chain-of-thought baseline
(``<think>detailed</think><answer>…</answer>``, ``verbose`` prompt). The loss covers the completion only: rows are
TRL prompt–completion pairs, tokenised separately as generation sees them.

``python -m wise_rl.scripts.sft``, ``wise-rl sft CONFIG`` and ``recipes/sft.py`` run the same :func:`cli`.

Shape (open-r1): parse → data → model → trainer → train → save. The run holds ``output_dir`` (one writer per
folder). Re-running the same command resumes from the last complete checkpoint in ``output_dir`` (weights
included); a finished run is left alone (a larger ``max_steps`` extends it); a different run (base model, adapter,
data, hyper-parameters: ``wise_rl.training.identity``) is refused naming each difference;
``--resume_from_checkpoint PATH`` picks one; ``--resume false`` starts over. SIGTERM / SIGINT save a checkpoint
at the end of the current step and exit 143 / 130.
"""

from __future__ import annotations

import logging
import sys

from wise_rl import training
from wise_rl.models import info as model_info

logger = logging.getLogger(__name__)


def main(script_args, training_args, model_args) -> dict:
    # ---- checks first: nothing heavy is loaded when a value is wrong
    training.validate_sft_args(script_args, training_args, model_args)
    training.configure_logging(training_args)
    with training.hold_output_dir(training_args, "wise-rl sft"):  # one writer per output_dir
        return _run(script_args, training_args, model_args)


def _run(script_args, training_args, model_args) -> dict:
    from trl import SFTTrainer

    from wise_rl.models.folder_check import check_model_folder

    model_path = training.ensure_model(script_args, model_args)
    check_model_folder(model_path, "model_name_or_path")
    dataset = training.load_training_dataset(script_args, model_path)
    run_identity, finished = training.begin_run(script_args, training_args, model_args, dataset)
    if finished is not None:  # a finished run is left alone (raise max_steps to extend it)
        return finished
    training.maybe_init_cpu_deepspeed()
    prompt_template = training.sft_prompt_template(script_args)
    logger.info("SFT: target_mode=%s prompt=%s model=%s out=%s", script_args.target_mode, prompt_template,
                model_args.model_name_or_path, training_args.output_dir)

    # ---- data: sample-schema rows → prompt/completion rows
    train_rows = training.sft_rows(dataset, prompt_template, script_args.target_mode, script_args.grounding_share)
    logger.info("%d training rows; first target: %s", len(train_rows),
                train_rows[0]["completion"][0]["content"][:200])

    # ---- model: a path + init kwargs (QLoRA needs the path), processor, optional LoRA / 4-bit
    processor = training.build_processor(script_args, model_args)
    training_args.model_init_kwargs = training.model_init_kwargs(training_args, model_args)

    callbacks = []
    if script_args.sample_log_every > 0:
        callbacks.append(training.SampleCompletionsCallback(
            processor, training.sample_rows(train_rows, script_args.sample_log_count), script_args.sample_log_every,
        ))

    # ---- trainer
    trainer = SFTTrainer(
        model=model_path,
        args=training_args,
        train_dataset=train_rows,
        processing_class=processor,
        peft_config=training.peft_config(script_args, model_args),
        quantization_config=training.quantization_config(model_args),
        callbacks=callbacks,
    )

    training.apply_freezing(trainer.model, script_args)
    if trainer.accelerator.is_main_process:  # how to prompt the result: read by wise-rl eval / infer
        model_info.write(training_args.output_dir,
                         model_info.training_record(training.prompt_templates(prompt_template), "sft",
                                                    frame=training.dataset_frame(dataset)))

    # ---- train (resuming when a complete checkpoint exists) and save
    return training.train_and_save(trainer, processor, script_args, training_args, train_rows, run_identity)


def cli(argv: list[str] | None = None, prog: str = "recipes/sft.py") -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``; ``--config FILE.yaml`` plus overrides) and run :func:`main`; a
    user mistake (a wrong option, a bad row) is one line ``PROG: error: …`` and exit status 2 (``prog``: how the
    user called it, ``wise-rl sft`` from the verb)."""
    return training.run_from_command_line(main, lambda: training.parse_sft_args(argv), prog)


if __name__ == "__main__":
    sys.exit(cli())
