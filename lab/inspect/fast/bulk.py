"""The bulk analysis: Wireshark's rules (tcp.py) at numpy speed, by skipping the frames they cannot touch.

tcp.py states Wireshark's analysis as it is written, one frame at a time, and
that is what a student should read. It costs about a microsecond per frame in
Python, more than tshark spends. Yet most frames of a capture are data arriving in
order and ACKs moving forward, where no rule fires and every rule's bookkeeping
amounts to "remember this frame". This module finds those frames a batch at a time
with numpy, does their bookkeeping in bulk, and hands every other frame to the
Tracker, rule by rule, with the state it would have had.

Rule 1: a frame goes in bulk only while its connection is *settled*: each
direction has a ``nextseq`` and a ``maxseqtobeacked``, the handshake and the
initial RTT are past, and no keep-alive or zero-window probe is the last word. A
connection that keeps its segments (for ladders, and for grading) gets those of its
bulk frames made from the columns, as the rules would have made them. A
duplicate-ACK count may run: no rule reads it for a regular frame, which can only
reset it (with a new ACK number).

Rule 2: a settled connection stays settled through a *regular* frame, and the
rules give such a frame at most four flags (zero window, window update, window
full, previous segment not captured), each a comparison with the frame before it
or the other direction's latest. A regular frame has ACK and none of SYN, FIN,
RST; starts where its direction's data ended, or beyond (a gap), never before it
(no retransmission, no keep-alive); ACKs nothing beyond its peer's
``maxseqtobeacked``; is not a repeated ACK (the duplicate-ACK family); and carries
no data its peer has already acknowledged (spurious). A direction's
``maxseqtobeacked`` follows its ``nextseq`` until a gap, and then stays where
``nextseq`` was before the gap until an ACK beyond it, which is not regular.

Everything a regular-frame test needs is computed for every frame of a batch at
once: the previous frame of the same direction, the other direction's latest,
and each direction's ``nextseq`` (a running maximum of where segments end). The
first two are exact whatever the rules did. The running maximum is exact too,
except after an *awkward* frame: a possible zero-window probe (which Wireshark
does not let move ``nextseq``) or a segment ending at sequence number 0 (which
the rules read as "not set"). So awkward frames go through the Tracker, and each
stretch between them starts its maxima afresh from the Tracker's state. Through
the Tracker frame by frame also go: every frame up to a connection's last SYN in
the batch (SYNs set the window scale and may start a new connection on the same
ports), a stretch of fewer than MIN_BULK frames, and one too far from where each
direction's data ended (over 2^30 away) to unwrap its sequence numbers safely.

tests/test_inspect_bulk.py holds this module to the Tracker frame by frame
(flags, every connection's numbers, the state of each direction) on the corpus,
on captures made to be irregular, and on every chunk size; tshark holds both to
Wireshark.
"""

from __future__ import annotations

import bisect
from typing import Iterable, Iterator

import numpy as np

from lab.inspect.decode import ACK, FIN, RST, SYN
from lab.inspect.fast.columns import TcpColumns, tcp_columns
from lab.inspect.reader import Batch
from lab.inspect.tcp import (
    KEEP_ALIVE,
    LOST_SEGMENT,
    MASK32,
    UNKNOWN_SCALE,
    WINDOW_FULL,
    WINDOW_UPDATE,
    ZERO_WINDOW,
    ZERO_WINDOW_PROBE,
    Connection,
    Flow,
    Segment,
    Tracker,
)

MIN_BULK = 32          # fewer frames of a connection in a batch: not worth the numpy calls
UNWRAP_LIMIT = 1 << 30
NOT_SET = -(1 << 62)   # a running maximum's start where a direction has no nextseq yet


def consume(tracker: Tracker, batches: Iterable[Batch]) -> int:
    """Analyse every frame of ``batches`` into ``tracker``, as Tracker.consume would their records.

    Returns how many frames went in bulk (the others went through the rules).
    """
    if tracker.emit:
        raise ValueError("the bulk analysis makes no Segment per frame; use Tracker.feed for that")
    in_bulk = 0
    try:
        for batch in batches:
            in_bulk += _consume_batch(tracker, batch)
    finally:
        tracker.number_streams()
    return in_bulk


def segments(tracker: Tracker, batches: Iterable[Batch]) -> Iterator[Segment]:
    """Every TCP frame's Segment in frame order, as Tracker.feed yields them (for --csv and
    lab.inspect.iter_segments), at the bulk analysis's speed.

    The tracker keeps every connection's segments (``keep=True``) only until the batch
    is done: they are handed out, and the lists emptied. A batch's new connections get
    their final stream numbers then (those of earlier batches began earlier).
    """
    if tracker.keep is not True or tracker.emit:
        raise ValueError("segments() needs a Tracker(keep=True, emit=False)")
    for batch in batches:
        columns = tcp_columns(batch)
        # The connections that may take frames of this batch: those known now under its keys,
        # and those the batch makes (even one that another SYN on the same ports replaces).
        old = len(tracker.connections)
        touched = {id(found[0]): found[0] for (low, low_port), (high, high_port) in columns.keys
                   for found in [tracker.known(low, low_port, high, high_port)] if found is not None}
        _consume_batch(tracker, batch, columns)
        tracker.number_streams(since=old)
        made: list[Segment] = []
        for conn in [*touched.values(), *tracker.connections[old:]]:
            if conn.segments:
                made += conn.segments
                conn.segments = []
        made.sort(key=lambda segment: segment.frame)
        yield from made


def _consume_batch(tracker: Tracker, batch: Batch, columns: TcpColumns | None = None) -> int:
    """One batch into the tracker, its frames numbered on from the tracker's; how many went in bulk."""
    if tracker.frames == 0 and len(batch):
        tracker.first_time_ns = int(batch.time_ns[0])
    first_frame = tracker.frames + 1
    columns = columns if columns is not None else tcp_columns(batch)
    through_rules, long_ones = _frames_for_the_rules(columns)
    _one_by_one(tracker, columns, np.flatnonzero(through_rules), first_frame)
    in_bulk = 0
    rest = np.flatnonzero(~through_rules)
    by_connection = rest[np.argsort(columns.pair[rest], kind="stable")]
    counts = np.bincount(columns.pair[rest], minlength=len(columns.keys))[long_ones]
    for number, frames in zip(long_ones, np.split(by_connection, np.cumsum(counts)[:-1])):
        (low, low_port), (high, high_port) = columns.keys[number]
        known = tracker.known(low, low_port, high, high_port)
        if known is None:   # no frame of this connection seen before, and no SYN: the rules meet it first
            _one_by_one(tracker, columns, frames, first_frame)
        else:
            in_bulk += _around_awkward_frames(tracker, columns, frames, first_frame, known)
    tracker.frames += len(batch)
    return in_bulk


def _frames_for_the_rules(columns: TcpColumns) -> tuple[np.ndarray, list[int]]:
    """Which frames go through the rules before anything else, and which connections may go in bulk.

    Through the rules, in file order: each connection's frames up to its last SYN
    in the batch (SYNs set the window scale, and may start a new connection on the
    same ports), and every frame of a connection with fewer than MIN_BULK frames
    after that (a short connection: numpy calls would cost it more than they save).
    """
    positions = np.arange(len(columns))
    last_syn = np.full(len(columns.keys), -1)
    syn = np.flatnonzero(columns.flags & SYN)
    np.maximum.at(last_syn, columns.pair[syn], syn)
    after_syn = positions > last_syn[columns.pair]
    enough = np.bincount(columns.pair[after_syn], minlength=len(columns.keys)) >= MIN_BULK
    long_ones = [number for number in np.flatnonzero(enough).tolist()
                 if columns.keys[number][0] != columns.keys[number][1]]   # not a connection to itself
    is_long = np.zeros(len(columns.keys), bool)
    is_long[long_ones] = True
    return ~(after_syn & is_long[columns.pair]), long_ones


def _around_awkward_frames(tracker: Tracker, columns: TcpColumns, frames: np.ndarray, first_frame: int,
                           known: tuple[Connection, Flow, Flow]) -> int:
    """One connection's frames in a batch: the awkward ones through the rules, each stretch between
    them as a _Stretch of its own (so its running maxima start from the rules' state)."""
    whole = _Stretch(tracker, columns, frames, first_frame, *known)
    awkward = whole.awkward()
    if not awkward:
        return whole.analyse()
    in_bulk = start = 0
    for stop in [*awkward, len(frames)]:
        stretch = frames[start:stop]
        if len(stretch) >= MIN_BULK:
            in_bulk += _Stretch(tracker, columns, stretch, first_frame, *known).analyse()
        else:
            _one_by_one(tracker, columns, stretch, first_frame)
        _one_by_one(tracker, columns, frames[stop:stop + 1], first_frame)
        start = stop + 1
    return in_bulk


def _one_by_one(tracker: Tracker, columns: TcpColumns, frames: np.ndarray, first_frame: int) -> None:
    """Frames through the Tracker, each with its header and bytes."""
    for record, now, wire_length, header, data in columns.frames(frames):
        tracker.analyse_tcp(first_frame + record, now, wire_length, header, data)


def settled(conn: Connection) -> bool:
    """Rule 1: may the connection's next regular frame skip the rules? (see the module's docstring)"""
    return bool((conn.first_rtt_ns or not conn.mru_syn_ns)
                and (conn.handshake.ack is not None or conn.handshake.syn_ack is None)
                and _flow_settled(conn.client) and _flow_settled(conn.server))


def _flow_settled(flow: Flow) -> bool:
    return (flow.nextseq != 0 and flow.maxseqtobeacked != 0 and not flow.is_first_ack
            and not flow.lastsegmentflags & (KEEP_ALIVE | ZERO_WINDOW_PROBE))


def _first_from(ordered: list[int], position: int, default: int) -> int:
    """The first number in ``ordered`` at or after ``position`` (``default`` if none)."""
    index = bisect.bisect_left(ordered, position)
    return ordered[index] if index < len(ordered) else default


def _signed(values: np.ndarray) -> np.ndarray:
    """32-bit differences as signed numbers: how far ahead (or behind) in sequence space."""
    return ((values + (1 << 31)) & MASK32) - (1 << 31)


def _shifted(values: np.ndarray, first: int) -> np.ndarray:
    """values[i - 1] at i, and ``first`` at 0: what held before each frame."""
    return np.concatenate([[first], values[:-1]])


class _Stretch:
    """One connection's frames in one batch (or one stretch of them): the regular-frame test for
    all, then the walk.

    Direction 0 is the key's lower endpoint, 1 the other. Sequence numbers are
    unwrapped into plain integers relative to each direction's ``nextseq`` when the
    stretch starts, so that a running maximum can stand for Wireshark's 32-bit
    comparisons.
    """

    def __init__(self, tracker: Tracker, columns: TcpColumns, frames: np.ndarray, first_frame: int,
                 conn: Connection, low: Flow, high: Flow) -> None:
        self.tracker, self.columns, self.frames = tracker, columns, frames
        self.first_frame, self.conn, self.flows = first_frame, conn, (low, high)
        self.count = len(frames)
        self.direction = columns.backwards[frames].astype(np.int64)
        self.seq, self.ack = columns.seq[frames], columns.ack[frames]
        self.flags, self.window = columns.flags[frames], columns.window[frames]
        self.seglen, self.time_ns = columns.seglen[frames], columns.time_ns[frames]
        self.positions = np.arange(self.count)
        # latest[k][i]: the last frame of direction k at or before i (-1: none in this batch).
        self.latest = [np.maximum.accumulate(np.where(self.direction == k, self.positions, -1)) for k in (0, 1)]
        self.own_before, self.other_before = self._pick([_shifted(x, -1) for x in self.latest])
        self.own_window, self.other_window = self._before(self.window, "window")

    def awkward(self) -> list[int]:
        """The frames after which a running maximum of where segments end is not nextseq: a
        possible zero-window probe (1 byte while the peer's window is 0), which may not move
        nextseq, and a segment ending at sequence number 0, which the rules read as "not set"."""
        probe = (self.seglen == 1) & (self.other_window == 0)
        ends_at_zero = (self.seq + self.seglen + (self.flags & (SYN | FIN) != 0)) & MASK32 == 0
        return np.flatnonzero(probe | ends_at_zero).tolist()

    def analyse(self) -> int:
        """Analyse the frames; return how many went in bulk."""
        regular = self._regular()
        if regular is None:
            _one_by_one(self.tracker, self.columns, self.frames, self.first_frame)
            return 0
        return self._walk(regular)

    def _regular(self) -> np.ndarray | None:
        """Rule 2 for every frame (and their bulk flags in self.bits); None if the batch cannot go in bulk."""
        direction, seq, ack, flags, window, seglen = (self.direction, self.seq, self.ack, self.flags,
                                                      self.window, self.seglen)
        other = 1 - direction
        start = np.array([flow.nextseq for flow in self.flows])
        offset = _signed(seq - start[direction])
        end = offset + seglen + (flags & FIN != 0)
        if max(np.abs(offset).max(), np.abs(end).max()) >= UNWRAP_LIMIT:
            return None

        floor = [0 if flow.nextseq else NOT_SET for flow in self.flows]
        # nextseq[k][i]: direction k's nextseq after frame i (unwrapped; no awkward frames here).
        nextseq = [np.maximum(np.maximum.accumulate(np.where(direction == k, end, NOT_SET)), floor[k])
                   for k in (0, 1)]
        own_nextseq, other_nextseq = self._pick([_shifted(x, floor[k]) for k, x in enumerate(nextseq)])
        own_ack, other_ack = self._before(ack, "lastack")
        own_window, other_window = self.own_window, self.other_window

        in_order = offset == own_nextseq
        gap = (offset > own_nextseq) & (own_nextseq != NOT_SET)      # "previous segment not captured"
        # ACK numbers are compared as the rules do, in 32-bit sequence space: no unwrapping needed.
        already_acked = (seglen > 0) & (other_ack != 0) & ((other_ack - seq - seglen) & MASK32 <= 0x7FFFFFFF)
        same_ack = in_order & (seglen == 0) & (ack == own_ack)
        repeated = same_ack & (window == own_window) & (window != 0)
        regular = ((flags & (SYN | FIN | RST) == 0) & (flags & ACK != 0) & (in_order | gap)
                   & (other_nextseq != NOT_SET) & ~repeated & ~already_acked)
        self.gaps = [np.flatnonzero(gap & (direction == k)).tolist() for k in (0, 1)]
        # The frames that ACK beyond what the peer sent, for a peer whose maxseqtobeacked
        # follows its nextseq (see _run_end): gt_seq(ack, peer's nextseq).
        acks_unseen = (((start[other] + other_nextseq) & MASK32) - ack) & MASK32 > 0x7FFFFFFF
        self.acks_unseen = [np.flatnonzero(acks_unseen & (direction != k)).tolist() for k in (0, 1)]

        scale = np.array([max(flow.win_scale, 0) for flow in self.flows])
        scale_known = np.array([flow.win_scale != UNKNOWN_SCALE for flow in self.flows])
        right_edge = (other_ack + (other_window << scale[other])) & MASK32
        self.bits = (np.where(window == 0, ZERO_WINDOW, 0)
                     | np.where(gap, LOST_SEGMENT, 0)
                     | np.where(same_ack & (window != 0) & (window != own_window), WINDOW_UPDATE, 0)
                     | np.where((seglen > 0) & scale_known[other] & ((seq + seglen) & MASK32 == right_edge),
                                WINDOW_FULL, 0))
        self.nextseq, self.own_nextseq, self.start = nextseq, own_nextseq, start
        self.latest_advance, self.latest_new_ack = (
            [np.maximum.accumulate(np.where((direction == k) & happened, self.positions, -1)) for k in (0, 1)]
            for happened in (end > own_nextseq, ack != own_ack))
        kept: np.ndarray = regular
        return kept

    def _pick(self, per_direction: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Per frame, (its own direction's value, the other direction's)."""
        zero, one = per_direction
        mine = self.direction == 0
        return np.where(mine, zero, one), np.where(mine, one, zero)

    def _before(self, column: np.ndarray, attribute: str) -> tuple[np.ndarray, np.ndarray]:
        """Per frame, a column's value in the frame before it of (its own direction, the other);
        before the batch's first such frame, the Flow's ``attribute``."""
        state = np.array([getattr(flow, attribute) for flow in self.flows])
        own = np.where(self.own_before >= 0, column[self.own_before], state[self.direction])
        other = np.where(self.other_before >= 0, column[self.other_before], state[1 - self.direction])
        return own, other

    def _walk(self, regular: np.ndarray) -> int:
        """Frames in order: runs of regular frames in bulk while settled, the rest through the Tracker."""
        irregular = np.flatnonzero(~regular).tolist()
        in_bulk = np.zeros(self.count, bool)
        position = 0
        run = None      # where the bulk frames not yet handed over to the Flows begin
        while position < self.count:
            if settled(self.conn):
                stop, marks = self._run_end(position, irregular)
                if stop > position:
                    in_bulk[position:stop] = True
                    run, position = position, stop
                    if position == self.count:
                        break
            if run is not None:
                self._hand_over(run, position, marks)
                run = None
            _one_by_one(self.tracker, self.columns, self.frames[position:position + 1], self.first_frame)
            position += 1
        if run is not None:
            self._hand_over(run, self.count, marks)
        self._count(in_bulk)
        return int(in_bulk.sum())

    def _run_end(self, position: int, irregular: list[int]) -> tuple[int, list[int | None]]:
        """Where a bulk run from ``position`` ends, and each direction's maxseqtobeacked after it.

        The run ends at the next irregular frame, or sooner at an ACK beyond a
        direction's maxseqtobeacked ("ACKed unseen segment"). That mark follows the
        direction's nextseq (regular frames keep it so: None below) until a gap in the
        direction's data; from there on it stays where nextseq was before the gap.
        """
        stop = _first_from(irregular, position, self.count)
        marks: list[int | None] = [None, None]
        gaps: list[int | None] = [None, None]     # the first gap of a direction whose mark followed nextseq
        for k, flow in enumerate(self.flows):
            if flow.maxseqtobeacked == flow.nextseq:
                gap = _first_from(self.gaps[k], position, self.count)
                stop = min(stop, _first_from(self.acks_unseen[k], position, self.count))
                if gap >= stop:
                    continue
                gaps[k] = gap
                mark, since = (int(self.start[k]) + int(self.own_nextseq[gap])) & MASK32, gap + 1
            else:
                mark, since = flow.maxseqtobeacked, position
            beyond = (mark - self.ack[since:stop]) & MASK32 > 0x7FFFFFFF        # gt_seq(ack, mark)
            found = np.flatnonzero(beyond & (self.direction[since:stop] != k))
            if len(found):
                stop = since + int(found[0])
            marks[k] = mark
        for k, cut in enumerate(gaps):     # a later direction may have cut the run short of this gap
            if cut is not None and cut >= stop:
                marks[k] = None
        return stop, marks

    def _hand_over(self, run: int, position: int, marks: list[int | None]) -> None:
        """Write into each direction's Flow the state the rules would have left after the bulk
        frames run .. position - 1 (``marks``: maxseqtobeacked where it does not follow nextseq)."""
        if self.conn.segments is not None:
            self._keep_segments(run, position)
        for k, flow in enumerate(self.flows):
            last = int(self.latest[k][position - 1])
            if last < run:
                continue    # the Tracker saw this direction's latest frame itself
            flow.window, flow.lastack = int(self.window[last]), int(self.ack[last])
            flow.lastack_time, flow.lastsegmentflags = int(self.time_ns[last]), int(self.bits[last])
            flow.nextseq = (int(self.start[k]) + int(self.nextseq[k][last])) & MASK32
            mark = marks[k]
            flow.maxseqtobeacked = flow.nextseq if mark is None else mark
            advance = int(self.latest_advance[k][last])
            if advance >= 0:
                flow.nextseq_time = int(self.time_ns[advance])
            if self.latest_new_ack[k][last] >= run:    # "a new ACK number resets the duplicate count"
                flow.dupacknum = 0
        self.conn.last_ns = int(self.time_ns[position - 1])

    def _keep_segments(self, run: int, stop: int) -> None:
        """The Segments the rules would have kept for the bulk frames run .. stop - 1: a regular
        frame has ACK and no SYN, its window is scaled by its sender's scale, and no duplicate-ACK
        number (tcp.Tracker.analyse_tcp makes the same from one frame)."""
        conn, tracker, part = self.conn, self.tracker, slice(run, stop)
        assert conn.segments is not None
        frames = self.frames[part]
        records = self.columns.record[frames]
        direction = self.direction[part]
        base = np.array([flow.base_seq for flow in self.flows])
        shift = np.array([max(flow.win_scale, 0) for flow in self.flows])
        batch = self.columns.batch
        starts = batch.start[records] + self.columns.payload_offset[frames]
        ends = batch.start[records] + np.minimum(self.columns.payload_offset[frames] + self.seglen[part],
                                                 batch.caplen[records])
        sides = [(flow is conn.client, flow.address, flow.port, other.address, other.port)
                 for flow, other in (self.flows, self.flows[::-1])]
        buffer, stream = batch.buffer, conn.stream
        for frame, now, k, flags, seq, ack, rel_seq, rel_ack, length, window, scaled, bits, start, end in zip(
                (records + self.first_frame).tolist(), self.time_ns[part].tolist(), direction.tolist(),
                self.flags[part].tolist(), self.seq[part].tolist(), self.ack[part].tolist(),
                ((self.seq[part] - base[direction]) & MASK32).tolist(),
                ((self.ack[part] - base[1 - direction]) & MASK32).tolist(), self.seglen[part].tolist(),
                self.window[part].tolist(), (self.window[part] << shift[direction]).tolist(),
                self.bits[part].tolist(), starts.tolist(), ends.tolist()):
            from_client, src, sport, dst, dport = sides[k]
            conn.segments.append(Segment(frame, now, stream, from_client, src, sport, dst, dport, flags, seq, ack,
                                         rel_seq, rel_ack, length, window, scaled, bits, 0, None,
                                         buffer[start:end]))
        if tracker.keep is not True and len(conn.segments) > tracker.keep:
            conn.segments = None

    def _count(self, in_bulk: np.ndarray) -> None:
        """The bulk frames' share of the counters, and their flags (the Tracker did its own frames')."""
        wire_length = self.columns.wire_length[self.frames]
        for k, flow in enumerate(self.flows):
            mine = in_bulk & (self.direction == k)
            flow.packets += int(mine.sum())
            flow.payload_bytes += int(self.seglen[mine].sum())
            flow.frame_bytes += int(wire_length[mine].sum())
        flagged = np.flatnonzero(in_bulk & (self.bits != 0))
        frame_numbers = self.columns.record[self.frames[flagged]] + self.first_frame
        self.tracker.flagged.update(zip(frame_numbers.tolist(), self.bits[flagged].tolist()))
