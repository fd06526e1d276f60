"""Counting the tokens of a rationale: the one rule behind every think-token figure (the paper's headline number)
— the SFT data statistics (:func:`wise_rl.data.token_counter`), the rewards' brevity term
(:class:`TokenCounter` in ``rewards``), the training logs' ``completions/think_tokens`` and evaluation's
``think_tokens`` (hence the demo's report).

    count(text) = len(tokenizer(text, add_special_tokens=False).input_ids)    with a tokenizer (the policy's)
    count(text) = len(re.findall(r"\\S+", text))                              without one: whitespace words

The fallback is one documented stand-in, not a token count: it keeps ratios (``1 − T(concise)/T(detailed)``) and
SFT data statistics meaningful where no tokenizer is at hand (tests, ``build-sft`` without one); recipes,
``wise-rl eval`` and the demo pass the policy's tokenizer. Evaluation never reports the fallback: without a
tokenizer its think tokens are "not measured" (:func:`wise_rl.evaluate.scoring.count_tokens`). ``tokenizer`` may be a
tokenizer, a processor (its ``.tokenizer`` is used) or, for :class:`TokenCounter`, a tokenizer folder (loaded
lazily, offline). Empty text counts 0. No import of the training stack at module level.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Any

WORD = re.compile(r"\S+")


def _text_tokenizer(tokenizer: Any) -> Any:
    return getattr(tokenizer, "tokenizer", tokenizer)


def count_tokens(text: str, tokenizer: Any = None) -> int:
    """Tokens of one ``text`` (see the module docstring for the rule and the fallback)."""
    if not text:
        return 0
    if tokenizer is None:
        return len(WORD.findall(text))
    return len(_text_tokenizer(tokenizer)(text, add_special_tokens=False)["input_ids"])


class TokenCounter:
    """:func:`count_tokens` over batches, memoised by text (``cache_size`` texts, then the cache starts over).

    ``tokenizer``: a tokenizer, a processor, a path to a tokenizer folder (loaded on first use with
    ``AutoTokenizer``, offline, no remote code) or ``None`` (whitespace words). Pickles without its loaded
    tokenizer and cache (DataLoader workers, multiprocessing), so a path travels cheaply.
    """

    def __init__(self, tokenizer: Any = None, cache_size: int = 8192):
        self.tokenizer = tokenizer
        self.cache_size = cache_size
        self._loaded = None
        self._cache: dict[str, int] = {}

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_loaded"] = None
        state["_cache"] = {}
        return state

    def _tok(self):
        if self.tokenizer is None:
            return None
        if self._loaded is None:
            tok = self.tokenizer
            if isinstance(tok, (str, os.PathLike)):
                from transformers import AutoTokenizer

                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                tok = AutoTokenizer.from_pretrained(str(tok), trust_remote_code=False)
            self._loaded = _text_tokenizer(tok)
        return self._loaded

    def count(self, texts: Sequence[str]) -> list[int]:
        """The count of each text, in order."""
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing:
            tok = self._tok()
            if tok is None:
                counts = [len(WORD.findall(t)) for t in missing]
            else:
                counts = [len(ids) for ids in tok(missing, add_special_tokens=False)["input_ids"]]
            if len(self._cache) + len(missing) > self.cache_size:
                self._cache.clear()
            self._cache.update(zip(missing, counts))
        return [self._cache[t] for t in texts]
