"""Cell-word supervision for the grounding stage: the language model says, at each vision token, what is there.

A vision stage makes colour and kind linearly readable from the merged vision tokens (99 % / 92 %), yet a 3-layer
language model trained on answers alone names the queried shape's colour barely above chance: it finds the shape
and does not turn what it sees into the word. This term asks for the word where the shape is. At every image
position ``t`` whose cell a shape covers by at least ``min_pixels``, after every layer ℓ ≥ 1:

    L_words = mean_ℓ [ CE( norm(h_ℓ[t]) · E[colour words]ᵀ, colour(t) ) + CE( norm(h_ℓ[t]) · E[kind words]ᵀ, kind(t) ) ]

``h_ℓ`` is the residual stream after layer ℓ, ``norm`` the model's final norm and ``E`` its (tied) word
embeddings: the logit lens (nostalgebraist, "interpreting GPT: the logit lens", 2020) over the colour words and
over the kind words of ShapeWorld, each a cross-entropy of its own so neither competes with the other or with the
rest of the vocabulary. Every layer carries the words, so a head that attends to the shape at any depth reads them
in the directions the output embedding scores. Measured in ``docs/testbed.md`` ("the words for what it sees").
"""

from __future__ import annotations

import numpy as np
import torch

CELL_WORDS_KEY = "cell_words"
IGNORE = -100  # a cell no shape covers: no target (torch's cross-entropy ignore index)


def cell_words(scene, cell: int, min_pixels: int = 20) -> list[list[int]]:
    """``[colours, kinds]``, each ``(G²,)`` row-major over the ``cell``-px cells of ``scene``: the index in
    ``COLOURS`` / ``KINDS`` of the shape covering the cell most (:func:`wise_rl.testbed.pretrain.vision_stage.cell_targets`),
    :data:`IGNORE` where none covers ``min_pixels``."""
    from wise_rl.testbed.pretrain.vision_stage import cell_targets
    from wise_rl.testbed.shapeworld import COLOURS, KINDS

    targets = cell_targets(scene, cell, min_pixels)
    colour = np.where(targets["colour"] < len(COLOURS), targets["colour"], IGNORE)
    kind = np.where(targets["kind"] < len(KINDS), targets["kind"], IGNORE)
    return [colour.tolist(), kind.tolist()]


def word_ids(tokenizer) -> tuple[list[int], list[int]]:
    """Token ids of ``' red'``, … (``COLOURS`` order) and ``' circle'``, … (``KINDS`` order), as they follow
    ``'the'`` in a name. A word that is not one token raises ``ValueError`` naming it."""
    from wise_rl.testbed.shapeworld import COLOURS, KINDS

    def one(word: str) -> int:
        ids = tokenizer.encode(f" {word}", add_special_tokens=False)
        if len(ids) != 1:
            raise ValueError(f"cell-word supervision needs ' {word}' to be one token of the tokenizer, got {ids}")
        return ids[0]

    return [one(w) for w in COLOURS], [one(w) for w in KINDS]


def cell_word_loss(hidden_states, image: torch.Tensor, words: torch.Tensor, norm, embedding: torch.Tensor,
                   ids: tuple[list[int], list[int]]) -> torch.Tensor:
    """The term above. ``hidden_states``: the model's tuple (embeddings, then after each layer), each ``(B, T, D)``;
    ``image`` ``(B, T)`` bool, the image positions (G² per row, row-major); ``words`` ``(B, 2, G²)`` from
    :func:`cell_words` (all :data:`IGNORE` for a row without one); ``embedding`` ``(V, D)``. Returns a scalar, 0 when
    no cell has a word."""
    labels = words.transpose(0, 1).reshape(2, -1)  # (2, B·G²) in the order image positions are gathered
    if int(image.sum()) != labels.shape[1]:
        raise ValueError(f"cell-word supervision needs {words.shape[-1]} image tokens per row, got "
                         f"{image.sum(-1).tolist()}")
    if not bool((labels != IGNORE).any()):
        return hidden_states[0].new_zeros(())
    groups = [(embedding[vocab].T, labels[which] != IGNORE, labels[which]) for which, vocab in enumerate(ids)]
    groups = [(words_t, keep, target[keep]) for words_t, keep, target in groups if keep.any()]
    layers = hidden_states[1:]
    total = 0.0
    for h in layers:
        h = norm(h[image])
        for words_t, keep, target in groups:
            total = total + torch.nn.functional.cross_entropy(h[keep] @ words_t, target)
    return total / len(layers)
