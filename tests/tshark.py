"""tshark as the judge: its verdicts on a capture, in the shapes lab.inspect produces.

Wireshark is what learners hold our analysis against, so the tests ask Debian's
tshark (4.0 on bookworm) about each corpus file at test time rather than storing
its answers: a different tshark gives different ground truth, visibly.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess

from lab.inspect.tcp import FLAG_NAMES

TSHARK = shutil.which("tshark")
FLAGS = list(FLAG_NAMES)


def run(*args: str) -> str:
    result = subprocess.run([TSHARK, *args], capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        raise RuntimeError(f"tshark {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


@functools.lru_cache(maxsize=None)
def frames(path: str) -> dict[int, tuple[int, int, int]]:
    """frame -> (tcp.stream, relative seq, relative ack) for every TCP frame."""
    out = run("-r", path, "-Y", "tcp", "-T", "fields", "-E", "occurrence=f",
              "-e", "frame.number", "-e", "tcp.stream", "-e", "tcp.seq", "-e", "tcp.ack")
    table = {}
    for line in out.splitlines():
        number, stream, seq, ack = (line.split("\t") + ["", "", ""])[:4]
        table[int(number)] = (int(stream), int(seq or 0), int(ack or 0))
    return table


@functools.lru_cache(maxsize=None)
def flagged(path: str) -> dict[str, set[int]]:
    """Analysis flag name -> the frames tshark marks with it (its display filter's answer)."""
    verdicts = {}
    for name in FLAGS:
        out = run("-r", path, "-Y", f"tcp.analysis.{name}", "-T", "fields", "-e", "frame.number")
        verdicts[name] = {int(line) for line in out.split()}
    return verdicts


@functools.lru_cache(maxsize=None)
def conversations(path: str) -> list[tuple[str, str, int, int, str, str, str, str]]:
    """``-z conv,tcp`` rows as printed: (A, B, frames A<-B, frames A->B, bytes <-, bytes ->, start, duration)."""
    out = run("-r", path, "-q", "-z", "conv,tcp")
    rows = []
    number = r"(\d+)\s+(\d+ (?:bytes|[kMGT]B))"   # frames, then a size as tshark abbreviates it
    pattern = re.compile(rf"^(\S+)\s+<->\s+(\S+)\s+{number}\s+{number}\s+{number}\s+([\d.]+)\s+([\d.]+)\s*$")
    for line in out.splitlines():
        match = pattern.match(line)
        if match:
            a, b, frames_in, bytes_in, frames_out, bytes_out, _, _, start, duration = match.groups()
            rows.append((a, b, int(frames_in), int(frames_out), bytes_in, bytes_out, start, duration))
    return sorted(rows)
