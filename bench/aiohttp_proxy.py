"""The Python baseline: a plain reverse proxy on aiohttp (server and client), as a Python
developer would write one without fastkong.

One ``aiohttp.web`` handler forwards every request to one upstream through a shared
``ClientSession`` (keep-alive pool, no limit on connections), reads the whole answer and sends
it back; hop-by-hop headers are dropped both ways. uvloop is used when installed (it is a
fastkong dependency, and aiohttp deployments commonly run on it). ``--workers N`` forks N
processes sharing one listening socket, like Granian's workers. No routing, no plugins.

Run: ``python bench/aiohttp_proxy.py --port 8000 --upstream 127.0.0.1:9000 --workers 1``
(``pip install aiohttp``).
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import os
import signal
import socket
import sys

from aiohttp import ClientSession, ClientTimeout, TCPConnector, web

HOP_BY_HOP = frozenset(
    (
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "content-length",  # set again from the body we send
        "host",
    )
)


def make_app(upstream: str) -> web.Application:
    base = f"http://{upstream}"
    app = web.Application()

    async def start(app: web.Application) -> None:
        app["client"] = ClientSession(
            connector=TCPConnector(limit=0, ttl_dns_cache=None),
            timeout=ClientTimeout(total=60),
            auto_decompress=False,
        )

    async def stop(app: web.Application) -> None:
        await app["client"].close()

    async def proxy(request: web.Request) -> web.Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        body = await request.read() if request.body_exists else None
        async with app["client"].request(
            request.method,
            base + request.path_qs,
            headers=headers,
            data=body,
            allow_redirects=False,
        ) as upstream_response:
            payload = await upstream_response.read()
            out = {
                k: v for k, v in upstream_response.headers.items() if k.lower() not in HOP_BY_HOP
            }
            return web.Response(status=upstream_response.status, body=payload, headers=out)

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    app.router.add_route("*", "/{tail:.*}", proxy)
    return app


def serve(sock: socket.socket, upstream: str) -> None:
    try:
        import uvloop
    except ImportError:
        pass
    else:
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    web.run_app(make_app(upstream), sock=sock, access_log=None, print=None, handle_signals=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="host:port")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.listen(1024)
    sock.set_inheritable(True)
    if args.workers == 1:
        serve(sock, args.upstream)
        return
    children = []
    for _ in range(args.workers):
        pid = os.fork()
        if pid == 0:
            ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: die with the parent
            serve(sock, args.upstream)
            os._exit(0)
        children.append(pid)

    def forward(signum: int, frame: object) -> None:
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for pid in children:
        while True:
            try:
                os.waitpid(pid, 0)
                break
            except InterruptedError:
                continue
    sys.exit(0)


if __name__ == "__main__":
    main()
