"""The codec on its own: bytes in, events out, no socket anywhere."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.inside import protocol
from lab.inside.protocol import (
    CLOSED,
    NEED_DATA,
    BadRequest,
    Bulk,
    BulkData,
    BulkEnd,
    Echo,
    Err,
    Ok,
    Quit,
    ReplyDecoder,
    RequestDecoder,
    Time,
    Upper,
)


def drain(decoder) -> list:
    events = []
    while (event := decoder.next_event()) not in (NEED_DATA, CLOSED):
        events.append(event)
    return events


def decode_all(data: bytes, **kwargs) -> list:
    decoder = RequestDecoder(**kwargs)
    decoder.receive_data(data)
    return drain(decoder)


@pytest.mark.parametrize("request_", [Echo("hello world"), Upper("ünïcode ok"), Time(), Bulk(0), Bulk(12345), Bulk(7, "[tcplab:1a2b3c4d]"), Quit()])
def test_every_request_round_trips(request_):
    assert decode_all(protocol.encode_request(request_)) == [request_]


@pytest.mark.parametrize("reply", [Ok("hi"), Ok(""), Err("busy, try again later")])
def test_every_reply_round_trips(reply):
    decoder = ReplyDecoder()
    decoder.expect(Echo("x"))
    decoder.receive_data(protocol.encode_reply(reply))
    assert drain(decoder) == [reply]


def test_a_request_split_at_every_byte_offset_decodes_the_same():
    data = b"ECHO split me\nUPPER and me\n"
    for cut in range(len(data) + 1):
        decoder = RequestDecoder()
        events = []
        for piece in (data[:cut], data[cut:]):
            if piece:  # b"" would mean end of stream
                decoder.receive_data(piece)
                events += drain(decoder)
        assert events == [Echo("split me"), Upper("and me")], cut


def test_requests_glued_together_come_out_one_by_one():
    assert decode_all(b"TIME\nECHO a\r\nquit\n") == [Time(), Echo("a"), Quit()]


def test_verbs_are_case_insensitive_and_text_is_kept_as_typed():
    assert decode_all(b"echo MiXeD Case \n") == [Echo("MiXeD Case ")]


@pytest.mark.parametrize(
    "line, reason_part",
    [
        (b"", "empty request"),
        (b"   ", "empty request"),
        (b"\xff\xfe bad", "not valid UTF-8"),
        (b"HELLO there", "unknown verb 'HELLO'"),
        (b"ECHO", "usage: ECHO"),
        (b"TIME now", "usage: TIME"),
        (b"BULK -5", "usage: BULK"),
        (b"BULK 1e6", "usage: BULK"),
        (b"BULK \xd9\xa3", "usage: BULK"),
    ],
)
def test_bad_lines_get_a_reason_and_keep_the_connection(line, reason_part):
    [event] = decode_all(line + b"\n")
    assert isinstance(event, BadRequest)
    assert reason_part in event.reason
    assert not event.fatal


def test_a_bulk_request_may_carry_a_note_the_server_ignores():
    assert decode_all(b"BULK 10 [tcplab:1a2b3c4d]\n") == [Bulk(10, "[tcplab:1a2b3c4d]")]
    assert decode_all(b"bulk 10\r\n") == [Bulk(10)]


def test_bulk_over_the_cap_is_refused():
    [event] = decode_all(b"BULK 1001\n", bulk_cap=1000)
    assert event == BadRequest("BULK is limited to 1000 bytes on this server")
    assert decode_all(b"BULK 1000\n", bulk_cap=1000) == [Bulk(1000)]


def test_a_line_of_exactly_the_limit_passes_and_one_more_byte_is_fatal():
    limit = 32
    fits = b"ECHO " + b"x" * (limit - 6) + b"\n"
    assert len(fits) == limit
    assert decode_all(fits, max_line=limit) == [Echo("x" * (limit - 6))]
    too_long = b"ECHO " + b"x" * (limit - 5) + b"\n"
    assert decode_all(too_long, max_line=limit) == [BadRequest(f"line longer than {limit} bytes", fatal=True)]


def test_ten_megabytes_without_newline_never_buffer_more_than_the_limit():
    decoder = RequestDecoder(max_line=64 * 1024)
    decoder.receive_data(b"ECHO ok\n")
    chunk = b"A" * 4096
    for _ in range(10 * 256):
        decoder.receive_data(chunk)
        assert decoder.buffered <= 64 * 1024
    events = drain(decoder)
    assert events == [Echo("ok"), BadRequest("line longer than 65536 bytes", fatal=True)]
    assert decoder.next_event() is CLOSED


def test_end_of_stream_closes_the_decoder():
    decoder = RequestDecoder()
    decoder.receive_data(b"ECHO half")
    decoder.receive_data(b"")
    assert decoder.next_event() is CLOSED


def test_encoding_a_multi_line_text_is_our_bug_not_the_peers():
    with pytest.raises(protocol.LocalProtocolError):
        protocol.encode_request(Echo("two\nlines"))


def test_bulk_pattern_is_the_same_whatever_the_chunking():
    whole = protocol.bulk_pattern(0, 1000)
    assert len(whole) == 1000
    pieces = b"".join(protocol.bulk_pattern(offset, 7) for offset in range(0, 1000, 7))[:1000]
    assert pieces == whole
    assert whole.count(b"\n") == 1000 // 64


def test_reply_decoder_reads_bulk_data_then_its_terminator():
    decoder = ReplyDecoder()
    decoder.expect(Bulk(100))
    decoder.expect(Echo("after"))
    wire = (
        protocol.encode_reply(protocol.bulk_header(100))
        + protocol.bulk_pattern(0, 100)
        + protocol.encode_reply(BulkEnd(protocol.BULK_TERMINATOR))
        + protocol.encode_reply(Ok("after"))
    )
    events = []
    for i in range(len(wire)):
        decoder.receive_data(wire[i:i + 1])
        events += drain(decoder)
    data = b"".join(e.data for e in events if isinstance(e, BulkData))
    others = [e for e in events if not isinstance(e, BulkData)]
    assert data == protocol.bulk_pattern(0, 100)
    assert others == [Ok("100 bytes follow"), BulkEnd("end of bulk"), Ok("after")]


def test_reply_decoder_knows_an_err_to_bulk_carries_no_data():
    decoder = ReplyDecoder()
    decoder.expect(Bulk(100))
    decoder.receive_data(b"ERR BULK is limited\nOK next\n")
    assert drain(decoder) == [Err("BULK is limited"), Ok("next")]


def test_a_reply_that_is_not_ok_or_err_is_the_servers_fault():
    decoder = ReplyDecoder()
    with pytest.raises(protocol.RemoteProtocolError):
        decoder.receive_data(b"HELLO\n")


def test_a_connection_closed_mid_bulk_is_reported():
    decoder = ReplyDecoder()
    decoder.expect(Bulk(100))
    decoder.receive_data(b"OK 100 bytes follow\n" + b"x" * 10)
    with pytest.raises(protocol.RemoteProtocolError):
        decoder.receive_data(b"")


def test_a_server_that_announces_another_byte_count_is_caught_and_the_error_sticks():
    decoder = ReplyDecoder()
    decoder.expect(Bulk(100))
    decoder.expect(Echo("after"))
    with pytest.raises(protocol.RemoteProtocolError, match="announced 5 bytes for BULK 100"):
        decoder.receive_data(b"OK 5 bytes follow\n" + protocol.bulk_pattern(0, 5) + b"OK end of bulk\nOK after\n")
    assert decoder.state == ReplyDecoder.ERROR
    with pytest.raises(protocol.RemoteProtocolError, match="the stream is broken"):
        decoder.receive_data(b"OK more\n")
    with pytest.raises(protocol.RemoteProtocolError, match="the stream is broken"):
        decoder.next_event()


@pytest.mark.parametrize("header", [b"OK here it comes\n", b"OK 100 bytes\n", b"OK -100 bytes follow\n"])
def test_a_bulk_header_that_says_no_count_is_the_servers_fault(header):
    decoder = ReplyDecoder()
    decoder.expect(Bulk(100))
    with pytest.raises(protocol.RemoteProtocolError, match="is not 'OK <nbytes> bytes follow'"):
        decoder.receive_data(header)


def test_the_count_comes_from_the_header_and_data_is_taken_as_data():
    decoder = ReplyDecoder()
    decoder.expect(Bulk(20))
    decoder.receive_data(b"OK 20 bytes follow\n" + b"OK looks like a lin\n" + b"OK end of bulk\n")
    assert drain(decoder) == [Ok("20 bytes follow"), BulkData(b"OK looks like a lin\n"), BulkEnd("end of bulk")]


def test_every_error_of_the_module_shares_its_root():
    with pytest.raises(protocol.ProtocolError):
        protocol.LineSplitter(1)
    with pytest.raises(protocol.ProtocolError):
        protocol.LineSplitter(4).feed(b"toolong")
    assert issubclass(protocol.LineTooLong, protocol.RemoteProtocolError)


# --- property: chunking never changes the outcome, and the buffer stays bounded ---

LIMIT = 24

line_strategy = st.one_of(
    st.sampled_from([b"ECHO hi", b"UPPER x y", b"TIME", b"QUIT", b"BULK 10", b"BULK 99999", b"", b"NOPE", b"echo \xff"]),
    st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")),
)
stream_strategy = st.lists(line_strategy, max_size=12).flatmap(
    lambda lines: st.tuples(
        st.just(b"\n".join(lines) + b"\n"),
        st.booleans(),
    ).map(lambda t: t[0] if t[1] else t[0][:-1])
) | st.binary(max_size=200)


def expected_events(stream: bytes, limit: int) -> list:
    """What the decoder must yield: the rules of the protocol, applied line by line."""
    *complete, tail = stream.split(b"\n")
    events = []
    for line in complete:
        if len(line) + 1 > limit:
            return events + [BadRequest(f"line longer than {limit} bytes", fatal=True)]
        events.append(protocol.parse_request_line(line, 1000))
    if len(tail) >= limit:
        events.append(BadRequest(f"line longer than {limit} bytes", fatal=True))
    return events


@settings(max_examples=400, deadline=None)
@given(stream=stream_strategy, cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=20))
def test_any_stream_in_any_chunking_gives_the_same_events_and_a_bounded_buffer(stream, cuts):
    decoder = RequestDecoder(max_line=LIMIT, bulk_cap=1000)
    events = []
    points = sorted({0, len(stream), *(c for c in cuts if c <= len(stream))})
    for start, end in zip(points, points[1:]):
        decoder.receive_data(stream[start:end])
        assert decoder.buffered < LIMIT
        events += drain(decoder)
    assert events == expected_events(stream, LIMIT)


def test_cc_names_an_algorithm_and_nothing_else():
    from lab.inside.protocol import BadRequest, CongestionControl, encode_request, parse_request_line

    assert parse_request_line(b"CC reno") == CongestionControl("reno")
    assert parse_request_line(b"cc bbr\r") == CongestionControl("bbr")
    assert encode_request(CongestionControl("bbr")) == b"CC bbr\n"
    for bad in (b"CC", b"CC Reno", b"CC reno bbr", b"CC " + b"x" * 16, b"CC ../etc"):
        assert isinstance(parse_request_line(bad), BadRequest), bad

