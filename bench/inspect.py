"""Our full analysis (`python -m lab.inspect --json`) next to tshark's, on the same captures.

Reference: `tshark -q -z conv,tcp -z expert -r FILE`, the conversation table and the
expert info (which carries every TCP analysis flag), i.e. the same questions our
--json answers. Both run as child processes, alternating, on a warm page cache;
medians of --runs runs. Peak memory is each child's maximum resident set size;
a 100k- and a 300k-packet capture of the same kind show whether ours grows with
the file.

Without --pcap, the captures are made once (root needed) by bench/bulk_capture.sh
into bench/.data/, whole packets as `invoke capture` keeps them: BULK downloads of
140 MB and 420 MB (~100k and ~300k packets of up to 1514 bytes), 150,000
pipelined 100-byte ECHO requests (~300k small packets, bench/pipelined_requests.py),
6,000 short connections of one request each (~72k packets,
bench/short_connections.py), where most frames need the analysis rules one by one,
and 300,000 SYN-only connections (21 MB, made without root by the grading tests'
syn_flood_capture), where the memory per connection shows. The first row, a
capture of a few frames (tests/corpus/keepalive.pcap), is each tool's start-up: the
floor under the others.

    python bench/inspect.py [--pcap FILE ...] [--runs 5]
"""

from __future__ import annotations

import sys
from pathlib import Path

# This file is named like the standard library's inspect, which dataclasses (and so
# rich) import: Python puts the script's folder first on the path, so move it last.
HERE = str(Path(__file__).resolve().parent)
sys.path[:] = [p for p in sys.path if p not in (HERE, "")] + [HERE]

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402

from common import median, table  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / ".data"
# name: (what bulk_capture.sh is given, the client it runs, or None for a BULK download)
WORKLOADS = {
    "bulk-100k.pcap": (140_000_000, None),
    "bulk-300k.pcap": (420_000_000, None),
    "requests-300k.pcap": (150_000, "pipelined_requests.py"),
    "connections-6k.pcap": (6_000, "short_connections.py"),
    "syn-flood-300k.pcap": (300_000, "syn_flood_capture"),
}
# A capture of a few frames: each tool's start-up, the floor under every other row's time.
STARTUP = "keepalive.pcap"
# Runs a command; prints its wall time (timed here, so that neither tool is charged this
# wrapper's own start-up) and its peak RSS in KiB (the only child the wrapper waits for).
PEAK = ("import resource, subprocess, sys, time; started = time.perf_counter(); "
        "subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True); "
        "print(time.perf_counter() - started, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def captures(given: list[str]) -> list[Path]:
    if given:
        return [Path(p) for p in given]
    DATA.mkdir(parents=True, exist_ok=True)
    for name, (amount, client) in WORKLOADS.items():
        path = DATA / name
        if not path.exists() and client == "syn_flood_capture":
            sys.path.insert(0, str(ROOT / "tests"))
            from test_grading_trust import syn_flood_capture

            print(f"making {path}", flush=True)
            syn_flood_capture(path, amount)
        elif not path.exists():
            print(f"making {path}", flush=True)
            env = {**os.environ, **({"CLIENT": str(ROOT / "bench" / client)} if client else {})}
            made = subprocess.run(["bash", str(ROOT / "bench" / "bulk_capture.sh"), str(path), str(amount)],
                                  stdout=subprocess.DEVNULL, env=env)
            if made.returncode != 0:
                path.unlink(missing_ok=True)
                sys.exit(f"bench/inspect.py: could not make {path.name} (bulk_capture.sh said why above); "
                         "or measure a capture of yours with --pcap FILE")
    return [ROOT / "tests" / "corpus" / STARTUP] + [DATA / name for name in WORKLOADS]


def measure(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of one run."""
    out = subprocess.run([sys.executable, "-c", PEAK, *argv], capture_output=True, text=True, check=True, env=env)
    seconds, peak = out.stdout.split()
    return float(seconds), int(peak)


def frames_in(path: Path) -> int:
    """Packets in the capture, as our --json counts them (bench/lab.py hides the lab package here)."""
    out = subprocess.run([sys.executable, "-m", "lab.inspect", str(path), "--json"],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout)["packets"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pcap", action="append", default=[], help="capture to measure (repeatable)")
    parser.add_argument("--runs", type=int, default=5, help="runs of each tool per capture (the median counts)")
    args = parser.parse_args()
    if shutil.which("tshark") is None:
        sys.exit("bench/inspect.py: tshark is the reference; install it (apt-get install tshark)")
    # Start-up as a user has it: Python caches the lab's bytecode (and pip compiled numpy's
    # at install). A session with PYTHONDONTWRITEBYTECODE set would otherwise recompile
    # the whole lab.inspect package from source on every run.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "lab")], check=True)
    ours_env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    rows = []
    for path in captures(args.pcap):
        ours = [sys.executable, "-m", "lab.inspect", str(path), "--json"]
        theirs = ["tshark", "-q", "-z", "conv,tcp", "-z", "expert", "-r", str(path)]
        results: dict[str, list[tuple[float, int]]] = {"ours": [], "tshark": []}
        for _ in range(args.runs):
            results["tshark"].append(measure(theirs))
            results["ours"].append(measure(ours, ours_env))
        packets = frames_in(path)
        seconds = {k: median([r[0] for r in v]) for k, v in results.items()}
        peak_mb = {k: max(r[1] for r in v) / 1024 for k, v in results.items()}
        name = "start-up" if path.name == STARTUP else path.name.removesuffix(".pcap")
        rows.append([name, f"{packets:,}",
                     f"{seconds['ours']:.2f}", f"{seconds['tshark']:.2f}", f"{seconds['tshark'] / seconds['ours']:.1f}x",
                     f"{peak_mb['ours']:.0f}", f"{peak_mb['tshark']:.0f}"])
    table(f"lab.inspect --json vs tshark -z conv,tcp -z expert (median of {args.runs})",
          ["capture", "packets", "ours s", "tshark s", "ratio", "ours MB", "tshark MB"], rows)


if __name__ == "__main__":
    main()
