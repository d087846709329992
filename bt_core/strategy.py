"""Strategy strings: "vanilla", "p", "w -> p", "p -> w -> p", any chain of optimizer names."""

from __future__ import annotations

STEP_NAMES = ("p", "w")


def parse_strategy(text: str, valid: tuple[str, ...] = STEP_NAMES) -> list[str]:
    """'p -> w -> p' -> ['p', 'w', 'p']; 'vanilla' -> []."""
    cleaned = text.strip()
    if not cleaned:
        raise ValueError(f"empty strategy; use 'vanilla' or a chain of {', '.join(valid)} like 'p -> w -> p'")
    if cleaned.lower() == "vanilla":
        return []
    steps = [part.strip() for part in cleaned.split("->")]
    for step in steps:
        if step not in valid:
            raise ValueError(f"unknown strategy step {step!r} in {text!r}; valid: {', '.join(valid)} "
                             "(joined by '->', or 'vanilla')")
    return steps


def format_strategy(steps: list[str]) -> str:
    return " -> ".join(steps) if steps else "vanilla"
