"""TCP connection tracking and per-frame analysis, with Wireshark's definitions.

Wireshark is what learners will hold our output against, so this module follows
tshark 4.0.17 (Debian bookworm's) rule by rule: epan/dissectors/packet-tcp.c of
that release (its source package, not the newer master, which differs in the
"ACKed unseen segment" test),
``dissect_tcp`` (which conversation a segment belongs to, when ``tcp.stream``
starts a new number, how relative numbers are computed) and
``tcp_analyze_sequence_number`` (the analysis flags). The rules are quoted where
they are applied; their order matters and is Wireshark's. tests/test_inspect_*.py
hold the result against tshark on captures made on this machine.

Terms, per direction of a connection (a *flow*):

* ``base_seq``: the ISN (from the SYN), or seq-1 of the first segment seen;
  relative sequence numbers are ``seq - base_seq``.
* ``nextseq``: the highest sequence number expected next (seq + length, +1 for
  SYN and FIN); a segment starting beyond it means one was not captured.
* ``lastack`` / ``window``: the ACK number and raw window of the last segment.

Where we differ from Wireshark: nothing known; frames that Wireshark dissects
with a preference we do not have (MPTCP, SCPS, reassembly) are analysed as plain
TCP. Grey zones upstream (SACK is ignored by the duplicate-ACK rule; out-of-order
vs retransmission hinges on the initial RTT) are reproduced as 4.0.17 has them,
not "fixed", because a learner comparing with Wireshark must see the same verdict.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator

from lab.errors import LabError
from lab.inspect.decode import ACK, FIN, RST, SYN, TcpHeader, TcpOptions, tcp_header, tcp_options
from lab.inspect.reader import Record

# Analysis flags, one bit each (names as in the JSON and CSV outputs).
RETRANSMISSION = 1 << 0
FAST_RETRANSMISSION = 1 << 1
SPURIOUS_RETRANSMISSION = 1 << 2
OUT_OF_ORDER = 1 << 3
LOST_SEGMENT = 1 << 4
ACK_LOST_SEGMENT = 1 << 5
DUPLICATE_ACK = 1 << 6
ZERO_WINDOW = 1 << 7
WINDOW_UPDATE = 1 << 8
WINDOW_FULL = 1 << 9
KEEP_ALIVE = 1 << 10
ZERO_WINDOW_PROBE = 1 << 11
KEEP_ALIVE_ACK = 1 << 12
ZERO_WINDOW_PROBE_ACK = 1 << 13

FLAG_NAMES = {
    "retransmission": RETRANSMISSION | FAST_RETRANSMISSION | SPURIOUS_RETRANSMISSION,
    "fast_retransmission": FAST_RETRANSMISSION,
    "spurious_retransmission": SPURIOUS_RETRANSMISSION,
    "out_of_order": OUT_OF_ORDER,
    "lost_segment": LOST_SEGMENT,
    "ack_lost_segment": ACK_LOST_SEGMENT,
    "duplicate_ack": DUPLICATE_ACK,
    "zero_window": ZERO_WINDOW,
    "window_update": WINDOW_UPDATE,
    "window_full": WINDOW_FULL,
    "keep_alive": KEEP_ALIVE,
}
"""The reported flags, each with the bits that set it. As in tshark, a fast or
spurious retransmission is also a retransmission."""

RETRANSMITTED = RETRANSMISSION | OUT_OF_ORDER
"""A copy of bytes sent before: what Karn's rule leaves out and the graphs mark."""

WIRESHARK_LABELS = (
    (FAST_RETRANSMISSION, "TCP Fast Retransmission"),
    (SPURIOUS_RETRANSMISSION, "TCP Spurious Retransmission"),
    (RETRANSMISSION, "TCP Retransmission"),
    (OUT_OF_ORDER, "TCP Out-Of-Order"),
    (LOST_SEGMENT, "TCP Previous segment not captured"),
    (ACK_LOST_SEGMENT, "TCP ACKed unseen segment"),
    (DUPLICATE_ACK, "TCP Dup ACK"),
    (ZERO_WINDOW, "TCP ZeroWindow"),
    (WINDOW_UPDATE, "TCP Window Update"),
    (WINDOW_FULL, "TCP Window Full"),
    (KEEP_ALIVE, "TCP Keep-Alive"),
    (ZERO_WINDOW_PROBE, "TCP ZeroWindowProbe"),
    (KEEP_ALIVE_ACK, "TCP Keep-Alive ACK"),
    (ZERO_WINDOW_PROBE_ACK, "TCP ZeroWindowProbeAck"),
)
"""The words of Wireshark's Info column for each bit, most specific first."""

MASK32 = 0xFFFFFFFF
DEFAULT_OOO_THRESHOLD_NS = 3_000_000   # Wireshark's, before the handshake RTT is known
FAST_RETRANSMISSION_WINDOW_NS = 20_000_000
UNKNOWN_SCALE, NO_SCALE = -1, -2



def analysis_flag_names(bits: int) -> list[str]:
    """Names of the analysis flags set in ``bits``."""
    return [name for name, mask in FLAG_NAMES.items() if bits & mask]


def wireshark_labels(bits: int, dupack_num: int = 0) -> list[str]:
    """What Wireshark's Info column says of a frame, e.g. ["TCP Dup ACK #2"]."""
    labels = []
    for bit, label in WIRESHARK_LABELS:
        if bits & bit:
            if bit == RETRANSMISSION and bits & (FAST_RETRANSMISSION | SPURIOUS_RETRANSMISSION):
                continue  # already said, more precisely
            labels.append(f"{label} #{dupack_num}" if bit == DUPLICATE_ACK else label)
    return labels


def gt_seq(a: int, b: int) -> bool:
    """a > b in 32-bit sequence space."""
    return ((b - a) & MASK32) > 0x7FFFFFFF


def lt_seq(a: int, b: int) -> bool:
    return ((a - b) & MASK32) > 0x7FFFFFFF


class Flow:
    """One direction of a connection, as Wireshark's tcp_flow_t tracks it."""

    __slots__ = ("address", "port", "base_seq", "base_set", "win_scale", "window", "nextseq",
                 "nextseq_time", "maxseqtobeacked", "lastack", "lastack_time", "dupacknum",
                 "lastsegmentflags", "is_first_ack", "packets", "payload_bytes", "frame_bytes",
                 "isn", "options", "fin_frames")

    def __init__(self, address: bytes, port: int) -> None:
        self.address, self.port = address, port
        self.base_seq = 0
        self.base_set = False
        self.win_scale = UNKNOWN_SCALE
        self.window = 0
        self.nextseq = 0
        self.nextseq_time = 0
        self.maxseqtobeacked = 0
        self.lastack = 0
        self.lastack_time = 0
        self.dupacknum = 0
        self.lastsegmentflags = 0
        self.is_first_ack = False   # from a SYN until this side's first plain ACK
        self.packets = self.payload_bytes = self.frame_bytes = 0
        self.isn: int | None = None
        self.options: TcpOptions | None = None
        self.fin_frames: list[int] = []


@dataclasses.dataclass(slots=True)
class Handshake:
    syn: int | None = None
    syn_ack: int | None = None
    ack: int | None = None
    syn_time: int = 0
    ack_time: int = 0

    def complete(self) -> bool:
        return None not in (self.syn, self.syn_ack, self.ack)


@dataclasses.dataclass(slots=True)
class Segment:
    """One analysed TCP frame: what Wireshark's packet list and TCP tree show of it."""

    frame: int
    time_ns: int
    stream: int
    from_client: bool
    src: bytes
    sport: int
    dst: bytes
    dport: int
    flags: int
    seq_raw: int
    ack_raw: int
    rel_seq: int
    rel_ack: int          # relative when ACK is set, else the raw field (as Wireshark shows it)
    length: int
    window_raw: int
    window: int           # scaled where the scale is known (never for SYNs)
    analysis: int
    dupack_num: int
    options: TcpOptions | None
    payload: bytes


class Connection:
    """One ``tcp.stream``: its endpoints, counters, handshake and teardown.

    Slots, not a ``__dict__``: a capture may hold hundreds of thousands of connections."""

    __slots__ = ("stream", "first_frame", "start_ns", "last_ns", "opener", "client", "server", "handshake",
                 "first_rtt_ns", "mru_syn_ns", "rst_frames", "segments")

    def __init__(self, stream: int, frame: int, time_ns: int, src: Flow, dst: Flow) -> None:
        self.stream = stream
        self.first_frame = frame
        self.start_ns = self.last_ns = time_ns
        self.opener = src                     # sent the first frame (tshark's "A" side)
        self.client, self.server = src, dst   # until a SYN says otherwise
        self.handshake = Handshake()
        self.first_rtt_ns = 0
        self.mru_syn_ns = 0
        self.rst_frames: list[int] = []
        self.segments: list[Segment] | None = None

    @property
    def packets(self) -> int:
        return self.client.packets + self.server.packets

    @property
    def duration_ns(self) -> int:
        return self.last_ns - self.start_ns


class TooLarge(LabError):
    """A capture beyond the bounds its reader was given (a grader's: no lesson's capture
    comes near them), refused before its analysis costs more memory."""


class Tracker:
    """Feeds frames through connection tracking and Wireshark's analysis.

    ``keep`` decides which connections remember their segments (and payloads):
    True for all, False for none, or a number: only while a connection has at most
    that many frames (enough for ladder diagrams of short exchanges, while a
    300,000-packet bulk transfer costs no memory per packet). ``emit`` decides
    whether :meth:`feed` yields a Segment for every frame (for CSV output) or only
    does the analysis (the fast path of ``--json``).
    """

    def __init__(self, keep: bool | int = True, emit: bool = True, max_connections: int | None = None) -> None:
        self.keep = keep
        self.emit = emit
        self.max_connections = max_connections
        self.connections: list[Connection] = []
        self._by_key: dict[tuple[bytes, int, bytes, int], tuple[Connection, Flow, Flow]] = {}
        self.frames = 0
        self.flagged: dict[int, int] = {}      # frame -> analysis bits, for flagged frames only
        self.first_time_ns: int | None = None

    def feed(self, records: Iterator[Record]) -> Iterator[Segment | None]:
        """Analyse each record; yield its Segment (None for frames that are not TCP)."""
        for record in records:
            self.frames += 1
            if self.first_time_ns is None:
                self.first_time_ns = record.time_ns
            yield self.analyse(self.frames, record)

    def consume(self, records: Iterator[Record]) -> None:
        """Analyse every record, keeping only the results (feed() without its per-frame yield)."""
        analyse = self.analyse
        frame = self.frames
        try:
            for record in records:
                frame += 1
                if frame == 1:
                    self.first_time_ns = record.time_ns
                analyse(frame, record)
        finally:
            self.frames = frame

    def analyse(self, frame: int, record: Record) -> Segment | None:
        tcp = tcp_header(record.linktype, record.data)
        if tcp is None:
            return None
        return self.analyse_tcp(frame, record.time_ns, record.wire_length, tcp, record.data)

    def analyse_tcp(self, frame: int, now: int, wire_length: int, tcp: TcpHeader, data: bytes) -> Segment | None:
        """One TCP frame (its decoded header and its bytes) through tracking and the rules."""
        src, dst, sport, dport, seq, ack, flags, window, offset, payload_offset, seglen = tcp
        options = tcp_options(data, offset + 20, payload_offset) if flags & SYN else None

        conn, fwd, rev = self._connection(frame, now, src, sport, dst, dport, flags, seq)
        bits = self._analyse_sequence(conn, fwd, rev, now, seq, ack, seglen, flags, window)
        if bits:
            self.flagged[frame] = bits

        self._note_connection(conn, fwd, rev, frame, now, flags, seq, options, seglen, wire_length)
        if not self.emit and conn.segments is None:
            return None
        rel_seq = (seq - fwd.base_seq) & MASK32
        rel_ack = (ack - rev.base_seq) & MASK32 if flags & ACK else ack
        scaled = window if flags & SYN or fwd.win_scale < 0 else window << fwd.win_scale
        segment = Segment(frame, now, conn.stream, fwd is conn.client, src, sport, dst, dport,
                          flags, seq, ack, rel_seq, rel_ack, seglen, window, scaled, bits,
                          fwd.dupacknum if bits & DUPLICATE_ACK else 0, options,
                          data[payload_offset:payload_offset + seglen])
        if conn.segments is not None:
            conn.segments.append(segment)
            if self.keep is not True and len(conn.segments) > self.keep:
                conn.segments = None
        return segment

    def known(self, src: bytes, sport: int, dst: bytes, dport: int) -> tuple[Connection, Flow, Flow] | None:
        """The connection a frame from (src, sport) to (dst, dport) would belong to now, and its
        two directions (the sender's first); None if no frame of this key was seen."""
        return self._by_key.get((src, sport, dst, dport))

    def number_streams(self, since: int = 0) -> None:
        """Number the connections in the order of their first frames, as tcp.stream does
        (only those from ``since`` on: the ones before began earlier and are numbered).

        Frames fed one by one create connections in that order already; the bulk
        path (lab.inspect.fast.bulk) meets them connection by connection, so it calls
        this at the end (or at the end of each batch, when it hands out segments as it goes).
        """
        self.connections[since:] = sorted(self.connections[since:], key=lambda conn: conn.first_frame)
        for number, conn in enumerate(self.connections[since:], since):
            conn.stream = number
            for segment in conn.segments or ():
                segment.stream = number

    def _connection(self, frame: int, now: int, src: bytes, sport: int, dst: bytes, dport: int, flags: int,
                    seq: int) -> tuple[Connection, Flow, Flow]:
        """The connection of a segment, its direction (fwd) and the other one (rev).

        Each connection is filed under both directions' keys, so one lookup
        answers all three questions.
        """
        found: tuple[Connection, Flow, Flow] | None = self._by_key.get((src, sport, dst, dport))
        if found is not None and flags & SYN:
            conn, fwd, rev = found
            # Port reuse (dissect_tcp): a SYN whose seq differs from this direction's
            # base_seq starts a new conversation, and so a new tcp.stream; the same
            # SYN again restores nextseq, which a RST may have moved (issue 17616).
            if not flags & ACK and fwd.base_set:
                if seq != fwd.base_seq:
                    found = None
                else:
                    fwd.nextseq = fwd.maxseqtobeacked
            # A SYN/ACK with another ISN belongs here, but renumbers (issue 16944).
            elif flags & ACK and fwd.base_set and seq != fwd.base_seq:
                fwd.base_seq = seq
        if found is None:
            if self.max_connections is not None and len(self.connections) >= self.max_connections:
                raise TooLarge(f"more than {self.max_connections:,} connections")
            fwd, rev = Flow(src, sport), Flow(dst, dport)
            conn = Connection(len(self.connections), frame, now, fwd, rev)
            if self.keep:
                conn.segments = []
            self.connections.append(conn)
            found = (conn, fwd, rev)
            self._by_key[(src, sport, dst, dport)] = found
            self._by_key[(dst, dport, src, sport)] = (conn, rev, fwd)
        found[0].last_ns = now
        return found

    @staticmethod
    def _analyse_sequence(conn: Connection, fwd: Flow, rev: Flow, now: int, seq: int, ack: int,
                          seglen: int, flags: int, window: int) -> int:
        """tcp_analyze_sequence_number, rule by rule; returns the frame's analysis bits."""
        bits = 0
        if not fwd.base_set:
            fwd.base_seq = seq if flags & SYN else (seq - 1) & MASK32
            fwd.base_set = True
        if not rev.base_set and flags & ACK:
            rev.base_seq = (ack - 1) & MASK32
            rev.base_set = True
        nextseq = fwd.nextseq

        # ZERO WINDOW PROBE: the next expected seq, 1 byte, the other side's window 0.
        if seglen == 1 and seq == nextseq and rev.window == 0:
            bits |= ZERO_WINDOW_PROBE
        else:
            # ZERO WINDOW: window 0, and none of SYN/FIN/RST.
            if window == 0 and not flags & (RST | FIN | SYN):
                bits |= ZERO_WINDOW
            # LOST PACKET: beyond the next expected seq (RSTs excepted).
            if seq != nextseq and nextseq and gt_seq(seq, nextseq) and not flags & RST:
                bits |= LOST_SEGMENT
            # KEEP ALIVE: 0 or 1 byte, one byte before the next expected seq.
            if seglen <= 1 and seq == (nextseq - 1) & MASK32 and not flags & (SYN | FIN | RST):
                bits |= KEEP_ALIVE
            same_seq_ack = seglen == 0 and seq == nextseq and ack == fwd.lastack \
                and not flags & (SYN | FIN | RST)
            # WINDOW UPDATE: no data, same seq/ack, a new non-zero window.
            if same_seq_ack and window and window != fwd.window:
                bits |= WINDOW_UPDATE
            # WINDOW FULL: data up to the right edge of the other side's window.
            if seglen > 0 and rev.win_scale != UNKNOWN_SCALE and not flags & (SYN | FIN | RST):
                shift = 0 if rev.win_scale == NO_SCALE or rev.is_first_ack else rev.win_scale
                if (seq + seglen) & MASK32 == (rev.lastack + (rev.window << shift)) & MASK32:
                    bits |= WINDOW_FULL
            if same_seq_ack and window == fwd.window:
                if window and rev.lastsegmentflags & KEEP_ALIVE:
                    bits |= KEEP_ALIVE_ACK
                elif window == 0 and rev.lastsegmentflags & ZERO_WINDOW_PROBE:
                    bits |= ZERO_WINDOW_PROBE_ACK
                elif window:
                    # DUPLICATE ACK: no data, same window, seq and ack as before.
                    # -1 marks a direction stalled after an ACKed-unseen segment;
                    # its next duplicate counts as the first.
                    fwd.dupacknum = 1 if fwd.dupacknum == -1 else fwd.dupacknum + 1
                    bits |= DUPLICATE_ACK

        # finished_fwd: a new ACK number resets the duplicate count.
        if ack != fwd.lastack:
            fwd.dupacknum = 0

        # ACKED LOST PACKET: acknowledges beyond what the other side was seen to send.
        # Said once per hole: the bound moves up to what was seen, and a direction
        # that only repeats its ACK (dupacknum -1) is not told again.
        if ack != rev.maxseqtobeacked and rev.maxseqtobeacked and gt_seq(ack, rev.maxseqtobeacked) \
                and flags & ACK:
            if lt_seq(rev.maxseqtobeacked, rev.nextseq):
                rev.maxseqtobeacked = rev.nextseq
                bits |= ACK_LOST_SEGMENT
            else:
                if rev.dupacknum == 0:
                    bits |= ACK_LOST_SEGMENT
                rev.dupacknum = -1

        # RETRANSMISSION / FAST RETRANSMISSION / OUT-OF-ORDER / SPURIOUS
        if (seglen > 0 or flags & (SYN | FIN)) and not bits & KEEP_ALIVE:
            not_advanced = seq != nextseq and bool(nextseq) and lt_seq(seq, nextseq)
            if seglen > 1 and (nextseq - 1) & MASK32 == seq:
                not_advanced = False
            threshold = conn.first_rtt_ns or DEFAULT_OOO_THRESHOLD_NS
            # Spurious comes first: data the other side has already ACKed.
            if seglen > 0 and rev.lastack and not gt_seq((seq + seglen) & MASK32, rev.lastack):
                bits |= SPURIOUS_RETRANSMISSION
            elif (not_advanced and rev.dupacknum >= 2 and rev.lastack == seq
                    and now - rev.lastack_time < FAST_RETRANSMISSION_WINDOW_NS):
                bits |= FAST_RETRANSMISSION
            elif (not_advanced and now - fwd.nextseq_time < threshold
                    and nextseq != (seq + seglen + (1 if flags & (SYN | FIN) else 0)) & MASK32):
                # SYN and FIN count one sequence number each, so a SYN/ACK sent
                # twice is a retransmission, not out of order (tshark 4.0 agrees).
                bits |= OUT_OF_ORDER
            elif not_advanced:
                bits |= RETRANSMISSION

        end = (seq + seglen + (1 if flags & (SYN | FIN) else 0)) & MASK32
        if gt_seq(end, nextseq) or not nextseq:
            if not bits & ZERO_WINDOW_PROBE:
                fwd.nextseq = end
                fwd.nextseq_time = now
        if seq == fwd.maxseqtobeacked or not fwd.maxseqtobeacked:
            if not bits & ZERO_WINDOW_PROBE:
                fwd.maxseqtobeacked = fwd.nextseq

        fwd.window = window
        fwd.lastack = ack
        fwd.lastack_time = now
        fwd.lastsegmentflags = bits
        return bits

    @staticmethod
    def _note_connection(conn: Connection, fwd: Flow, rev: Flow, frame: int, now: int, flags: int,
                         seq: int, options: TcpOptions | None, seglen: int, wire_length: int) -> None:
        """Counters, handshake, teardown, window scale and the initial RTT."""
        fwd.packets += 1
        fwd.payload_bytes += seglen
        fwd.frame_bytes += wire_length
        hs = conn.handshake
        if flags & SYN:
            assert options is not None              # analyse_tcp reads a SYN's options
            fwd.isn, fwd.options = seq, options
            fwd.is_first_ack = True
            if options.window_scale is not None:
                fwd.win_scale = options.window_scale
            if flags & ACK:
                hs.syn_ack = hs.syn_ack or frame
                # verify_tcp_window_scaling, for the SYN/ACK
                if fwd.win_scale == UNKNOWN_SCALE:
                    fwd.win_scale = rev.win_scale = NO_SCALE
                elif rev.win_scale == NO_SCALE:
                    fwd.win_scale = NO_SCALE
            else:
                conn.client, conn.server = fwd, rev
                if hs.syn is None:
                    hs.syn, hs.syn_time = frame, now
                conn.mru_syn_ns = now
                if fwd.win_scale == UNKNOWN_SCALE:
                    fwd.win_scale = rev.win_scale = NO_SCALE
        elif flags & ACK:
            fwd.is_first_ack = False
            if hs.syn_ack is not None and hs.ack is None and fwd is conn.client:
                hs.ack, hs.ack_time = frame, now
            if conn.mru_syn_ns and not conn.first_rtt_ns:
                conn.first_rtt_ns = now - conn.mru_syn_ns
        if flags & FIN:
            fwd.fin_frames.append(frame)
        if flags & RST:
            conn.rst_frames.append(frame)
