#!/usr/bin/env python3
# SPDX-License-Identifier: BSL-1.0
# A TCP proxy on 127.0.0.1 that closes every connection after it forwarded
# CUT bytes from the server: "connections cut every N MiB" for bench/matrix.sh.
#   bench/cutproxy.py LISTEN_PORT UPSTREAM_PORT CUT_BYTES
import asyncio
import sys

listen_port, upstream_port, cut = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])


async def pipe(reader, writer, limit):
    sent = 0
    try:
        while limit is None or sent < limit:
            want = 65536 if limit is None else min(65536, limit - sent)
            data = await reader.read(want)
            if not data:
                break
            writer.write(data)
            await writer.drain()
            sent += len(data)
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
    down = asyncio.ensure_future(pipe(up_reader, client_writer, cut))
    up = asyncio.ensure_future(pipe(client_reader, up_writer, None))
    await down  # the server's side decides: after CUT bytes both sides close
    up.cancel()
    up_writer.close()


async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", listen_port)
    async with server:
        await server.serve_forever()


asyncio.run(main())
