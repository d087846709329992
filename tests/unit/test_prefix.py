"""The shared-prefix arithmetic behind prefix KV reuse on transformers (no model needed)."""

from __future__ import annotations

import pytest

from bt_core.lm.prefix import GROUP_COST, Group, agreement, plan, shared_prefix


@pytest.mark.parametrize("a, b, n", [([1, 2, 3], [1, 2, 4], 2), ([1, 2], [1, 2, 3], 2), ([5], [6], 0), ([], [1], 0)])
def test_agreement_counts_the_leading_tokens_two_sequences_share(a, b, n):
    assert agreement(a, b) == agreement(b, a) == n


@pytest.mark.parametrize("rows, n", [
    ([[1, 2, 3, 4], [1, 2, 3, 5], [1, 2, 9]], 2),  # the least any row shares with the first
    ([[1, 2, 3], [1, 2, 3]], 2),  # identical prompts: each keeps its last token to predict from
    ([[1, 2, 3, 4]], 3),  # one prompt: all but its last token
    ([[7], [7, 8]], 0),
])
def test_shared_prefix_leaves_every_row_a_token_of_its_own(rows, n):
    assert shared_prefix(rows) == n


def test_one_prefix_for_rows_that_share_it():
    system, demos = [1, 2], list(range(10, 90))
    rows = [system + demos + [n, n + 1] for n in (95, 91, 93)]
    assert plan(rows) == ([Group([1, 2, 0], 82)], 3 * 84 - (82 + 3 * 2))


def test_a_row_that_parts_early_gets_its_own_group_and_the_rest_keep_their_long_prefix():
    """A teacher's batch: the row whose example is the first demo runs without it. One group would
    share only the system prompt and prefill both demos in every row."""
    system, first, second = [1, 2], list(range(10, 210)), list(range(210, 410))
    rows = [system + first + second + [491], system + second + [492], system + first + second + [493]]
    groups, saved = plan(rows)
    assert groups == [Group([0, 2], 402), Group([1], 202)]
    one_group = 2 + 3 * (403 - 2)
    assert saved == 3 * 403 - (402 + 2 * 1 + (202 - 2) + 1 + GROUP_COST) > 3 * 403 - one_group


def test_padding_alone_does_not_split_a_batch_whose_rows_share_their_prefix():
    """A candidate's batch of questions 40 to 85 tokens long: groups of similar lengths would save a
    little padding, less than another group's forward passes cost (measured on GSM8K's batches)."""
    demos = list(range(10, 400))
    rows = [demos + [900 + k] + list(range(500, 540 + 3 * k)) for k in range(16)]
    assert plan(rows)[0] == [Group(list(range(16)), 390)]
