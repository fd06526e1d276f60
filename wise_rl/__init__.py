"""wise_rl: WISE (learn thick, use thin) for vision-language reasoning segmentation on TRL.

Importing the package registers the few library-noise filters of :mod:`wise_rl._quiet` (precise messages a user
cannot act on), so every entry point — the ``wise-rl`` verbs, the recipes, ``python -m`` — is quiet alike.
"""

from wise_rl import _quiet

__version__ = "0.1.0"

_quiet.install()
