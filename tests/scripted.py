"""A scripted Iris 'model' for unit tests: deterministic, format-aware, and trainable.

Zero-shot it rambles (no parsable fields), like the real small model, and asked to continue
at the field's label it ends its turn there (so it stays a parse failure); with demos it
answers in the format, by a petal-length rule that is right for setosa and virginica but calls
every versicolor 'virginica'; trained on conversations it answers versicolor correctly too.
"""

from __future__ import annotations

import re

from bt_core.lm.scripted import ScriptedLM


def iris_script(messages, trained_on) -> str:
    if messages[-1]["role"] == "assistant":
        return ""
    user = messages[-1]["content"]
    petal = float(re.search(r"Petal Length: ([\d.]+)", user).group(1))
    has_demos = len(messages) > 2
    if not has_demos and not trained_on:
        return "The iris is a lovely flower that grows in gardens."
    species = "setosa" if petal < 2.5 else "virginica"
    if trained_on and 2.5 <= petal < 4.9:
        species = "versicolor"
    return f"Reasoning: petal length is {petal}\nSpecies: {species}"


def scripted_iris_lm(**kwargs) -> ScriptedLM:
    return ScriptedLM(iris_script, name="scripted-iris", **kwargs)


def lost_with_demos(messages, trained_on) -> str:
    """Right by the three-class petal rule zero-shot, rambling with demos: zero-shot, the first
    candidate of a random search, is its best, and every later one fails from its first example."""
    if len(messages) > 2:
        return "The iris is a lovely flower that grows in gardens."
    return iris_script(messages, trained_on=[[]])


def counting(script) -> tuple:
    """(the script, the list of conversations it was called with), to count LM calls."""
    calls: list = []

    def counted(messages, trained_on) -> str:
        calls.append(messages)
        return script(messages, trained_on)
    return counted, calls
