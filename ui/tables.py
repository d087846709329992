"""Pure data shaping for the pages: strategy order, example filters, program text, estimates.

No Streamlit here, so every rule (what a delta is, which examples "disagree") is testable
on plain DataFrames.
"""

from __future__ import annotations

import difflib
from typing import Any, Iterable

import pandas as pd

from bt_core.adapter import format_fields
from bt_core.signatures import Signature
from bt_core.strategy import parse_strategy

STRATEGY_ORDER = ("vanilla", "p", "w", "p -> w", "w -> p", "p -> w -> p")


def strategy_order(strategies: Iterable[str]) -> list[str]:
    """The paper's strategies in its order, then any other chain by length."""
    present = set(strategies)
    others = sorted(present - set(STRATEGY_ORDER), key=lambda s: (len(parse_strategy(s)), s))
    return [s for s in STRATEGY_ORDER if s in present] + others


def example_matrix(scores: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per example index, one score column per view; NaN where a view lacks the example."""
    return pd.DataFrame({title: frame.set_index("example_index")["score"]
                         for title, frame in scores.items()}).sort_index()


def filter_examples(matrix: pd.DataFrame, failures: bool = False, disagree: bool = False,
                    matching: set[int] | None = None) -> pd.DataFrame:
    """Failures: some view scored below 1. Disagree: the views' scores differ."""
    keep = pd.Series(True, index=matrix.index)
    if failures:
        keep &= (matrix < 1).any(axis=1)
    if disagree:
        keep &= matrix.nunique(axis=1, dropna=False) > 1
    if matching is not None:
        keep &= matrix.index.isin(list(matching))
    return matrix[keep]


def program_text(state: dict[str, Any]) -> str:
    """A program's prompts as text, a block per module (instructions, then demos as the LM sees them)."""
    blocks = []
    for module, predictor in state.items():
        signature = Signature.from_dict(predictor["signature"])
        lines = [f"[{module}]", f"instructions: {signature.instructions}"]
        for number, demo in enumerate(predictor["demos"], 1):
            fields = format_fields((*signature.inputs, *signature.outputs), demo)
            lines += [f"demo {number}:", *(f"  {line}" for line in fields.splitlines())]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def program_diff(before: str, after: str, before_name: str, after_name: str) -> str:
    lines = difflib.unified_diff(before.splitlines(), after.splitlines(), before_name, after_name, lineterm="")
    return "\n".join(lines)


def duration(seconds: float | None) -> str:
    if seconds is None or pd.isna(seconds):
        return ""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def percent(score: float | None) -> str:
    return "—" if score is None or pd.isna(score) else f"{100 * score:.1f}"


def candidate_val(program: dict[str, Any]) -> str:
    """A program row's validation score; a candidate whose scoring stopped early shows what is known
    of it, never the mean of the examples it was scored on as if it were its score."""
    ceiling = program["val_ceiling"]
    if ceiling is None or pd.isna(ceiling):
        return percent(program["val_score"])
    return f"stopped at {int(program['val_scored'])} of {int(program['val_size'])}, at most {percent(ceiling)}%"
