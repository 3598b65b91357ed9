"""Where the golden parity vectors are (shared by the parity tests and their fixture)."""
from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def parity_dir() -> Path:
    """``$OVSAM_PARITY_DIR`` or ``../shared/parity`` beside the checkout."""
    return Path(os.environ.get("OVSAM_PARITY_DIR", REPO.parent / "shared" / "parity"))
