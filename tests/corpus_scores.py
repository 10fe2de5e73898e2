"""Precision and recall counts of each analysis flag against tshark over the corpus.

Filled by tests/test_inspect_corpus.py, printed by conftest's terminal summary:
a module of its own, so that both import it instead of one reaching into the other.
"""

from __future__ import annotations

import collections

# flag -> [frames both marked, frames we marked, frames tshark marked], summed over the corpus.
SCORES: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0, 0])
