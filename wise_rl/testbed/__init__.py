"""The offline testbed: what lets wise_rl train, evaluate and be tested on a CPU without a hub download.

- :mod:`~wise_rl.testbed.shapeworld` (with :mod:`~wise_rl.testbed.shapeworld.scenes` and :mod:`~wise_rl.testbed.shapeworld.queries`):
  the ShapeWorld reasoning-segmentation dataset in the sample schema, and its box baselines;
- :mod:`~wise_rl.testbed.fixtures.tiny_model` (with :mod:`~wise_rl.testbed.fixtures.tokenizer`): random-weight Qwen2.5-VL presets
  (``tiny`` for tests, ``small`` for the demo) with an offline BPE tokenizer;
- :mod:`~wise_rl.testbed.fixtures.tiny_sam2`: a random-weight SAM2 for the mask-decoder tests;
- :mod:`~wise_rl.testbed.bench`: the ``wise-rl bench`` benchmarks.

The toolkit core never imports this package except through one seam, :mod:`wise_rl.training`: a recipe's
``dataset: shapeworld`` (:func:`wise_rl.training.load_training_dataset`). ``tests/test_layout.py`` holds the rule; findings and
timings of the testbed are in ``docs/testbed.md``.
"""
