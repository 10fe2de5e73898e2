"""Crashes per 10,000 damaged captures: lab.inspect fed mutations of real captures (tests/fuzzing.py).

Each case is read as a user reads it (the report, --json, --csv); a crash is any
exception other than the one-line LabError, or no answer within 20 s. The
reference in the same run is the seeds themselves (the undamaged captures and
their snap-length cuts), which must all pass.

    python bench/fuzz.py [--cases 10000] [--seed N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The project first, and not bench/ itself: bench/inspect.py would hide the standard library's inspect.
sys.path[:] = [str(ROOT)] + [p for p in sys.path if p not in (str(Path(__file__).resolve().parent), "")]
from tests.fuzzing import run_cases, seeds  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", type=Path, help="keep the crashing files in this folder")
    args = parser.parse_args()
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.keep or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        failures = run_cases(args.cases, args.seed, folder)
    elapsed = time.monotonic() - started
    unharmed = len(seeds())
    seed_failures = [case for case, _ in failures if case < unharmed]
    print(f"{args.cases} cases ({unharmed} undamaged seeds, {args.cases - unharmed} damaged) in {elapsed:.0f} s")
    print(f"undamaged seeds failing: {len(seed_failures)} (reference: must be 0)")
    print(f"crashes or hangs: {len(failures)}, {len(failures) * 10_000 / args.cases:.1f} per 10,000")
    causes: dict[str, int] = {}
    for _, problem in failures:
        causes[problem] = causes.get(problem, 0) + 1
    for problem, count in sorted(causes.items(), key=lambda item: -item[1]):
        print(f"  {count:5}  {problem}")


if __name__ == "__main__":
    main()
