"""When a completion is done: its last output field's `Label: value` line is complete.

Every backend stops generation by this rule (the adapter asks for it through
SamplingParams.stop_after_field), so it lives here, under the backends, not in the adapter above them.
"""

from __future__ import annotations

import re


def field_closed(text: str, label: str) -> bool:
    """True once `label:` has a non-empty value followed by a line break."""
    match = re.search(rf"(?:^|\n)[-*#\s]*\**{re.escape(label)}\**\s*:\**[ \t]*\S[^\n]*\n", text, re.I)
    return match is not None


def truncate_after_field(text: str, label: str, prefill: str = "") -> str:
    """`text` cut right after `label`'s line, which may have begun in the turn's prefill."""
    match = re.search(rf"(?:^|\n)[-*#\s]*\**{re.escape(label)}\**\s*:\**[ \t]*\S[^\n]*", prefill + text, re.I)
    return text[: max(match.end() - len(prefill), 0)] if match else text
