#!/usr/bin/env python
"""GRPO / RLOO for WISE (the code: ``wise_rl/scripts/grpo.py``; this file is the documented launch path).

    accelerate launch recipes/grpo.py --config recipes/tiny/grpo.yaml
    python recipes/grpo.py --config recipes/tiny/grpo.yaml --algorithm rloo --max_steps 2
    accelerate launch --config_file deepspeed_configs/zero3.yaml recipes/grpo.py \
        --config recipes/qwen2.5-vl-7b/grpo_zero3.yaml
    python -m wise_rl.scripts.grpo --config recipes/tiny/grpo.yaml             # the same main

Needs wise_rl installed (``pip install -e .``, done by ``make install``).
"""

import sys

from wise_rl.scripts.grpo import cli

if __name__ == "__main__":
    sys.exit(cli())
