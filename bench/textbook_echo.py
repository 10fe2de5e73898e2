"""The TCP echo server of the Python documentation's asyncio streams page, as printed there.

It is bench/server.py's reference: the least a Python asyncio server does per
connection (read once, write back, close). Only the host and port come from the
command line so the benchmark can pick a free port; the printing stays, as the
docs have it (the benchmark sends it to /dev/null, as it does our server's log).
"""

import asyncio
import sys


async def handle_echo(reader, writer):
    data = await reader.read(100)
    message = data.decode()
    addr = writer.get_extra_info('peername')

    print(f"Received {message!r} from {addr!r}")

    print(f"Send: {message!r}")
    writer.write(data)
    await writer.drain()

    print("Close the connection")
    writer.close()
    await writer.wait_closed()


async def main():
    server = await asyncio.start_server(
        handle_echo, sys.argv[1], int(sys.argv[2]))

    addrs = ', '.join(str(sock.getsockname()) for sock in server.sockets)
    print(f'Serving on {addrs}')

    async with server:
        await server.serve_forever()

asyncio.run(main())
