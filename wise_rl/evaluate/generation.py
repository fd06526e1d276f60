"""Batched greedy generation for evaluation: :class:`HFGenerator` (a Qwen2.5-VL model and processor, each row stopped
at its prompt template's stop string and cut right after it), :class:`Generation` (completion, generated tokens,
latency), the chat turn a prompt becomes, and the square frame a processor pins (:func:`processor_model_size`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image

from wise_rl import formats, frames


def cut_at_stop(text: str, stop: str | None) -> str:
    """``text`` cut right after the first occurrence of ``stop`` (unchanged when absent or ``stop`` is None)."""
    if not stop:
        return text
    k = text.find(stop)
    return text if k < 0 else text[: k + len(stop)]


def processor_model_size(processor, default: int = frames.DEFAULT_MODEL_SIZE) -> int:
    """The square frame a model answers in: √min_pixels when the image processor pins min = max pixels to a
    square (the tiny ShapeWorld models: 112), else ``default`` (840 for real checkpoints)."""
    ip = getattr(processor, "image_processor", None)
    lo, hi = getattr(ip, "min_pixels", None), getattr(ip, "max_pixels", None)
    size = getattr(ip, "size", None)
    if (lo is None or hi is None) and size is not None:  # transformers 5.x keeps them in size (a SizeDict)
        get = size.get if isinstance(size, dict) else (lambda k: getattr(size, k, None))
        lo, hi = get("shortest_edge"), get("longest_edge")
    if lo and hi and lo == hi and math.isqrt(int(lo)) ** 2 == int(lo):
        return math.isqrt(int(lo))
    return default


def chat_messages(prompt_text: str) -> list[dict[str, Any]]:
    """One user turn: the image, then the prompt text (as TRL's conversational VLM rows put it)."""
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt_text}]}]


@dataclass
class Generation:
    completion: str  # cut right after the stop string
    completion_tokens: int  # tokens the model generated for this row (stop/eos token included, padding not)
    latency_s: float  # batch generate time / batch size


class HFGenerator:
    """Batched greedy generation with a Qwen2.5-VL model and processor, stopping each row at ``stop``.

    Left padding; ``model.generate(do_sample=False, stop_strings=[stop], tokenizer=...)``: each row finishes on its
    own when its text contains the stop string (or eos), and its text is cut right after the stop string.
    """

    def __init__(self, model, processor, prompt: str, max_new_tokens: int = 1024, stop: str | None = "default"):
        if prompt not in formats.PROMPT_SPECS:
            raise ValueError(f"unknown prompt {prompt!r}; known: {', '.join(formats.available_prompts())}")
        self.model, self.processor, self.prompt = model, processor, prompt
        self.max_new_tokens = int(max_new_tokens)
        self.stop = formats.PROMPT_SPECS[prompt]["stop"] if stop == "default" else stop
        self.tokenizer = processor.tokenizer
        self.tokenizer.padding_side = "left"
        # special tokens that are not format tags are stripped from decoded text
        self._specials = [t for t in self.tokenizer.all_special_tokens if t not in formats.TAGS]
        eos = model.generation_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        self._eos = set(eos if isinstance(eos, list) else [eos])
        self._pad = self.tokenizer.pad_token_id

    def prompt_texts(self, queries: Sequence[str]) -> list[str]:
        return [
            self.processor.apply_chat_template(
                chat_messages(formats.render_prompt(self.prompt, q)), add_generation_prompt=True, tokenize=False
            )
            for q in queries
        ]

    def _row_length(self, ids: list[int]) -> int:
        """Generated tokens of one row: up to the first eos (included) or the first padding (excluded)."""
        for k, t in enumerate(ids):
            if t == self._pad and t not in self._eos:
                return k
            if t in self._eos:
                if t == self._pad and self.stop and self.stop in self._decode(ids[:k]):
                    return k  # padding after a stop-string finish (pad == eos)
                return k + 1
        return len(ids)

    def _decode(self, ids: Sequence[int]) -> str:
        text = self.tokenizer.decode(list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False)
        for tok in self._specials:
            text = text.replace(tok, "")
        return text

    def __call__(self, images: Sequence[Image.Image], queries: Sequence[str]) -> list[Generation]:
        import torch

        texts = self.prompt_texts(queries)
        inputs = self.processor(text=texts, images=list(images), padding=True, return_tensors="pt")
        inputs = inputs.to(self.model.device)
        kwargs: dict[str, Any] = dict(
            do_sample=False, max_new_tokens=self.max_new_tokens, pad_token_id=self._pad,
            temperature=None, top_p=None, top_k=None,
        )
        if self.stop:
            kwargs.update(stop_strings=[self.stop], tokenizer=self.tokenizer)
        start = time.perf_counter()
        with torch.inference_mode():
            out = self.model.generate(**inputs, **kwargs)
        elapsed = time.perf_counter() - start
        new = out[:, inputs["input_ids"].shape[1]:].tolist()
        results = []
        for ids in new:
            n = self._row_length(ids)
            text = cut_at_stop(self._decode(ids[:n]), self.stop)
            results.append(Generation(completion=text, completion_tokens=n, latency_s=elapsed / len(new)))
        return results
