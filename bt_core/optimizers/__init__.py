"""Optimizers: each `compile(student, *, trainset, valset=None)` returns a new program."""

from bt_core.optimizers.better_together import BetterTogether
from bt_core.optimizers.bootstrap import BootstrapFewShot, LabeledFewShot
from bt_core.optimizers.finetune import BootstrapFinetune
from bt_core.optimizers.random_search import BootstrapFewShotWithRandomSearch

__all__ = ["BetterTogether", "BootstrapFewShot", "BootstrapFewShotWithRandomSearch",
           "BootstrapFinetune", "LabeledFewShot"]
