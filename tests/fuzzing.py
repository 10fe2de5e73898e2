"""Hostile capture files for lab.inspect: mutations of real captures, cut and damaged ones.

A capture file is data from a stranger (a student's submission, a download). Each
case here is a real capture from tests/corpus/ or notebooks/data/, cut by a snap
length or mutated (bytes flipped, the file cut short, a length word set to a
value that lies, a region zeroed, repeated or spliced in), and then read the way
a user reads it: the report, --json and --csv. The rule: a result, or one
LabError line; never another exception, never a hang.

Used by tests/test_fuzz.py (a few hundred seeded cases in CI) and bench/fuzz.py
(crashes per 10,000).
"""

from __future__ import annotations

import contextlib
import io
import random
import signal
import struct
import traceback
from pathlib import Path

from lab.errors import LabError
from lab.inspect.analysis import analyze
from lab.inspect.formats import PCAP_MICROSECOND_MAGIC, PCAP_NANOSECOND_MAGIC, PCAPNG_SHB
from lab.inspect.report import print_report, write_csv, write_json

ROOT = Path(__file__).resolve().parent.parent
SEED_FILES = sorted((ROOT / "tests" / "corpus").glob("*.pcap")) + sorted((ROOT / "notebooks" / "data").glob("*.pcapng"))
MAX_SEED_BYTES = 400_000          # the larger corpus files are cut to this, to keep each case quick
LIES = (0, 1, 3, 4, 8, 11, 12, 16, 28, 31, 0x7FFFFFFF, 0xFFFFFFFF, 0x04000001, 65535, 65536)
TIME_LIMIT_S = 20
PCAPNG_MAGIC = struct.pack("<I", PCAPNG_SHB)


def snap_cut(pcap: bytes, snaplen: int) -> bytes | None:
    """A classic pcap with every record cut to ``snaplen`` bytes, as tcpdump -s would write it."""
    magic = pcap[:4]
    endian = next((e for e in "<>" if struct.unpack(e + "I", magic)[0] in (PCAP_MICROSECOND_MAGIC,
                                                                       PCAP_NANOSECOND_MAGIC)), None)
    if endian is None:
        return None
    header = bytearray(pcap[:24])
    struct.pack_into(endian + "I", header, 16, snaplen)
    out, pos = [bytes(header)], 24
    while pos + 16 <= len(pcap):
        seconds, fraction, caplen, wire = struct.unpack_from(endian + "IIII", pcap, pos)
        data = pcap[pos + 16:pos + 16 + caplen]
        kept = data[:snaplen]
        out.append(struct.pack(endian + "IIII", seconds, fraction, len(kept), wire) + kept)
        pos += 16 + caplen
    return b"".join(out)


def seeds() -> list[bytes]:
    """The real captures, and each pcap cut at snap lengths that cut headers and options."""
    found = []
    for path in SEED_FILES:
        data = path.read_bytes()[:MAX_SEED_BYTES]
        found.append(data)
        for snaplen in (40, 54, 60, 68):
            cut = snap_cut(data, snaplen)
            if cut is not None:
                found.append(cut)
    return found


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One to three damages of the kinds a disk, a network or a person does to a file."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        if not out:
            break
        kind = rng.randrange(6)
        at = rng.randrange(len(out))
        if kind == 0:                                   # flip a few bytes
            for _ in range(rng.randint(1, 8)):
                out[rng.randrange(len(out))] = rng.randrange(256)
        elif kind == 1:                                 # cut the file short
            del out[at:]
        elif kind == 2 and len(out) >= at + 4:          # a length or type word that lies
            struct.pack_into(rng.choice("<>") + "I", out, at - at % 4, rng.choice(LIES))
        elif kind == 3:                                 # zero a region
            size = rng.randint(1, 64)
            out[at:at + size] = bytes(len(out[at:at + size]))
        elif kind == 4:                                 # repeat a region
            piece = out[at:at + rng.randint(1, 200)]
            out[at:at] = piece
        else:                                           # splice in bytes from elsewhere in the file
            source = rng.randrange(len(out))
            out[at:at] = out[source:source + rng.randint(1, 100)]
    return bytes(out)


class Hang(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds: int):
    def alarm(*_):
        raise Hang(f"no answer in {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def judge(path: Path) -> str | None:
    """Read ``path`` as a user would; None if it gave a result or a LabError, else what went wrong."""
    from rich.console import Console

    try:
        with time_limit(TIME_LIMIT_S):
            for run in (lambda: write_json(analyze(path, keep=False), io.StringIO()),
                        lambda: print_report(analyze(path), Console(file=io.StringIO(), width=100)),
                        lambda: write_csv(path, io.StringIO())):
                try:
                    run()
                except LabError:
                    pass
    except Hang as exc:
        return str(exc)
    except Exception:     # noqa: BLE001 - this is what the fuzzer looks for
        return traceback.format_exc(limit=-3).strip().splitlines()[-1]
    return None


def run_cases(count: int, seed: int, folder: Path) -> list[tuple[int, str]]:
    """``count`` mutated cases (and every seed as it is); the (case, failure) pairs."""
    rng = random.Random(seed)
    pool = seeds()
    failures = []
    for case in range(count):
        data = pool[case] if case < len(pool) else mutate(rng.choice(pool), rng)
        suffix = ".pcapng" if data[:4] == PCAPNG_MAGIC else ".pcap"
        path = folder / f"case-{case}{suffix}"
        path.write_bytes(data)
        problem = judge(path)
        if problem is not None:
            failures.append((case, problem))
            path.rename(folder / f"crash-{case}{path.suffix}")
        else:
            path.unlink()
    return failures
