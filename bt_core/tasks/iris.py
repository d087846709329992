"""Iris: classify a flower from its four measurements, with chain of thought (the paper's third task).

The data comes from scikit-learn, so the task runs offline. The test split is fixed and
train/validation follow the run's seed, all stratified by species. The metric is accuracy on
the species name; a prediction that names more than one species counts as wrong.
"""

from __future__ import annotations

from typing import Any

from bt_core.modules import ChainOfThought, Example, Module, Prediction
from bt_core.signatures import Field, Signature
from bt_core.tasks.base import Sizes, Splits, Task, register, stratified_split

SPECIES = ("setosa", "versicolor", "virginica")
TEST_SEED = 0  # the test split does not move with the run's seed: strategies and seeds share it
FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")

SIGNATURE = Signature(
    inputs=tuple(Field(f, "in cm") for f in FEATURES),
    outputs=(Field("species", "one of: setosa, versicolor, virginica"),),
    instructions="Given the measurements of an iris flower, decide its species: setosa, versicolor or virginica.",
)


class IrisProgram(Module):
    def __init__(self) -> None:
        self.classify = ChainOfThought(SIGNATURE, max_new_tokens=96)

    def forward(self, **features: Any) -> Prediction:
        return self.classify(**features)


@register
class Iris(Task):
    name = "iris"
    description = "Iris species from 4 measurements; 1 chain-of-thought module; accuracy"
    sizes = {
        "smoke": Sizes(train=10, val=10, test=15),
        "default": Sizes(train=15, val=15, test=30),  # the DSPy peer measurement's sizes
        "paper": Sizes(train=50, val=50, test=50, p_train=15, p_val=35),
    }

    def load(self, train: int, val: int, test: int, seed: int) -> Splits:
        from sklearn.datasets import load_iris

        data = load_iris()
        rows = [Example({**dict(zip(FEATURES, map(float, x))), "species": SPECIES[y]}).with_inputs(*FEATURES)
                for x, y in zip(data.data, data.target)]
        species = lambda e: e["species"]
        (test_split,) = stratified_split(rows, (test,), TEST_SEED, label=species)
        rest = [r for r in rows if r not in test_split]
        return Splits(*stratified_split(rest, (train, val), seed, label=species), test_split)

    def program(self) -> Module:
        return IrisProgram()

    def metric(self, example: Example, prediction: Prediction, trace: Any = None) -> float:
        named = {s for s in SPECIES if s in str(prediction.get("species", "")).lower()}
        return float(named == {example["species"]})
