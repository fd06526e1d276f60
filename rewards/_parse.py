"""Parse each completion once and share the result between every reward of a batch.

TRL calls each reward function in turn with the same completions; parsing is memoised by completion text (an LRU
cache of :func:`wise_rl.formats.parse_completion` with the ``three-stage`` layout), so the second and later rewards
of a batch reuse the first one's work. ``ParsedCompletion`` is frozen, so sharing it is safe.

>>> a = parse_batch(["<think>a</think><answer>{}</answer><d_think>b</d_think>"])[0]
>>> b = parse_batch([[{"role": "assistant", "content": "<think>a</think><answer>{}</answer><d_think>b</d_think>"}]])[0]
>>> a is b, a.format_ok, a.answer is None
(True, True, True)
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from wise_rl.formats import ParsedCompletion, completion_text, parse_completion

CACHE_SIZE = 4096  # > one generation batch of 8 prompts × 8 samples by far; old entries fall out


@lru_cache(maxsize=CACHE_SIZE)
def parse_text(text: str) -> ParsedCompletion:
    """The three-stage parse of ``text`` (memoised)."""
    return parse_completion(text, layout="three-stage")


def parse_batch(completions: Sequence[Any]) -> list[ParsedCompletion]:
    """Parse strings or conversational completions (``[{"role": "assistant", "content": …}]``)."""
    if isinstance(completions, (str, bytes)):
        raise TypeError("completions must be a list of completions, got a single string")
    return [parse_text(completion_text(c)) for c in completions]


def cache_info():
    """Hits / misses of the parse cache (for tests and benchmarks)."""
    return parse_text.cache_info()


def clear_cache() -> None:
    parse_text.cache_clear()
