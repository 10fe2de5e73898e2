"""``python -m lab.inspect PCAP`` (and ``invoke inspect``): the analysis on a terminal.

Without options it prints the report a learner reads (conversations, the ladder of
each short connection, analysis flags); ``--json`` and ``--csv`` print the
machine-readable contracts of lab.inspect.report instead.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from lab.errors import LabError
from lab.inspect.analysis import SHORT_CONNECTION, Capture, analyze
from lab.inspect.reader import CaptureFileError
from lab.inspect.report import print_report, write_csv, write_json
from lab.paths import CAPTURES_DIR
from lab.terminal import SIGPIPE_EXIT, quiet_stdout

if TYPE_CHECKING:     # rich is for the report: --json and --csv do without its 30 ms of imports
    from rich.console import Console

CAPTURE_SUFFIXES = (".pcapng", ".pcap")


def newest_capture(folder: str | Path = CAPTURES_DIR) -> Path:
    """The most recent capture file in ``folder`` (what `invoke inspect` reads by default)."""
    folder = Path(folder)
    found = [p for p in folder.glob("*") if p.suffix in CAPTURE_SUFFIXES and not p.name.startswith(".")]
    if not found:
        raise CaptureFileError(f"no capture in {folder} yet: make one with 'invoke capture --send \"ECHO hi\"' "
                               "or name a file")
    return max(found, key=lambda p: p.stat().st_mtime)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lab.inspect",
                                     description="Analyse a pcap or pcapng capture as Wireshark would.")
    parser.add_argument("pcap", nargs="?", help="capture file (default: the newest in captures/)")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print one JSON object (connections, handshakes, flags)")
    output.add_argument("--csv", action="store_true", help="print one CSV row per TCP frame")
    parser.add_argument("--ladders", type=int, default=SHORT_CONNECTION, metavar="N",
                        help="draw the ladder of connections with at most N frames (default %(default)s; 0: none)")
    parser.add_argument("--stream", type=int, metavar="N",
                        help="only connection N (tcp.stream): its row, ladder and flags, or its --csv rows")
    parser.add_argument("--width", type=int, help="width of the ladders in characters (default: the terminal's)")
    parser.add_argument("--debug", action="store_true", help="show a traceback on errors")
    return parser


def run(pcap: str | None, as_json: bool = False, as_csv: bool = False,
        ladders: int = SHORT_CONNECTION, width: int | None = None, stream: int | None = None) -> int:
    """Print the chosen output for one capture; return the exit code (1 for a damaged file).

    Mistakes (a missing file, a stream the capture lacks, options that do not go
    together) raise a LabError with one line saying what to do.
    """
    from lab.terminal import console

    if stream is not None and as_json:
        raise LabError("--stream picks a connection for the report or --csv; --json lists every connection", code=2)
    if as_json and as_csv:
        raise LabError("--json and --csv are two different outputs: choose one", code=2)
    path = Path(pcap) if pcap else newest_capture()
    if as_csv:
        write_csv(path, sys.stdout, stream)
        return 0
    capture = analyze(path, keep=False if as_json else max(ladders, 0))   # ladders need segments; JSON does not
    if not capture.connections and not as_json:
        capture = inner_capture_of(path, capture, console())
    if stream is not None and not 0 <= stream < len(capture.connections):
        count = len(capture.connections)
        raise CaptureFileError(f"{path} has no stream {stream}: " + (
            f"its streams are 0 to {count - 1}" if count > 1 else "its only stream is 0" if count else
            "it holds no TCP connection"))
    if as_json:
        write_json(capture, sys.stdout)
    else:
        print_report(capture, console(), ladders, width, stream)
    if capture.error is not None:
        print(f"lab.inspect: {path}: {capture.error} (the {capture.frames} frames before it were analysed)",
              file=sys.stderr)
        return 1
    return 0


def inner_capture_of(path: Path, capture: Capture, term: Console) -> Capture:
    """For an underlay capture (the lab's TCP inside VXLAN, between two hosts): what the overlay
    adds, said once, and the inner capture to report on; any other capture as it is."""
    from lab.inspect import overlay

    underlay = overlay.read_underlay(path)
    carried = underlay.carried
    if not carried:
        if underlay.encrypted:
            term.print(f"{path}: {underlay.encrypted} of {capture.frames} frames are IPsec ESP (IP protocol "
                       f"{overlay.ESP}): an encrypted overlay's, whose VXLAN and TCP inside only the nodes' keys can "
                       "read; bring the lab up with encrypt: no to see them", highlight=False)
        return capture
    vnis = ", ".join(str(vni) for vni in sorted({packet.vni for packet in carried}))
    overheads = sorted({packet.overhead for packet in carried})
    term.print(f"{path}: {len(carried)} of {capture.frames} frames carry a frame of an overlay network inside "
               f"VXLAN (UDP {overlay.VXLAN_PORT}, VNI {vnis}), each {', '.join(map(str, overheads))} bytes larger "
               "than the frame it carries; what follows is the TCP inside them (frame N: the Nth carried frame)",
               highlight=False)
    return overlay.analyze_inner(path, carried)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return run(args.pcap, args.json, args.csv, args.ladders, args.width, args.stream)
    except LabError as exc:
        if args.debug:
            raise
        print(f"lab.inspect: {exc}", file=sys.stderr)
        return exc.code
    except BrokenPipeError:       # the reader went away (| head): end quietly, as Unix tools do
        quiet_stdout()
        return SIGPIPE_EXIT
    except KeyboardInterrupt:
        return 130
