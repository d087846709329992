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
    system, first, second = [1, 2], list(range(10, 50)), list(range(50, 90))
    rows = [system + first + second + [91], system + second + [92], system + first + second + [93]]
    groups, saved = plan(rows)
    assert groups == [Group([0, 2], 82), Group([1], 42)]
    one_group = 2 + 3 * (83 - 2)
    assert saved == 3 * 83 - (82 + 2 * 1 + (42 - 2) + 1 + GROUP_COST) > 3 * 83 - one_group


def test_groups_cost_more_than_a_few_tokens_so_short_differences_stay_in_one_batch():
    rows = [[1, 2, 3, 4, 5, 6], [1, 2, 3, 9, 9, 9], [1, 2, 3, 4, 5, 7]]
    assert plan(rows)[0] == [Group([0, 2, 1], 3)]
