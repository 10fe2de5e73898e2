"""What runs inside the lab's containers: the standard library and scapy only.

The image (docker/Dockerfile) copies this folder and nothing else of the package,
because it carries Debian's python3 and python3-scapy and no PyPI packages:

    protocol   the request/response protocol as a sans-I/O codec (bytes in, events out)
    server     the lab's server, TCP and UDP, on asyncio's socket calls
    slots      who may hold the server's connection slots: a share per address, room for newcomers
    client     the lab's client on blocking sockets, one call per thing on the wire
    capture    the capture engine: a TPACKET_V3 ring written out as pcap
    craft      TCP by hand with scapy, for notebook 05
    linkemu    the NFQUEUE link emulator: delay, jitter, loss, reordering where the kernel lacks netem
    link_core  what the emulator decides for each packet, without I/O (packets in, verdicts out)
    sampler    the kernel's TCP state of the lab's sockets (sock_diag), every millisecond
    netlink    netlink's framing, shared by the emulator (its queue) and the sampler (sock_diag)

tests/test_structure.py fails when a module here imports anything else.
"""
