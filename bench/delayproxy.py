#!/usr/bin/env python3
# SPDX-License-Identifier: BSL-1.0
# A TCP proxy on 127.0.0.1 that holds every chunk the server sends for DELAY_MS
# before passing it on: "Redis answers slowly" for bench/redis_exit.sh.
#   bench/delayproxy.py LISTEN_PORT UPSTREAM_PORT DELAY_MS
import asyncio
import sys

listen_port, upstream_port, delay = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]) / 1000.0


async def pipe(reader, writer, hold):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            if hold:
                await asyncio.sleep(hold)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


async def handle(client_reader, client_writer):
    try:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream_port)
    except OSError:
        client_writer.close()
        return
    await asyncio.gather(pipe(up_reader, client_writer, delay), pipe(client_reader, up_writer, 0))


async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", listen_port)
    async with server:
        await server.serve_forever()


asyncio.run(main())
