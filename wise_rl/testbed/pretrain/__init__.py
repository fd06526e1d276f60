"""The ShapeWorld base model's pre-training (`wise-rl pretrain-base`): :mod:`.config` (its options), :mod:`.rows`
(the grounding rows), :mod:`.run` (the trainer and the run), :mod:`.vision_stage` and :mod:`.attention_supervision`
(the stages before and beside grounding), :mod:`.perception` (what a base sees), :mod:`.base_card` (its card).
Light on purpose: the CLI imports :mod:`.config` to build its parser without loading the training stack."""
