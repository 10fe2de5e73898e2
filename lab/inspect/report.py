"""What `python -m lab.inspect` prints: the JSON and CSV contracts, and the text report.

The JSON and CSV shapes are a contract (scripts and the notebooks' exercise
checkers read them): keys and columns may be added, never renamed or removed.
"""

from __future__ import annotations

import csv
import functools
import json
import os
from typing import IO, TYPE_CHECKING, Any

from lab.inspect.analysis import Capture, iter_segments, stream_segments
from lab.inspect.decode import address_text, endpoint_text, tcp_flags_column
from lab.inspect.kernel import connection_samples, kernel_file_of, read_kernel_file, series_json, state_spans
from lab.inspect.ladder import ladder_text
from lab.inspect.story import Storyteller
from lab.inspect.tcp import FLAG_NAMES, Connection, Flow, Segment, analysis_flag_names

if TYPE_CHECKING:
    from rich.console import Console, JustifyMethod
    from rich.table import Table

CSV_COLUMNS = ["frame", "stream", "src", "sport", "dst", "dport", "flags", "len", "rel_seq", "rel_ack", "analysis"]
MAX_ROWS = 50       # connections listed in the report's table
MAX_LADDERS = 10    # ladders drawn in the report
MAX_WORDS_KEPT = 4096           # addresses (flags, verdicts) --csv keeps in words at once


def handshake_json(conn: Connection) -> dict[str, Any] | None:
    """The handshake's frames, ISNs, RTT and the options each side offered."""
    hs = conn.handshake
    if hs.syn is None:
        return None
    client, server = conn.client, conn.server

    def each(attr: str) -> dict[str, Any]:
        return {"client": _option(client, attr), "server": _option(server, attr)}

    return {
        "syn": hs.syn, "syn_ack": hs.syn_ack, "ack": hs.ack,
        "rtt_ms": _rounded(handshake_rtt_ms(conn)) if hs.ack is not None else None,
        "client_isn": client.isn, "server_isn": server.isn,
        "mss": each("mss"), "window_scale": each("window_scale"),
        "sack_permitted": each("sack_permitted"), "timestamps": each("timestamps"),
    }


def handshake_rtt_ms(conn: Connection) -> float | None:
    """SYN to the ACK that completes the handshake, as seen where the capture was made."""
    hs = conn.handshake
    if hs.syn is None or hs.ack is None:
        return None
    return (hs.ack_time - hs.syn_time) / 1e6


def _rounded(value: float | None) -> float | None:
    return round(value, 3) if value is not None else None


def _option(flow: Flow, attr: str) -> int | bool | None:
    return getattr(flow.options, attr) if flow.options is not None else None


def teardown_json(conn: Connection) -> dict[str, Any] | None:
    """How the connection ended: a RST, or the FINs (with their frames); None if still open."""
    if conn.rst_frames:
        return {"kind": "rst", "frames": conn.rst_frames}
    fins = sorted(conn.client.fin_frames + conn.server.fin_frames)
    if fins:
        return {"kind": "fin", "frames": fins}
    return None


def connection_json(conn: Connection, first_time_ns: int) -> dict[str, Any]:
    client, server = conn.client, conn.server
    return {
        "stream": conn.stream,
        "client": endpoint_text(client.address, client.port),
        "server": endpoint_text(server.address, server.port),
        "first_frame": conn.first_frame,
        "packets": conn.packets,
        "bytes": {"client_to_server": client.payload_bytes, "server_to_client": server.payload_bytes},
        "frames": {"client_to_server": client.packets, "server_to_client": server.packets},
        "frame_bytes": {"client_to_server": client.frame_bytes, "server_to_client": server.frame_bytes},
        "start_s": round((conn.start_ns - first_time_ns) / 1e9, 9),
        "duration_s": round(conn.duration_ns / 1e9, 9),
        "handshake": handshake_json(conn),
        "teardown": teardown_json(conn),
    }


def write_json(capture: Capture, out: IO[str]) -> None:
    """The ``--json`` object, a line for each connection and each flag; with the kernel's samples of
    each connection where the capture has them.

    Each connection's line is made and written in turn, so a capture of 300,000 connections
    never holds 300,000 JSON objects (or one string of them all) in memory. Each line is
    written by json's C encoder: asking json for indentation (``indent=``) makes it fall back
    to its pure-Python encoder, several times slower.
    """
    head: dict[str, Any] = {"file": capture.path, "packets": capture.frames}
    kernel_path = kernel_file_of(capture.path)
    samples = None
    if kernel_path is not None:
        samples = read_kernel_file(kernel_path)
        head["kernel_file"] = str(kernel_path)
    if capture.error is not None:
        head["error"] = str(capture.error)
    out.write(json.dumps(head)[:-1] + ', "connections": [')
    for number, conn in enumerate(capture.connections):
        row = connection_json(conn, capture.first_time_ns)
        if samples is not None:
            row["kernel"] = {host: series_json(series, capture.first_time_ns)
                             for host, series in connection_samples(samples, conn).items()}
        out.write(("," if number else "") + "\n " + json.dumps(row))
    out.write('\n], "flags": {')
    out.write(",".join(f"\n {json.dumps(name)}: {json.dumps(capture.frames_with(name))}" for name in FLAG_NAMES))
    out.write("\n}}\n")


def write_csv(path: str | os.PathLike[str], out: IO[str], stream: int | None = None) -> None:
    """The ``--csv`` rows, one per TCP frame (of ``stream`` only, if given), streamed as the file is read."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    # A capture has few addresses, flag combinations and analysis verdicts: each is put in words once
    # (bounded caches: a capture of a scan, or a made-up one, has more than any cache keeps).
    address = functools.lru_cache(maxsize=MAX_WORDS_KEPT)(address_text)
    flags = functools.lru_cache(maxsize=MAX_WORDS_KEPT)(tcp_flags_column)
    verdict = functools.lru_cache(maxsize=MAX_WORDS_KEPT)(lambda bits: ";".join(analysis_flag_names(bits)))
    for seg in iter_segments(path):
        if stream is not None and seg.stream != stream:
            continue
        writer.writerow([seg.frame, seg.stream, address(seg.src), seg.sport, address(seg.dst), seg.dport,
                         flags(seg.flags), seg.length, seg.rel_seq, seg.rel_ack, verdict(seg.analysis)])


def si_size(size: int) -> str:
    """Bytes as tshark's conversation table prints them: '4112 bytes', '209 kB'."""
    for power, prefix in ((1000 ** 4, "T"), (1000 ** 3, "G"), (1000 ** 2, "M"), (1000, "k")):
        if size // power >= 10:
            return f"{size // power} {prefix}B"
    return f"{size} bytes"


def closed_text(conn: Connection) -> str:
    teardown = teardown_json(conn)
    if teardown is None:
        return "open"
    if teardown["kind"] == "rst":
        return "RST"
    first = conn.client if conn.client.fin_frames and (
        not conn.server.fin_frames or conn.client.fin_frames[0] < conn.server.fin_frames[0]) else conn.server
    return f"FIN, {'client' if first is conn.client else 'server'} first"


def print_report(capture: Capture, console: Console, ladders: int = 60, width: int | None = None,
                 stream: int | None = None) -> None:
    """The human report: conversations, the ladder of each short one, the analysis flags.

    A terminal is not a place for thousands of rows: the table stops after
    MAX_ROWS connections and the ladders after MAX_LADDERS, each saying what it
    left out and where to find it. With ``stream``, the report is about that
    connection alone: its row, its ladder and its flags. Nothing from the file
    (its name, its bytes) is read as rich markup.
    """
    from rich.markup import escape

    console.print(f"[bold]{escape(capture.path)}[/]: {capture.frames} frames, "
                  f"{len(capture.connections)} TCP connection(s)")
    if capture.error is not None:
        console.print(f"[yellow]warning: the file is damaged ({escape(str(capture.error))}); "
                      f"showing the {capture.frames} frames before it[/]")
    if stream is not None:
        _print_one_connection(capture, console, capture.connections[stream], ladders, width)
        return
    connections = capture.connections
    console.print(_conversations(capture, connections[:MAX_ROWS], console.width))
    if len(connections) > MAX_ROWS:
        console.print(f"... and {len(connections) - MAX_ROWS} more connections "
                      "(--json lists them all; --stream N shows one)")
    short = [conn for conn in connections if conn.segments is not None and len(conn.segments) <= ladders]
    for conn in short[:MAX_LADDERS]:
        _print_ladder(conn, conn.segments or [], console, width, capture.connections)
    if len(short) > MAX_LADDERS:
        console.print(f"\n... the ladders of {len(short) - MAX_LADDERS} more short connections are not drawn "
                      "(--stream N draws one)")
    _print_flags(console, {name: capture.frames_with(name) for name in FLAG_NAMES})
    _print_kernel(capture, console, connections[:MAX_ROWS])


def _print_one_connection(capture: Capture, console: Console, conn: Connection, ladders: int, width: int | None) -> None:
    console.print(_conversations(capture, [conn], console.width))
    # A short connection kept its segments; a long one is read again for them.
    segments = conn.segments if conn.segments is not None else stream_segments(capture.path, conn.stream)
    if len(segments) <= ladders:
        _print_ladder(conn, segments, console, width, capture.connections)
    else:
        console.print(f"\nstream {conn.stream} has {len(segments)} frames: its ladder is drawn up to "
                      f"--ladders {ladders} frames (--ladders {len(segments)} draws it)")
    _print_flags(console, {name: [s.frame for s in segments if s.analysis & mask]
                           for name, mask in FLAG_NAMES.items()})
    _print_kernel(capture, console, [conn])


WIDE_TABLE = 150     # the full conversation table needs this many columns; narrower terminals get the short one
WIDE_KERNEL_TABLE = 120      # the kernel's view with its states in a column; narrower, they go under the table


def _conversations(capture: Capture, connections: list[Connection], width: int = WIDE_TABLE) -> Table:
    """The conversations as a table: every column where the terminal is wide, else the short
    one (each endpoint whole on its own line, the two directions in one cell), never a "10.…"."""
    from rich import box
    from rich.table import Table

    # tshark -z conv,tcp counts whole frames' bytes; a learner asks how much *data* went each way.
    title = "TCP conversations (frames counted as tshark -z conv,tcp does; payload: TCP data)"
    if width >= WIDE_TABLE:
        table = Table(title=title)
        for column in ("stream", "client", "server", "frames c->s", "payload c->s", "frames s->c",
                       "payload s->c", "start s", "duration s", "handshake RTT ms", "closed"):
            table.add_column(column, justify="right" if column not in ("client", "server") else "left")
    else:
        # Two lines a connection: the client and what it sent (c->s), then the server and what it sent.
        table = Table(title=title, box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False)
        narrow: tuple[tuple[str, JustifyMethod], ...] = (
            ("#", "right"), ("client\nserver", "left"), ("sent", "left"), ("frames", "right"),
            ("payload", "right"), ("start s\nlasted s", "right"), ("handshake\nRTT ms", "right"), ("closed", "left"))
        for column, justify in narrow:
            table.add_column(column, justify=justify, no_wrap=column != "closed")
    for conn in connections:
        rtt = handshake_rtt_ms(conn)
        client = endpoint_text(conn.client.address, conn.client.port)
        server = endpoint_text(conn.server.address, conn.server.port)
        start = f"{(conn.start_ns - capture.first_time_ns) / 1e9:.6f}"
        rtt_text = f"{rtt:.3f}" if rtt is not None else "-"
        if width >= WIDE_TABLE:
            table.add_row(str(conn.stream), client, server, str(conn.client.packets), si_size(conn.client.payload_bytes),
                          str(conn.server.packets), si_size(conn.server.payload_bytes), start,
                          f"{conn.duration_ns / 1e9:.4f}", rtt_text, closed_text(conn))
        else:
            table.add_row(str(conn.stream), f"{client}\n{server}", "c->s\ns->c",
                          f"{conn.client.packets}\n{conn.server.packets}",
                          f"{si_size(conn.client.payload_bytes)}\n{si_size(conn.server.payload_bytes)}",
                          f"{start}\n{conn.duration_ns / 1e9:.4f}", rtt_text, closed_text(conn))
    return table


def _print_ladder(conn: Connection, segments: list[Segment], console: Console, width: int | None,
                  connections: list[Connection] | None = None) -> None:
    """The ladder at the terminal's width (or ``width``), with the story under the arrows that
    carry one (the sentences the capture's pcapng comments hold)."""
    teller = Storyteller(connections if connections is not None else {conn.stream: conn})
    notes = {segment.frame: teller.comments(segment) for segment in segments}
    console.print(f"\n[bold]stream {conn.stream}[/]", highlight=False)
    console.print(ladder_text(conn, segments, width or min(console.width, 160), notes), highlight=False,
                  markup=False, soft_wrap=True)


def _print_flags(console: Console, frames_by_flag: dict[str, list[int]]) -> None:
    from rich.table import Table

    flagged = {name: frames for name, frames in frames_by_flag.items() if frames}
    if not flagged:
        console.print("\nanalysis flags: none (nothing lost, retransmitted, out of order or stalled)")
        return
    flags = Table(title="analysis flags (frames, as Wireshark's tcp.analysis.*)")
    flags.add_column("flag")
    flags.add_column("frames", justify="right")
    flags.add_column("first frames")
    for name, frames in flagged.items():
        flags.add_row(name, str(len(frames)), ", ".join(map(str, frames[:8])) + (" ..." if len(frames) > 8 else ""))
    console.print(flags)


def _print_kernel(capture: Capture, console: Console, connections: list[Connection]) -> None:
    """The kernel's view of each connection, where the capture has a kernel file beside it."""
    from rich.markup import escape
    from rich.table import Table

    kernel_path = kernel_file_of(capture.path)
    if kernel_path is None:
        return
    samples = read_kernel_file(kernel_path)
    wide = console.width >= WIDE_KERNEL_TABLE
    table = Table(title=f"the kernel's view ({escape(kernel_path.name)}: sampled in each host's namespace)")
    columns = ("stream", "host", "states", "max cwnd", "min ssthresh", "last srtt ms", "max rto ms",
               "retransmitted", "cc") if wide else ("stream", "host", "max\ncwnd", "min\nssthresh",
                                                   "last srtt\nms", "max rto\nms", "retrans-\nmitted", "cc")
    for column in columns:
        table.add_column(column, justify="left" if column in ("host", "states", "cc") else "right", no_wrap=True)
    state_lines = []
    for conn in connections:
        for host, series in connection_samples(samples, conn).items():
            if not series:
                continue
            states = escape(" > ".join(state for _, _, state in state_spans(series)))
            cwnds = [s.values["cwnd"] for s in series if s.values.get("cwnd") is not None]
            thresholds = [s.values["ssthresh"] for s in series if s.values.get("ssthresh") is not None]
            srtts = [s.values["srtt_us"] for s in series if s.values.get("srtt_us")]
            rtos = [s.values["rto_us"] for s in series if s.values.get("rto_us")]
            retransmitted = max((s.values.get("total_retrans") or 0 for s in series), default=0)
            values = [str(max(cwnds)) if cwnds else "-", str(min(thresholds)) if thresholds else "-",
                      f"{srtts[-1] / 1000:.2f}" if srtts else "-", f"{max(rtos) / 1000:.0f}" if rtos else "-",
                      str(retransmitted), escape(next((s.values["cc"] for s in reversed(series) if s.values.get("cc")),
                                                      "-"))]
            table.add_row(str(conn.stream), host, *([states] if wide else []), *values)
            state_lines.append(f"stream {conn.stream}, {host}: {states}")
    if table.row_count:
        console.print(table)
        if not wide:            # the states, each a line of words under the table, never cut to "ESTAB…"
            for line in state_lines:
                console.print(line, highlight=False)
        console.print("cwnd and ssthresh are in segments; the time series: --json, or lab.inspect.graphs in a "
                      "notebook", highlight=False)
    else:
        console.print(f"\n{kernel_path.name}: no kernel samples of these connections", markup=False)
