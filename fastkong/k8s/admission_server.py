"""The admission webhook's HTTPS server (KIC's ``--admission-webhook-listen``).

The API server POSTs an ``AdmissionReview`` to ``/`` over TLS and expects the review back with
its ``response`` (:mod:`fastkong.k8s.admission` decides it). Every controller replica serves it
from its own watch cache, leader or not, so the webhook's Service may route to any of them.

- A review is judged in a worker thread (a translation of the cluster), one at a time: the
  event loop keeps serving health checks and watches meanwhile.
- Until every watched kind has been listed once, the cache may lack what an object refers to;
  reviews are then allowed, with a warning saying they were not checked.
- The certificate and key files are read again when either changes (cert-manager, or a Secret
  volume kubelet refreshes), checked every ``reload_interval`` seconds; new connections get
  the new pair, and a pair that does not load keeps the old one (logged).
- A body that is not an AdmissionReview gets 400; a review that fails inside gets 500, which
  the API server treats by the webhook's ``failurePolicy``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
from collections.abc import Callable
from typing import Final

from aiohttp import web

from fastkong.k8s.admission import Reviewer, ReviewError, Verdict, answer, parse_review
from fastkong.k8s.store import Obj

log = logging.getLogger("fastkong.k8s.admission")

#: An AdmissionReview holds the object and its old version: Secrets and ConfigMaps may be
#: 1 MiB each.
MAX_BODY: Final = 4 * 1024 * 1024
NOT_SYNCED: Final = "fastkong controller cache not synced yet: not validated"

#: The cluster as the controller sees it: (objects, store generation, caches synced).
Snapshot = Callable[[], tuple[list[Obj], int, bool]]


class AdmissionServer:
    """``await start()`` ... ``await stop()``; ``port`` is the bound port."""

    def __init__(
        self,
        reviewer: Reviewer,
        snapshot: Snapshot,
        listen: str,
        cert_file: str,
        key_file: str,
        *,
        reload_interval: float = 10.0,
    ) -> None:
        self.reviewer = reviewer
        self.snapshot = snapshot
        self.listen = listen
        self.cert_file = cert_file
        self.key_file = key_file
        self.reload_interval = reload_interval
        self.port = 0
        self.reloads = 0
        self._stamp = self._file_stamp()
        self._context = self._load_context()
        self._lock = asyncio.Lock()
        self._runner: web.AppRunner | None = None
        self._watcher: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"<AdmissionServer :{self.port} reloads={self.reloads} {self.reviewer!r}>"

    def _file_stamp(self) -> tuple[int, ...]:
        stamps: list[int] = []
        for path in (self.cert_file, self.key_file):
            try:
                st = os.stat(path)  # (a symlink swap, as kubelet's, changes the inode)
            except OSError:
                stamps += [0, 0, 0]
            else:
                stamps += [st.st_mtime_ns, st.st_ino, st.st_size]
        return tuple(stamps)

    def _load_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2  # as KIC's webhook server
        context.load_cert_chain(self.cert_file, self.key_file)
        return context

    async def start(self) -> None:
        host, _, port = self.listen.rpartition(":")
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_post("/", self._review)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(
            self._runner, host.strip("[]") or "0.0.0.0", int(port), ssl_context=self._context
        )
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        self._watcher = asyncio.create_task(self._watch_files())

    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def reload_if_changed(self) -> bool:
        """Load the pair again if a file changed; True when the new pair is in use."""
        stamp = self._file_stamp()
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        try:
            # The listening socket's context, changed in place: new handshakes use the new pair.
            self._context.load_cert_chain(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as exc:
            log.error("admission webhook certificate not reloaded, keeping the old one: %s", exc)
            return False
        self.reloads += 1
        log.info("admission webhook certificate reloaded from %s", self.cert_file)
        return True

    async def _watch_files(self) -> None:
        while True:
            await asyncio.sleep(self.reload_interval)
            self.reload_if_changed()

    async def _review(self, request: web.Request) -> web.Response:
        try:
            review = parse_review(await request.read())
        except ReviewError as exc:
            return web.Response(status=400, text=f"{exc}\n")
        objects, generation, synced = self.snapshot()
        if not synced:
            verdict = Verdict(True, warnings=(NOT_SYNCED,))
        else:
            async with self._lock:
                try:
                    verdict = await asyncio.to_thread(
                        self.reviewer.review, review, objects, generation
                    )
                except Exception:
                    log.exception("admission review failed")
                    return web.Response(status=500, text="admission review failed\n")
        if not verdict.allowed:
            log.info(
                "refused %s %s %s/%s: %s",
                review.get("operation"),
                (review.get("kind") or {}).get("kind"),
                review.get("namespace") or "",
                review.get("name") or "",
                verdict.message,
            )
        return web.json_response(answer(review, verdict))


__all__ = ["AdmissionServer"]
