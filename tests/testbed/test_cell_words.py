"""Words at the vision tokens: each cell's colour and kind from a hand-built scene, the loss on hand-made hidden
states, the tokenizer's word ids, the rows and batches that carry them, and a pre-training run whose term falls."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from wise_rl.testbed.shapeworld import COLOURS, KINDS
from wise_rl.testbed.shapeworld.cell_words import CELL_WORDS_KEY, IGNORE, cell_word_loss, cell_words, word_ids
from wise_rl.testbed.shapeworld.scenes import Scene, Shape


def _square(colour: str, x: int, y: int, size: int) -> Shape:
    return Shape(kind="square", colour=colour, size=size, box=(x, y, x + size - 1, y + size - 1), area=size * size,
                 patch=np.ones((size, size), dtype=bool))


def test_cell_words_name_the_shape_covering_each_cell():
    # 2×2 grid of 8-px cells: a red square fills the top-left cell, a blue one covers 4 px of the bottom-right
    scene = Scene(image=None, shapes=[_square("red", 0, 0, 8), _square("blue", 14, 14, 2)], image_size=16)
    colours, kinds = cell_words(scene, cell=8, min_pixels=4)
    red, blue, square = list(COLOURS).index("red"), list(COLOURS).index("blue"), list(KINDS).index("square")
    assert colours == [red, IGNORE, IGNORE, blue]
    assert kinds == [square, IGNORE, IGNORE, square]
    assert cell_words(scene, cell=8, min_pixels=5)[0] == [red, IGNORE, IGNORE, IGNORE]


def test_word_ids_are_the_single_tokens_of_the_words(tiny_model_dir):
    from wise_rl.models import load_processor

    tokenizer = load_processor(tiny_model_dir).tokenizer
    colours, kinds = word_ids(tokenizer)
    assert [tokenizer.decode([i]).strip() for i in colours] == list(COLOURS)
    assert [tokenizer.decode([i]).strip() for i in kinds] == list(KINDS)

    class Split:
        def encode(self, text, add_special_tokens=False):
            return [1, 2] if "red" in text else [3]

    with pytest.raises(ValueError, match="' red' to be one token"):
        word_ids(Split())


def test_cell_word_loss_is_the_logit_lens_cross_entropy_over_each_word_group():
    # one row [img, img, text]; two colour words and two kind words with orthogonal embeddings
    embedding = torch.eye(4)
    ids = ([0, 1], [2, 3])
    image = torch.tensor([[True, True, False]])
    words = torch.tensor([[[0, IGNORE], [1, IGNORE]]])  # cell 0: colour 0, kind 1; cell 1: no shape
    h = torch.zeros(1, 3, 4)
    h[0, 0] = torch.tensor([2.0, 0.0, 0.0, 2.0])  # colour logits (2, 0), kind logits (0, 2)
    h[0, 1] = torch.tensor([0.0, 9.0, 9.0, 0.0])  # wrong words, but the cell is ignored
    one_layer = cell_word_loss((h, h), image, words, torch.nn.Identity(), embedding, ids)
    expected = 2 * math.log(1 + math.exp(-2.0))  # the right word at logit 2 against 0, in both groups
    assert float(one_layer) == pytest.approx(expected, rel=1e-5)
    uniform = torch.zeros(1, 3, 4)
    two_layers = cell_word_loss((h, h, uniform), image, words, torch.nn.Identity(), embedding, ids)
    assert float(two_layers) == pytest.approx((expected + 2 * math.log(2)) / 2, rel=1e-5)
    nothing = torch.full_like(words, IGNORE)
    assert float(cell_word_loss((h, h), image, nothing, torch.nn.Identity(), embedding, ids)) == 0.0
    with pytest.raises(ValueError, match="2 image tokens per row"):
        cell_word_loss((h, h), torch.tensor([[True, False, False]]), words, torch.nn.Identity(), embedding, ids)


def test_collator_carries_the_words_and_ignores_rows_without():
    from wise_rl.testbed.pretrain.attention_supervision import CellsCollator

    collate = CellsCollator(lambda examples: {"n": len(examples)}, n_cells=2, words=True)
    batch = collate([{"p": 1, CELL_WORDS_KEY: [[0, IGNORE], [3, IGNORE]]}, {"p": 2}])
    assert batch[CELL_WORDS_KEY].tolist() == [[[0, IGNORE], [3, IGNORE]], [[IGNORE] * 2] * 2]
    assert batch[CELL_WORDS_KEY].dtype == torch.long


def test_stream_rows_carry_the_words_of_every_cell_and_the_target_is_among_them():
    from wise_rl.testbed.pretrain.rows import stream_rows
    from wise_rl.testbed.shapeworld import sample_at

    rows = stream_rows(seed=0, image_size=112, chunk=4, describe_share=0.2, name_share=0.2, cell=28,
                       cell_words=True)
    for i in range(8):
        colours, kinds = next(rows)[CELL_WORDS_KEY]
        assert len(colours) == len(kinds) == 16
        sample = sample_at(0, "stream", i, 112)
        target = sample["target_index"]
        # the target is among them: some cell carries the target's colour and kind, as its name says them
        named = {(list(COLOURS)[c], list(KINDS)[k]) for c, k in zip(colours, kinds) if c != IGNORE}
        assert any(sample["concise"].startswith(f"the {c} {k} ") for c, k in named), (i, sample["concise"], named)
        # the cell holding the target's centre carries words (those of the shape covering it most: with an
        # overlap, not always the target's)
        x, y = [(a + b) / 2 for a, b in zip(sample["shape_boxes"][target][:2], sample["shape_boxes"][target][2:])]
        assert colours[int(y // 28) * 4 + int(x // 28)] != IGNORE
        assert sum(c != IGNORE for c in colours) >= len(sample["shape_boxes"]) - 1
    with pytest.raises(ValueError, match="needs the cell size"):
        next(stream_rows(seed=0, image_size=112, chunk=4, cell_words=True))


def test_pretraining_with_words_at_the_vision_tokens_learns_them(tmp_path, tiny_model_dir):
    """A few steps with a large weight and no attention supervision: the logged word term falls, and the card's
    command and stage record the weight."""
    from wise_rl.testbed.pretrain.run import PretrainConfig, pretrain

    card = pretrain(PretrainConfig(out=str(tmp_path / "base"), init=str(tiny_model_dir), max_steps=40, batch_size=8,
                                   lr=2e-2, warmup_steps=2, logging_steps=5, chunk=32, eval_n=0, probe_n=0,
                                   cell_word_weight=1.0, progress=False, threads=1))
    assert "--cell-word-weight 1.0" in card["command"]
    assert card["stages"][-1]["cell_word_weight"] == 1.0
    terms = [h["word_loss"] for h in card["loss_history"]]
    assert len(terms) == 8 and "attn_loss" not in card["loss_history"][0]
    assert sum(terms[-2:]) / 2 < terms[0] - 0.3, terms
