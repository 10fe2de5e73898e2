"""Where the project's things are on disk (importing this costs nothing: no invoke, no rich)."""

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CAPTURES_DIR = Path(os.environ.get("TCPLAB_CAPTURES") or PROJECT_ROOT / "captures")
"""Where `invoke capture` writes and `invoke inspect` looks: captures/ in the project (git-ignored),
or $TCPLAB_CAPTURES (another disk; the tests' tiny full filesystem)."""


STUDENT_FILE = "student.toml"
"""In submissions_dir(): who works on this machine, for which course (`invoke student`)."""


def submissions_dir() -> Path:
    """Where a student's identity, answers and archives are: submissions/ in the project
    (git-ignored), or $TCPLAB_SUBMISSIONS (the tests' own folders)."""
    return Path(os.environ.get("TCPLAB_SUBMISSIONS") or PROJECT_ROOT / "submissions")


def shown(path: Path) -> str:
    """A path as the learner reads it: from the project's folder when it is inside it."""
    try:
        return str(path.resolve().relative_to(PROJECT_ROOT))
    except ValueError:
        return str(path)
