"""TCP by hand with scapy: a SYN, and a whole connection, from the client's namespace.

Run by notebook 05 in a short-lived container that joins the client host's network
namespace as root with NET_RAW (to send and receive raw packets) and NET_ADMIN (for
one iptables rule). Every packet it sends and receives is printed as scapy
summarises it, so the learner can match them with the capture.

Why the rule: the client's kernel knows nothing of a connection that scapy makes,
so when the server's SYN/ACK arrives, the kernel answers "no such connection" with
a RST, and the server forgets the handshake. ``syn`` shows that RST happen;
``connect`` first drops the kernel's RSTs to the server with iptables (and removes
the rule at the end), then does the handshake, one request, and the teardown.

    python3 -m lab.inside.craft syn [--server server] [--port 7070]
    python3 -m lab.inside.craft connect [--server server] [--port 7070] [--line 'ECHO crafted by hand']
"""

from __future__ import annotations

import argparse
import contextlib
import random
import socket
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Callable, Iterator

from lab.inside.protocol import PORT

if TYPE_CHECKING:
    from scapy.packet import Packet


def rst_rule(action: str, server: str, port: int) -> list[str]:
    return ["iptables", action, "OUTPUT", "-p", "tcp", "--tcp-flags", "RST", "RST", "-d", server,
            "--dport", str(port), "-j", "DROP"]


@contextlib.contextmanager
def kernel_rsts_dropped(server: str, port: int) -> Iterator[None]:
    subprocess.run(rst_rule("-A", server, port), check=True)
    try:
        yield
    finally:
        subprocess.run(rst_rule("-D", server, port), check=False)


def say(direction: str, packet: Packet) -> None:
    print(f"{direction} {packet.summary()}", flush=True)


def numbers_not_names() -> None:
    """Show ports as numbers: scapy would name a port it finds in its services table (7000 was 'bbs')."""
    from scapy.config import conf
    from scapy.layers.inet import TCP

    conf.noenum.add(TCP.sport, TCP.dport)


def send_syn(ip: Packet, sport: int, port: int, seq: int) -> Packet | None:
    """Send a SYN from ``sport`` with ISN ``seq``; return the server's SYN/ACK, or None."""
    from scapy.layers.inet import TCP
    from scapy.sendrecv import sr1

    packet = ip / TCP(sport=sport, dport=port, flags="S", seq=seq)
    say("->", packet)
    answer = sr1(packet, timeout=3, verbose=False)
    if answer is None:
        print("no SYN/ACK came back (is the server up?)")
    else:
        say("<-", answer)
    return answer


def syn(server: str, port: int) -> None:
    """Send one SYN, show the SYN/ACK; the kernel's RST follows on the wire."""
    from scapy.layers.inet import IP, TCP

    numbers_not_names()
    answer = send_syn(IP(dst=socket.gethostbyname(server)), random.randint(40000, 60000), port, random.getrandbits(32))
    if answer is not None:
        print(f"the server's ISN is {answer[TCP].seq}; it acknowledges ours + 1 = {answer[TCP].ack}")
        print("our kernel has no socket for this connection, so it now sends a RST (see the capture)")


def connect(server: str, port: int, line: str) -> None:
    """Handshake, one request and its reply, teardown: every segment made here."""
    from scapy.config import conf
    from scapy.layers.inet import IP, TCP
    from scapy.packet import Raw
    from scapy.sendrecv import AsyncSniffer

    numbers_not_names()
    ip = IP(dst=socket.gethostbyname(server))
    sport, seq = random.randint(40000, 60000), random.getrandbits(32)
    arrived: list[Packet] = []     # what the server sends us, as the sniffer sees it
    # Listen where the route to the server goes: the lab's namespaces have no default
    # route, and scapy's default interface follows that one.
    iface = conf.route.route(ip.dst)[0]
    arriving = AsyncSniffer(iface=iface, filter=f"tcp and src port {port} and dst port {sport}",
                            prn=arrived.append, store=False)
    with kernel_rsts_dropped(ip.dst, port):
        arriving.start()
        time.sleep(0.3)
        syn_ack = send_syn(ip, sport, port, seq)
        if syn_ack is None:
            return
        seq, ack = seq + 1, syn_ack[TCP].seq + 1
        send_say(ip / TCP(sport=sport, dport=port, flags="A", seq=seq, ack=ack))
        data = (line + "\n").encode()
        send_say(ip / TCP(sport=sport, dport=port, flags="PA", seq=seq, ack=ack) / Raw(data))
        seq += len(data)
        reply = wait_for(arrived, lambda p: bool(p.haslayer(Raw)), 3)
        if reply is None:
            print("no reply arrived")
            return
        say("<-", reply)
        ack = reply[TCP].seq + len(reply[Raw].load)
        print(f"the server answered: {reply[Raw].load.decode(errors='replace').strip()!r}")
        send_say(ip / TCP(sport=sport, dport=port, flags="FA", seq=seq, ack=ack))
        fin = wait_for(arrived, lambda p: p[TCP].flags.F, 3)
        if fin is not None:
            say("<-", fin)
            send_say(ip / TCP(sport=sport, dport=port, flags="A", seq=seq + 1, ack=fin[TCP].seq + 1))
        time.sleep(0.2)
    arriving.stop()


def send_say(packet: Packet) -> None:
    from scapy.sendrecv import send

    say("->", packet)
    send(packet, verbose=False)


def wait_for(arrived: list[Packet], wanted: Callable[[Packet], bool], timeout: float) -> Packet | None:
    """The first packet that has arrived that ``wanted`` accepts, waiting up to ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for packet in list(arrived):
            if wanted(packet):
                return packet
        time.sleep(0.05)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m lab.inside.craft", description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["syn", "connect"])
    parser.add_argument("--server", default="server")
    parser.add_argument("--port", type=int, default=PORT)
    parser.add_argument("--line", default="ECHO crafted by hand")
    args = parser.parse_args(argv)
    if args.what == "syn":
        syn(args.server, args.port)
    else:
        connect(args.server, args.port, args.line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
