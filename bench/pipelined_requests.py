"""Send COUNT ECHO requests of 100 bytes on one connection without waiting (TCP_NODELAY).

The small-packet workload of bench/inspect.py: every request and reply is its own
segment, as when a learner's client talks to the server, but 100,000s of them.

    python3 bench/pipelined_requests.py HOST COUNT
"""

import socket
import sys
import threading

host, count = sys.argv[1], int(sys.argv[2])
sock = socket.create_connection((host, 7070))
sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
line = b"ECHO " + b"x" * 94 + b"\n"
replies = 0


def read_replies() -> None:
    global replies
    while replies < count:
        data = sock.recv(65536)
        if not data:
            break
        replies += data.count(b"\n")


reader = threading.Thread(target=read_replies)
reader.start()
for _ in range(count):
    sock.sendall(line)
reader.join()
sock.close()
print(f"{replies} replies")
