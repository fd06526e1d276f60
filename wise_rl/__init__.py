"""wise_rl: WISE (learn thick, use thin) for vision-language reasoning segmentation on TRL."""

__version__ = "0.1.0"
