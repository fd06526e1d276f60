"""Attention supervision of the grounding stage: the target's cells from a hand-drawn mask, the loss on hand-made
attention maps, the collator's extra tensor, and a pre-training run whose supervised head learns to look at the
target."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from wise_rl.testbed.pretrain.attention_supervision import (
    CELLS_KEY,
    CellsCollator,
    attention_loss,
    target_cells,
)


def test_target_cells_marks_the_covered_cells_row_major():
    mask = np.zeros((8, 8), dtype=np.uint8)  # 2×2 grid of 4-px cells
    mask[0:4, 4:8] = 1  # the whole top-right cell (16 px)
    mask[4:6, 0:1] = 1  # 2 px of the bottom-left cell: below min_pixels
    assert target_cells(mask, cell=4, min_pixels=3) == [0.0, 1.0, 0.0, 0.0]
    assert target_cells(mask, cell=4, min_pixels=2) == [0.0, 1.0, 1.0, 0.0]
    small = np.zeros((8, 8), dtype=np.uint8)
    small[7, 7] = 1  # one pixel: the most covered cell is kept whatever the threshold
    assert target_cells(small, cell=4, min_pixels=20) == [0.0, 0.0, 0.0, 1.0]
    assert target_cells(np.zeros((8, 8)), cell=4) == [0.0] * 4


def _batch():
    # one row: [img, img, img, img, q, a0, a1]; labels on a0, a1 (positions 4 and 5 predict them)
    image_token_id = 9
    input_ids = torch.tensor([[9, 9, 9, 9, 1, 2, 3]])
    labels = torch.tensor([[-100, -100, -100, -100, -100, 2, 3]])
    cells = torch.tensor([[0.0, 1.0, 0.0, 0.0]])
    return image_token_id, input_ids, labels, cells


def _attn(rows_at_query):
    a = torch.full((1, 2, 7, 7), 1 / 7)
    for t in (4, 5):
        a[0, 0, t] = torch.tensor(rows_at_query)
    return a


def test_attention_loss_is_minus_log_of_the_target_share_of_image_attention():
    image_token_id, input_ids, labels, cells = _batch()
    on_target = _attn([0.0, 0.5, 0.0, 0.0, 0.5, 0.0, 0.0])  # all image attention on the target cell
    uniform = _attn([0.1, 0.1, 0.1, 0.1, 0.6, 0.0, 0.0])  # a quarter of it
    layer0 = torch.zeros(1, 2, 7, 7)  # layer 0 is not supervised
    loss = attention_loss((layer0, on_target), input_ids, labels, cells, image_token_id)
    assert float(loss) == pytest.approx(0.0, abs=1e-5)
    loss = attention_loss((layer0, uniform, on_target), input_ids, labels, cells, image_token_id)
    assert float(loss) == pytest.approx(math.log(4) / 2, rel=1e-4)
    # head 1 (uniform over the row) is untouched by head=0 and scored by head=1
    loss = attention_loss((layer0, on_target), input_ids, labels, cells, image_token_id, head=1)
    assert float(loss) == pytest.approx(math.log(4), rel=1e-4)
    # a row without target cells (a description row) contributes nothing
    assert float(attention_loss((layer0, uniform), input_ids, labels, torch.zeros(1, 4), image_token_id)) == 0.0


def test_attention_loss_only_looks_where_the_target_is_decided():
    image_token_id, input_ids, labels, cells = _batch()
    layer0 = torch.zeros(1, 2, 7, 7)
    first_on_target = _attn([0.0, 0.5, 0.0, 0.0, 0.5, 0.0, 0.0])
    first_on_target[0, 0, 5] = torch.tensor([0.1, 0.1, 0.1, 0.1, 0.3, 0.3, 0.0])  # the 2nd completion token: a quarter
    kwargs = dict(input_ids=input_ids, labels=labels, cells=cells, image_token_id=image_token_id)
    assert float(attention_loss((layer0, first_on_target), positions=1, **kwargs)) == pytest.approx(0.0, abs=1e-5)
    assert float(attention_loss((layer0, first_on_target), positions=2, **kwargs)) == pytest.approx(
        math.log(4) / 2, rel=1e-4)


def test_attention_loss_names_a_row_with_the_wrong_number_of_image_tokens():
    image_token_id, input_ids, labels, cells = _batch()
    with pytest.raises(ValueError, match="4 image tokens per row"):
        attention_loss((torch.zeros(1, 2, 7, 7),) * 2, input_ids, labels, cells, image_token_id=10)


def test_cells_collator_moves_the_cells_out_of_the_rows_into_a_tensor():
    seen = []

    def inner(examples):
        seen.append([sorted(ex) for ex in examples])
        return {"input_ids": torch.zeros(len(examples), 3)}

    collate = CellsCollator(inner, n_cells=4)
    batch = collate([{"prompt": "p", CELLS_KEY: [0.0, 1.0, 0.0, 0.0]}, {"prompt": "q"}])
    assert seen == [[["prompt"], ["prompt"]]]
    assert batch[CELLS_KEY].tolist() == [[0.0, 1.0, 0.0, 0.0], [0.0] * 4]


def test_stream_rows_carry_the_target_cells_and_none_on_descriptions():
    from wise_rl.testbed.pretrain.rows import DESCRIBE_PROMPT, stream_rows

    rows = stream_rows(seed=0, image_size=112, chunk=8, describe_share=0.3, name_share=0.2, cell=28)
    seen_described = seen_target = 0
    for _ in range(40):
        row = next(rows)
        cells = row[CELLS_KEY]
        assert len(cells) == 16
        if row["prompt"][0]["content"] == DESCRIBE_PROMPT:
            assert sum(cells) == 0
            seen_described += 1
        else:
            assert sum(cells) >= 1
            seen_target += 1
    assert seen_described and seen_target


def test_supervised_pretraining_steers_the_head_to_the_target(tmp_path, tiny_model_dir):
    """A few steps with a large weight: the logged attention term falls, and the saved folder does not pin the
    eager attention the term needed (inference keeps the default)."""
    from wise_rl.models import load_model
    from wise_rl.testbed.pretrain.run import PretrainConfig, pretrain

    card = pretrain(PretrainConfig(out=str(tmp_path / "base"), init=str(tiny_model_dir), max_steps=40, batch_size=8,
                                   lr=2e-2, warmup_steps=2, logging_steps=5, chunk=32, eval_n=0, probe_n=0,
                                   attention_weight=5.0, progress=False, threads=1))
    assert "--attention-weight 5.0" in card["command"]
    terms = [h["attn_loss"] for h in card["loss_history"]]
    assert len(terms) == 8 and sum(terms[-2:]) / 2 < terms[0] - 0.1, terms
    assert "eager" not in (tmp_path / "base" / "config.json").read_text()
    assert load_model(tmp_path / "base").config.text_config._attn_implementation == "sdpa"


def test_word_attention_loss_sends_each_colour_and_kind_word_to_the_cells_that_show_it():
    """Hand-made maps: tokens [img×4, ' red', ' circle', ' green', x]; cells 0,1 red, 2 green; cell 1 a circle.
    ' red' all on red cells → 0; ' circle' half on its cell → log 2; ' green' (no green... then a green cell) a
    quarter → log 4; the loss is their mean over positions, then over layers ≥ 1."""
    from wise_rl.testbed.pretrain.attention_supervision import word_attention_loss

    red, green, circle, other, img = 11, 12, 21, 5, 9
    ids = ([red, green], [circle])  # colour words, kind words (index = COLOURS / KINDS position)
    input_ids = torch.tensor([[img, img, img, img, red, circle, green, other]])
    ignore = -100
    words = torch.tensor([[[0, 0, 1, ignore], [ignore, 0, ignore, ignore]]])  # colours, kinds per cell
    a = torch.full((1, 2, 8, 8), 1 / 8)
    a[0, 1, 4] = torch.tensor([0.5, 0.5, 0.0, 0.0, 0, 0, 0, 0])  # ' red': red cells only
    a[0, 1, 5] = torch.tensor([0.25, 0.25, 0.0, 0.0, 0.5, 0, 0, 0])  # ' circle': half of its image attention
    a[0, 1, 6] = torch.tensor([0.25, 0.25, 0.25, 0.25, 0, 0, 0, 0])  # ' green': a quarter
    layer0 = torch.zeros(1, 2, 8, 8)
    loss = word_attention_loss((layer0, a), input_ids, words, ids, img, head=1)
    assert float(loss) == pytest.approx((0 + math.log(2) + math.log(4)) / 3, rel=1e-4)
    # a word no cell shows is skipped; no word at all gives 0
    words_no_green = words.clone()
    words_no_green[0, 0, 2] = ignore
    loss = word_attention_loss((layer0, a), input_ids, words_no_green, ids, img, head=1)
    assert float(loss) == pytest.approx(math.log(2) / 2, rel=1e-4)
    plain = torch.tensor([[img, img, img, img, other, other, other, other]])
    assert float(word_attention_loss((layer0, a), plain, words, ids, img, head=1)) == 0.0
    with pytest.raises(ValueError, match="4 image tokens per row"):
        word_attention_loss((layer0, a), input_ids, words, ids, image_token_id=10)


def test_word_attention_pretraining_lowers_its_term(tmp_path, tiny_model_dir):
    """A few steps with a large weight: the logged word-region term falls, and the command line records it."""
    from wise_rl.testbed.pretrain.run import PretrainConfig, pretrain

    card = pretrain(PretrainConfig(out=str(tmp_path / "base"), init=str(tiny_model_dir), max_steps=40, batch_size=8,
                                   lr=2e-2, warmup_steps=2, logging_steps=5, chunk=32, eval_n=0, probe_n=0,
                                   word_attention_weight=5.0, progress=False, threads=1))
    assert "--word-attention-weight 5.0" in card["command"]
    assert "word-region attention ν 5" in (tmp_path / "base" / "model_card.md").read_text()
    terms = [h["word_attn_loss"] for h in card["loss_history"]]
    assert len(terms) == 8 and sum(terms[-2:]) / 2 < terms[0] - 0.1, terms
