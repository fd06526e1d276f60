#!/usr/bin/env python
"""SFT warm-start for WISE (the code: ``wise_rl/scripts/sft.py``; this file is the documented launch path).

    accelerate launch recipes/sft.py --config recipes/tiny/sft.yaml            # any accelerate config
    python recipes/sft.py --config recipes/tiny/sft.yaml --max_steps 20        # single process, CLI overrides
    python -m wise_rl.scripts.sft --config recipes/tiny/sft.yaml               # the same main

Needs wise_rl installed (``pip install -e .``, done by ``make install``).
"""

import sys

from wise_rl.scripts.sft import cli

if __name__ == "__main__":
    sys.exit(cli())
