"""The shared-prefix arithmetic behind prefix KV reuse on transformers (no model needed)."""

from __future__ import annotations

import pytest

from bt_core.lm.prefix import agreement, shared_prefix


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
