"""Attention supervision for the grounding stage of the ShapeWorld base: tell the language model where to look.

A grounding row's loss is the cross-entropy of its answer tokens; the only gradient that moves attention towards
the queried shape comes back through the value path of whatever the model attended to, which is weak: a 3-layer
model trained that way learns to box *a* shape (by place) long before it learns to box the queried one. This adds,
for rows whose target is known (grounding and naming rows), a direct term on the attention itself:

    L = CE(completion tokens) + λ · mean_{rows, positions, layers ℓ ≥ 1} −log( Σ_{j ∈ target cells} a_ℓ,h(t, j)
                                                                              / Σ_{j ∈ image tokens} a_ℓ,h(t, j) )

where ``a_ℓ,h(t, ·)`` is the attention of head ``h`` (default 0) of layer ℓ at each position ``t`` that predicts one
of the first :data:`FIRST_TOKENS` completion tokens (where the target is decided), and the target cells are the
merged vision tokens (``patch_size · merge_size`` px cells, row-major as the processor orders them) that the
target's mask covers by at least ``min_pixels`` (the most covered cell always). Only one head per layer is steered,
and only its share of the image attention, so the others stay free to read the question and the head is free to
attend to text. Layer 0 is left alone: at that depth an answer position
does not yet know the question. Attention supervision of this kind is an old tool of grounded VQA (e.g. Qiao et al.,
"Exploring Human-like Attention Supervision in Visual Question Answering", AAAI 2018).

A second term, :func:`word_attention_loss` (``--word-attention-weight``), steers another head at every colour or
kind word of the text to the cells that show it, so the words of a question look up what they name.

The terms need the attention weights, so the text model runs with eager attention while training
(:func:`use_eager_attention`); inference is unchanged.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

CELLS_KEY = "target_cells"
# Supervised positions: those predicting the first completion tokens, where the target is decided. Later ones
# need not look (the coordinates already written say where the target is), and a term averaged over all of them
# is met by copying those (docs/testbed.md, "where it looks"). 12 tokens reach past the bbox's first coordinate and
# cover a whole naming answer.
FIRST_TOKENS = 12
# Word-region attention steers another head of head 0's key/value group (GQA pairs heads 0 and 1 in the presets):
# keys that tell colours apart for it are keys head 0 can use at the answer.
WORD_HEAD = 1


def target_cells(mask: np.ndarray, cell: int, min_pixels: int = 20) -> list[float]:
    """``(G²,)`` 0/1 weights, row-major, of the ``cell``-px cells the ``mask`` (H×W, nonzero = target) covers by at
    least ``min_pixels``; the most covered cell is always 1. An empty mask gives all zeros (no supervision)."""
    from wise_rl.testbed.pretrain.vision_stage import cell_pixel_counts

    counts = cell_pixel_counts(mask, cell)
    out = (counts >= min_pixels).astype(np.float32)
    if counts.max() > 0:
        out[int(counts.argmax())] = 1.0
    return out.tolist()


class CellsCollator:
    """Wraps a prompt–completion collator: takes each row's :data:`CELLS_KEY` out before it and returns it as a
    ``(B, G²)`` float tensor next to the batch (rows without one get zeros: no supervision); with ``words``, the
    same for :data:`~wise_rl.testbed.shapeworld.cell_words.CELL_WORDS_KEY`, a ``(B, 2, G²)`` long tensor (rows without one:
    all ignored)."""

    def __init__(self, collator, n_cells: int, words: bool = False):
        self.collator, self.n_cells, self.words = collator, n_cells, words

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        from wise_rl.testbed.shapeworld.cell_words import CELL_WORDS_KEY, IGNORE

        cells = [ex.pop(CELLS_KEY, None) or [0.0] * self.n_cells for ex in examples]
        words = [ex.pop(CELL_WORDS_KEY, None) for ex in examples]  # out of the rows either way
        batch = self.collator(examples)
        batch[CELLS_KEY] = torch.tensor(cells, dtype=torch.float32)
        if self.words:
            batch[CELL_WORDS_KEY] = torch.tensor([w or [[IGNORE] * self.n_cells] * 2 for w in words],
                                                 dtype=torch.long)
        return batch


def attention_loss(attentions, input_ids: torch.Tensor, labels: torch.Tensor, cells: torch.Tensor,
                   image_token_id: int, head: int = 0, positions: int | None = FIRST_TOKENS,
                   eps: float = 1e-6) -> torch.Tensor:
    """The supervision term above: ``attentions`` is the model's tuple of ``(B, H, T, T)`` weights per layer,
    ``labels`` ``(B, T)`` with -100 outside the completion, ``cells`` ``(B, G²)``. Returns a scalar (0 when no row
    has target cells). Every row must hold exactly G² image tokens (one image), else ``ValueError``."""
    image = input_ids == image_token_id
    n_img = image.sum(-1)
    rows = cells.sum(-1) > 0
    if not rows.any() or len(attentions) < 2:
        return attentions[0].new_zeros(())
    if bool((n_img[rows] != cells.shape[1]).any()):
        raise ValueError(f"attention supervision needs {cells.shape[1]} image tokens per row (one image at the "
                         f"processor's grid), got {n_img.tolist()}")
    weights = torch.zeros(image.shape, dtype=attentions[0].dtype, device=input_ids.device)
    weights[image & rows[:, None]] = cells[rows].to(weights.dtype).flatten()
    # position t predicts token t + 1: supervise the positions whose next token is a completion token
    query = torch.zeros_like(image)
    query[:, :-1] = labels[:, 1:] != -100
    query &= rows[:, None]
    if positions is not None:  # only where the target is still to be decided (see FIRST_TOKENS)
        query &= query.cumsum(-1) <= positions
    return _share_loss(attentions, image, weights[:, None, :], query, head, eps)


def _share_loss(attentions, image: torch.Tensor, keys: torch.Tensor, query: torch.Tensor, head: int,
                eps: float) -> torch.Tensor:
    """mean over layers ℓ ≥ 1 of the mean over ``query`` positions of −log(share of head ``head``'s image
    attention on ``keys``); ``keys`` (B, 1 or T, T) weights over key positions; 0 when no position is queried."""
    if not query.any():
        return attentions[0].new_zeros(())
    total = 0.0
    for layer in attentions[1:]:
        a = layer[:, head]  # (B, T, T)
        on_image = (a * image[:, None, :]).sum(-1)
        on_keys = (a * keys).sum(-1)
        total = total - torch.log((on_keys / on_image.clamp_min(eps)).clamp_min(eps))[query].mean()
    return total / (len(attentions) - 1)


def word_attention_loss(attentions, input_ids: torch.Tensor, words: torch.Tensor,
                        ids: tuple[list[int], list[int]], image_token_id: int, head: int = WORD_HEAD,
                        eps: float = 1e-6) -> torch.Tensor:
    """Word-region attention: at every position whose token is a colour word or a kind word (``ids``, from
    :func:`wise_rl.testbed.shapeworld.cell_words.word_ids`), head ``head`` of each layer ℓ ≥ 1 puts its image attention on the
    cells that show that word (``words`` ``(B, 2, G²)``, :func:`wise_rl.testbed.shapeworld.cell_words.cell_words`):

        L = mean_{word positions t, layers ℓ ≥ 1} −log( Σ_{j: cell j shows word(t)} a_ℓ,h(t, j) / Σ_{j ∈ image} a_ℓ,h(t, j) )

    so ' purple', wherever it is written (question, name, rationale), looks up the purple shapes, as phrase-region
    alignment does in grounded pre-training (GLIP, Li et al. 2022). A word no cell shows ('not a triangle' in a
    scene without one) is skipped. Returns a scalar, 0 when no position qualifies."""
    image = input_ids == image_token_id
    if len(attentions) < 2:
        return attentions[0].new_zeros(())
    if bool((image.sum(-1) != words.shape[-1]).any()):
        raise ValueError(f"word attention needs {words.shape[-1]} image tokens per row, got {image.sum(-1).tolist()}")
    b, t = image.shape
    cells = torch.zeros(b, t, t, dtype=torch.bool, device=input_ids.device)  # (B, T query, T key)
    query = torch.zeros_like(image)
    for which, vocab in enumerate(ids):  # 0: colour words, 1: kind words
        match = input_ids[..., None] == torch.as_tensor(vocab, device=input_ids.device)  # (B, T, |vocab|)
        hit = match.any(-1)  # positions holding such a word
        if not hit.any():
            continue
        shows = words[:, which, None, :] == match.float().argmax(-1)[..., None]  # (B, T, G²): cell shows word(t)
        cells[hit[..., None] & image[:, None, :]] = shows[hit].flatten()
        query |= hit
    query &= cells.any(-1)
    return _share_loss(attentions, image, cells.to(attentions[0].dtype), query, head, eps)


def use_eager_attention(model) -> None:
    """Eager attention (the only implementation that returns its weights; the tower too, which is then asked for
    them and would warn under sdpa)."""
    model.set_attn_implementation({"text_config": "eager", "vision_config": "eager"})


def supervised_trainer_class(weight: float, head: int = 0, word_weight: float = 0.0,
                             word_attention_weight: float = 0.0):
    """A ``transformers.Trainer`` subclass whose loss adds ``weight`` × :func:`attention_loss`, ``word_weight`` ×
    :func:`wise_rl.testbed.shapeworld.cell_words.cell_word_loss` and ``word_attention_weight`` × :func:`word_attention_loss`;
    their running means are logged as ``attn_loss``, ``word_loss`` and ``word_attn_loss``."""
    from transformers import Trainer

    from wise_rl.testbed.shapeworld.cell_words import CELL_WORDS_KEY, cell_word_loss, word_ids

    class SupervisedTrainer(Trainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._sums: dict[str, list[float]] = {}  # term name -> [running sum, count] since the last log

        def _add(self, name: str, term: torch.Tensor) -> None:
            total = self._sums.setdefault(name, [0.0, 0])
            total[0] += float(term.detach())
            total[1] += 1

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            cells = inputs.pop(CELLS_KEY)
            words = inputs.pop(CELL_WORDS_KEY, None)
            outputs = model(**inputs, output_attentions=bool(weight or word_attention_weight),
                            output_hidden_states=bool(word_weight))
            unwrapped = self.accelerator.unwrap_model(model)
            loss = outputs.loss
            if (word_weight or word_attention_weight) and not hasattr(self, "_word_ids"):
                self._word_ids = word_ids(self.processing_class.tokenizer)
            if weight:
                term = attention_loss(outputs.attentions, inputs["input_ids"], inputs["labels"], cells,
                                      unwrapped.config.image_token_id, head)
                self._add("attn_loss", term)
                loss = loss + weight * term
            if word_weight:
                image = inputs["input_ids"] == unwrapped.config.image_token_id
                term = cell_word_loss(outputs.hidden_states, image, words, unwrapped.model.language_model.norm,
                                      unwrapped.get_input_embeddings().weight, self._word_ids)
                self._add("word_loss", term)
                loss = loss + word_weight * term
            if word_attention_weight:
                term = word_attention_loss(outputs.attentions, inputs["input_ids"], words, self._word_ids,
                                           unwrapped.config.image_token_id)
                self._add("word_attn_loss", term)
                loss = loss + word_attention_weight * term
            return (loss, outputs) if return_outputs else loss

        def log(self, logs, *args, **kwargs):
            if "loss" in logs:
                for name, (total, n) in self._sums.items():
                    if n:
                        logs[name] = round(total / n, 4)
                self._sums = {}
            super().log(logs, *args, **kwargs)

    return SupervisedTrainer
