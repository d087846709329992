"""BetterTogether Studio's library: modular LM programs, their optimizers, and the run engine.

The public names below are the concepts a user composes: a Signature says what a module
reads and writes, Predict/ChainOfThought call the LM, a Module composes them, and the
optimizers in `bt_core.optimizers` return improved copies of a Module.
"""

from bt_core.modules import ChainOfThought, Example, Module, Predict, Prediction
from bt_core.signatures import Field, Signature

__all__ = ["ChainOfThought", "Example", "Field", "Module", "Predict", "Prediction", "Signature"]
