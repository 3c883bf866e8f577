#!/usr/bin/env python3
# SPDX-License-Identifier: BSL-1.0
# A TCP proxy on 127.0.0.1 that misbehaves on purpose, for the benchmarks:
#   bench/proxy.py LISTEN_PORT UPSTREAM_PORT cut BYTES   closes every connection after
#                                                        BYTES from the server (bench/matrix.sh)
#   bench/proxy.py LISTEN_PORT UPSTREAM_PORT delay MS    holds every chunk from the server
#                                                        MS before passing it on (bench/redis_exit.sh)
import asyncio
import sys

listen_port, upstream_port, mode, amount = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
if mode not in ("cut", "delay"):
    sys.exit("proxy.py: the mode must be 'cut' or 'delay', not '%s'" % mode)
limit = amount if mode == "cut" else None
hold = amount / 1000.0 if mode == "delay" else 0


async def pipe(reader, writer, limit, hold):
    sent = 0
    try:
        while limit is None or sent < limit:
            data = await reader.read(65536 if limit is None else min(65536, limit - sent))
            if not data:
                break
            if hold:
                await asyncio.sleep(hold)
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
    down = asyncio.ensure_future(pipe(up_reader, client_writer, limit, hold))
    up = asyncio.ensure_future(pipe(client_reader, up_writer, None, 0))
    await down  # the server's side decides: when it ends (or is cut), both sides close
    up.cancel()
    up_writer.close()


async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", listen_port)
    async with server:
        await server.serve_forever()


asyncio.run(main())
