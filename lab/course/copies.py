"""Copies across a class: two students' captures that share what no two runs of the lab share.

A copied capture can be patched: dave changed bob's token and BULK size (same lengths)
and his own checks passed. What the patch leaves is what only one run of the lab
makes, fixed by the kernel at random or by the clock:

* the initial sequence numbers of a connection, client's and server's (two random
  32-bit numbers: two runs share them once in 2^64);
* the time of a capture's first frame, to the nanosecond;
* the times of the kernel's samples, to the nanosecond.

What two honest students do share is not evidence: the notebooks send the same lines
and the server the same bytes (payload digests match across the whole class), and
ephemeral ports collide by the birthday rule. The lab's own bundled captures, which
every student has, are left out.
"""

from __future__ import annotations

import collections
import functools
import itertools
from typing import Iterable

from lab.inspect.analysis import Capture
from lab.inspect.kernel import KernelSample
from lab.paths import PROJECT_ROOT

KINDS = {"isn": ("connection", "with the same sequence numbers"),
         "start": ("capture", "starting at the same nanosecond"),
         "sample": ("kernel sample", "at the same nanosecond")}
MAX_SAMPLES = 64


def fingerprints(capture: Capture, samples: Iterable[KernelSample] = ()) -> list[str]:
    """What only this run of the lab makes, as short strings (kind:value)."""
    found = [f"isn:{conn.client.isn:08x}{conn.server.isn:08x}" for conn in capture.connections
             if conn.client.isn is not None and conn.server.isn is not None]
    if capture.first_time_ns:
        found.append(f"start:{capture.first_time_ns}")
    found += [f"sample:{sample.time_ns}" for sample in itertools.islice(samples, MAX_SAMPLES)]
    return found


@functools.lru_cache(maxsize=1)
def bundled() -> frozenset[str]:
    """The fingerprints of the captures the lab ships, which every student has."""
    from lab.inspect.analysis import analyze
    from lab.inspect.kernel import kernel_file_of, read_kernel_file

    found: set[str] = set()
    for path in sorted((PROJECT_ROOT / "notebooks" / "data").glob("*.pcap*")):
        kernel = kernel_file_of(path)
        found.update(fingerprints(analyze(path), read_kernel_file(kernel) if kernel else ()))
    return frozenset(found)


def shared(prints: dict[str, dict[str, list[str]]]) -> dict[tuple[str, str], tuple[str, list[tuple[str, str]]]]:
    """Pairs of students whose captures share a fingerprint: what they share, in words, and
    which of their captures (one's, the other's).

    ``prints`` is student -> capture name -> fingerprints."""
    owners: dict[str, set[tuple[str, str]]] = collections.defaultdict(set)
    for student, captures in prints.items():
        for name, found in captures.items():
            for print_ in found:
                owners[print_].add((student, name))
    owners = {print_: holders for print_, holders in owners.items() if len({s for s, _ in holders}) > 1}
    if owners:                         # the bundled captures are read only when two students share something
        ignored = bundled()
        owners = {print_: holders for print_, holders in owners.items() if print_ not in ignored}
    pairs: dict[tuple[str, str], collections.Counter] = collections.defaultdict(collections.Counter)
    where: dict[tuple[str, str], set[tuple[str, str]]] = collections.defaultdict(set)
    for print_, holders in owners.items():
        for (one, one_capture), (other, other_capture) in itertools.combinations(sorted(holders), 2):
            if one != other:
                pairs[(one, other)][print_.split(":", 1)[0]] += 1
                where[(one, other)].add((one_capture, other_capture))
    said = {}
    for pair, kinds in sorted(pairs.items()):
        evidence = ", ".join(f"{count} {KINDS[kind][0]}{'s' if count > 1 else ''} {KINDS[kind][1]}"
                             for kind, count in sorted(kinds.items()))
        said[pair] = (evidence, sorted(where[pair]))
    return said


def captures_in_copies(found: dict[tuple[str, str], tuple[str, list[tuple[str, str]]]],
                       prints: dict[str, dict[str, list[str]]]
                       ) -> dict[str, dict[str, list[tuple[str, str]]]]:
    """student -> capture -> [(classmate, their capture)] sharing a fingerprint, for every capture in a copy."""
    ignored = bundled()
    held: dict[str, dict[str, list[tuple[str, str]]]] = collections.defaultdict(dict)
    for one, other in found:
        for student, classmate in ((one, other), (other, one)):
            for name, own in prints[student].items():
                own_prints = set(own) - ignored
                matches = [(classmate, theirs) for theirs, found_ in prints[classmate].items()
                           if own_prints.intersection(found_)]
                if matches:
                    held[student].setdefault(name, []).extend(matches)
    return held
