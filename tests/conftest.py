"""Shared test setup: the offline data folder (../shared/data beside the repo) and no hub downloads."""

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

os.environ.setdefault("BT_DATA_DIR", str(REPO.parent / "shared" / "data"))
# No code path may download data or weights during tests, even where `datasets` is installed.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
