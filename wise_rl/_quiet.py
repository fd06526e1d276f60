"""Library noise a user cannot act on, silenced once for every entry point (the ``wise-rl`` verbs and the recipes).

Each filter names one message, by a precise regular expression, and says why it is safe; nothing is ignored
wholesale. :func:`install` is idempotent and cheap (no heavy import): it only registers filters and logger levels.

- bitsandbytes' CPU backend logs two lines on import on a CPU with AVX512-BF16 when offline (the optional
  kernels-community 4-bit GEMM cannot be fetched; its own kernel is used instead, and only 4-bit training uses it).
- datasets warns that a ``map`` function "couldn't be hashed properly" (it holds a tokenizer or a closure): the only
  effect is that the map is not cached between processes; the rows are the same.
- torch.distributed's FutureWarnings on its deprecated collectives ("`torch.distributed._all_gather_base` is a
  private function …", "`torch.distributed.reduce_scatter_tensor` is deprecated …"), raised from inside DeepSpeed
  ZeRO-3 at every step: the call sites are the library's.
- transformers' FutureWarnings "`is_gradient_checkpointing` is deprecated" (every GRPO step) and
  "`gradient_checkpointing_enable` / `_disable` is deprecated" (ZeRO-3 generation): TRL uses the old names; the
  recipes already use ``activation_checkpointing``.
"""

from __future__ import annotations

import logging
import re
import warnings

# (logger name, message regex): records dropped by a filter on that logger only
_LOG_FILTERS: tuple[tuple[str, str], ...] = (
    # bitsandbytes' CPU backend, on import, on a CPU with AVX512-BF16, offline: the optional kernels-community
    # 4-bit GEMM cannot be fetched, and bitsandbytes falls back to its own kernel (4-bit training only, GPU recipes)
    ("bitsandbytes.backends.cpu.ops", r"^Failed to load CPU gemm_4bit_forward from kernels-community"),
    ("kernels._internals.hf_hub", r"^Skipping publisher trust check for 'kernels-community/"),
    # datasets, once per map over a closure (the SFT/GRPO row builders): only the cross-process cache is lost
    ("datasets.fingerprint", r"^Parameter 'function'=.* couldn't be hashed properly"),
)
# (message regex, category): Python warnings raised inside the libraries, not by a user's setting
_WARNING_FILTERS: tuple[tuple[str, type[Warning]], ...] = (
    # torch.distributed's deprecated collectives, called by DeepSpeed ZeRO-3 at every step (the call sites are its)
    (r"^`torch\.distributed\.(_all_gather_base|_reduce_scatter_base|all_gather_into_tensor|reduce_scatter_tensor"
     r"|all_gather_coalesced)` (is|will be) ", FutureWarning),
    # transformers, at every GRPO step: TRL (not the recipe) reads the renamed attribute and, under ZeRO-3, calls
    # the renamed methods around generation
    (r"`(is_gradient_checkpointing|gradient_checkpointing_enable|gradient_checkpointing_disable)` is deprecated",
     FutureWarning),
)
_DONE = {"installed": False}


class _Drop(logging.Filter):
    """Drops the records of one logger whose message matches ``pattern``."""

    def __init__(self, pattern: str):
        super().__init__()
        self.pattern = re.compile(pattern)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is not ours to judge
            return True
        return not self.pattern.search(message)


def _silenced(message, category) -> bool:
    text = str(message)
    return any(issubclass(category, c) and re.search(p, text) for p, c in _WARNING_FILTERS)


def install() -> None:
    """Register the filters above (once per process). The warning filters go in twice: as ``ignore`` filters, and
    in ``warnings.showwarning``, because a later ``filterwarnings`` call (the training logging set-up makes library
    FutureWarnings ``once``) outranks an earlier filter, and the libraries' own ``catch_warnings`` blocks reset the
    ``once`` registry at every step."""
    if _DONE["installed"]:
        return
    for name, pattern in _LOG_FILTERS:
        logging.getLogger(name).addFilter(_Drop(pattern))
    for pattern, category in _WARNING_FILTERS:
        warnings.filterwarnings("ignore", message=pattern, category=category)
    shown = warnings.showwarning

    def showwarning(message, category, filename, lineno, file=None, line=None):
        if not _silenced(message, category):
            shown(message, category, filename, lineno, file, line)

    warnings.showwarning = showwarning
    _DONE["installed"] = True
