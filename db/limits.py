"""The sizes of the columns that hold what a user types, and how much one launch may queue.

db/models.py sizes its columns with these, and bt_core refuses longer input with them before
anything is written: SQLite would store an overlong value as it is, PostgreSQL would refuse the
whole insert with a driver error.
"""

EXPERIMENT_NAME_MAX = 200  # experiments.name
MODEL_MAX = 300  # runs.model: a registry name, an HF id or a local path
STRATEGY_COLUMN = 100  # runs.strategy, steps.label (a prefix of the strategy) and runs.current_step
# runs.current_step holds "<i>/<n> <step label>"; a strategy of 94 characters has at most 19 steps
# ("p -> " is 5 characters a step), so "19/19 " is the longest prefix it gets.
STRATEGY_MAX = STRATEGY_COLUMN - len("19/19 ")
SEED_MAX = 2**31 - 1  # runs.seed is a 32-bit INTEGER on PostgreSQL
MAX_SEEDS = 100  # seeds per launch; a range is counted, never built, before it is checked
