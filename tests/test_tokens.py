"""One think-token count (wise_rl.tokens): the SFT data statistics, the rewards, the training logs (which the demo's
GRPO trend reads) and evaluation count the same text the same way, with a tokenizer and without one (evaluation
then reports nothing rather than words)."""

from __future__ import annotations

import pickle

import pytest

from wise_rl import tokens

TEXT = "the red pentagon at  the\tbottom"  # 6 whitespace words (runs of spaces and a tab count once)


@pytest.fixture(scope="module")
def processor(tiny_model_dir):
    from wise_rl.models import load_processor

    return load_processor(tiny_model_dir)


def test_the_fallback_counts_whitespace_words_and_empty_text_is_zero():
    assert tokens.count_tokens(TEXT) == 6
    assert tokens.count_tokens("") == 0 and tokens.TokenCounter().count(["", TEXT]) == [0, 6]


def test_a_tokenizer_counts_its_ids_without_special_tokens_and_a_processor_is_read_through(processor):
    ids = processor.tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    assert len(ids) > 0
    assert tokens.count_tokens(TEXT, processor.tokenizer) == len(ids) == tokens.count_tokens(TEXT, processor)
    counter = tokens.TokenCounter(processor)
    assert counter.count([TEXT, TEXT]) == [len(ids)] * 2
    assert pickle.loads(pickle.dumps(counter)).count([TEXT]) == [len(ids)]  # pickles without its loaded tokenizer


@pytest.mark.parametrize("with_tokenizer", [False, True])
def test_sft_stats_rewards_training_logs_and_eval_agree(processor, with_tokenizer):
    from wise_rl.data.sft import token_counter
    from wise_rl.evaluate.scoring import count_tokens as eval_count
    from wise_rl.training.rewards import completion_lengths

    tok = processor.tokenizer if with_tokenizer else None
    expected = tokens.count_tokens(TEXT, tok)
    completion = f"<think>{TEXT}</think><answer>{{}}</answer><d_think>a b c</d_think>"
    assert token_counter(tok)(TEXT) == expected
    assert eval_count(tok, None) is None
    # evaluation counts by the same rule, but reports no word count as think tokens: without a tokenizer, not measured
    assert eval_count(tok, TEXT) == (expected if with_tokenizer else None)
    assert completion_lengths(completion, tok)["think"] == expected
    assert completion_lengths(completion, tok)["d_think"] == tokens.count_tokens("a b c", tok)
    from rewards.distillation import TokenCounter as RewardCounter

    assert RewardCounter is tokens.TokenCounter and RewardCounter(tok).count([TEXT]) == [expected]
