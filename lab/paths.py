"""Where the project's things are on disk (importing this costs nothing: no invoke, no rich)."""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CAPTURES_DIR = PROJECT_ROOT / "captures"
"""Where `invoke capture` writes and `invoke inspect` looks (git-ignored)."""


def shown(path: Path) -> str:
    """A path as the learner reads it: from the project's folder when it is inside it."""
    try:
        return str(path.resolve().relative_to(PROJECT_ROOT))
    except ValueError:
        return str(path)
