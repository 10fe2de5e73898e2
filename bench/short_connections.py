"""Open COUNT connections one after the other, each one request and QUIT, as a learner's client does.

The many-connections workload of bench/inspect.py: a dozen frames per connection
(handshake, request, replies, teardown), where nearly every frame is one the
analysis rules must look at, unlike the long transfers of the other captures.

    python3 bench/short_connections.py HOST COUNT
"""

import socket
import sys

host, count = sys.argv[1], int(sys.argv[2])
for number in range(count):
    with socket.create_connection((host, 7070), timeout=10) as sock:
        sock.sendall(b"ECHO hello %d\nQUIT\n" % number)
        while sock.recv(4096):
            pass
print(f"{count} connections")
