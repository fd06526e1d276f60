"""Training entry points, as in ``trl/scripts``: ``python -m wise_rl.scripts.sft`` / ``.grpo``.

Each module has ``main(script_args, training_args, model_args)`` (what the demo, the bench and the tests call in
process) and ``cli(argv=None)`` (parse ``--config FILE.yaml`` plus overrides, then ``main``). ``recipes/sft.py`` and
``recipes/grpo.py`` are thin launch shims around ``cli`` so that ``accelerate launch recipes/….py`` keeps working.
"""
