"""Every ``proxy_listen`` entry served, as Kong's: a plain and an ``ssl`` listener side by side
(Kong's default), TLS with Kong's generated certificate when none is set, one node's state
(config, rate-limit counters) shared by both, and a stop that ends both."""

from __future__ import annotations

import base64
import hashlib
import os
import signal
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from tests.helpers import Echo, Gateway, KubeletVolume, echoed_headers, eventually, free_port
from tests.pki import Pki

pytestmark = pytest.mark.integration


def config(echo: Echo, extra_route: str = "") -> str:
    return f"""
_format_version: "3.0"
services:
- name: echo
  url: http://127.0.0.1:{echo.port}
  routes:
  - name: secure
    paths: ["/secure"]
    protocols: ["https"]
  - name: both
    paths: ["/both"]
    plugins:
    - name: rate-limiting
      config: {{year: 2, policy: local}}
{extra_route}"""


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, echo: Echo) -> Iterator[Gateway]:
    workdir = tmp_path_factory.mktemp("listeners")
    gw = Gateway(workdir, config(echo), 1, "--prefix", str(workdir / "prefix"))
    gw.ssl_port = free_port()
    gw.start()
    yield gw
    gw.stop()


def served_certificate(port: int, ciphers: str | None = None) -> x509.Certificate:
    """The certificate the TLS listener on ``port`` presents (not verified: self-signed); with
    ``ciphers``, over TLS 1.2 with only those (which decide the key type the client takes)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if ciphers is not None:
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        context.set_ciphers(ciphers)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def https(gw: Gateway, path: str) -> str:
    return f"https://127.0.0.1:{gw.ssl_port}{path}"


def test_the_ssl_listener_serves_kongs_generated_certificates(gateway: Gateway) -> None:
    assert gateway.ssl_port is not None
    # Kong's two: an RSA and an ECDSA pair, each client getting the one its key exchange takes.
    for ciphers, name, key_type in (
        ("ECDHE-RSA-AES128-GCM-SHA256", "kong-default", rsa.RSAPublicKey),
        ("ECDHE-ECDSA-AES128-GCM-SHA256", "kong-default-ecdsa", ec.EllipticCurvePublicKey),
        (None, "kong-default-ecdsa", ec.EllipticCurvePublicKey),  # TLS 1.3: ECDSA first
    ):
        cert = served_certificate(gateway.ssl_port, ciphers)
        assert isinstance(cert.public_key(), key_type), ciphers
        subject = {a.oid: a.value for a in cert.subject}
        assert subject[NameOID.COMMON_NAME] == "localhost"
        assert subject[NameOID.ORGANIZATION_NAME] == "Kong"
        assert cert.issuer == cert.subject  # self-signed
        # Kept in the prefix under Kong's names, so a restart serves the same ones.
        ssl_dir = gateway.workdir / "prefix" / "ssl"
        assert x509.load_pem_x509_certificate((ssl_dir / f"{name}.crt").read_bytes()) == cert
        assert oct((ssl_dir / f"{name}.key").stat().st_mode)[-3:] == "600"


def test_an_https_route_is_426_on_plain_and_served_on_ssl(gateway: Gateway) -> None:
    plain = httpx.get(gateway.url("/secure/x"))
    assert plain.status_code == 426
    assert plain.json()["message"] == "Please use HTTPS protocol"
    with httpx.Client(verify=False, http2=True) as client:
        r = client.get(https(gateway, "/secure/x?q=1"))
    assert r.status_code == 200
    assert r.http_version == "HTTP/2"  # the listener's http2 flag
    seen = echoed_headers(r.json())
    assert seen["x-forwarded-proto"] == ["https"]
    assert seen["x-forwarded-port"] == [str(gateway.ssl_port)]
    assert r.json()["url"] == "/x?q=1"


def test_both_listeners_count_against_one_limit(gateway: Gateway) -> None:
    first = httpx.get(gateway.url("/both/a"))
    second = httpx.get(https(gateway, "/both/b"), verify=False)
    third = httpx.get(gateway.url("/both/c"))
    fourth = httpx.get(https(gateway, "/both/d"), verify=False)
    assert [first.status_code, second.status_code] == [200, 200]
    assert second.headers["x-ratelimit-remaining-year"] == "0"
    assert [third.status_code, fourth.status_code] == [429, 429]


def test_a_posted_config_reaches_both_listeners(gateway: Gateway, echo: Echo) -> None:
    added = f"""- name: added
  url: http://127.0.0.1:{echo.port}
  routes:
  - name: added
    paths: ["/added"]
"""
    assert httpx.get(gateway.url("/added/x")).status_code == 404
    admin = f"http://127.0.0.1:{gateway.admin_port}/config"
    posted = httpx.post(admin, content=config(echo, added), headers={"content-type": "text/yaml"})
    assert posted.status_code == 201, posted.text
    posted_hash = gateway.status()["configuration_hash"]
    # Both listeners' workers (one Granian process each) take the new config.
    eventually(lambda: set(gateway.status()["fastkong"]["workers"].values()) == {posted_hash})
    # One worker per listener, and the stream process that serves the ssl one's TLS (the edge).
    assert len(gateway.worker_pids()) == 3
    for url in (gateway.url("/added/x"), https(gateway, "/added/x")):
        assert httpx.get(url, verify=False).status_code == 200


def test_the_node_reports_kongs_listener_shape(gateway: Gateway) -> None:
    conf = httpx.get(f"http://127.0.0.1:{gateway.admin_port}/").json()["configuration"]
    assert conf["proxy_listen"] == [
        f"127.0.0.1:{gateway.port}",
        f"127.0.0.1:{gateway.ssl_port} ssl http2",
    ]
    tls = conf["proxy_listeners"][1]
    assert (tls["ip"], tls["port"], tls["ssl"], tls["http2"]) == (
        "127.0.0.1",
        gateway.ssl_port,
        True,
        True,
    )
    assert conf["proxy_listeners"][0]["ssl"] is False


def test_a_given_certificate_is_served_and_stop_ends_both(tmp_path: Path, echo: Echo) -> None:
    cert_pem, key_pem = Pki("listeners-ca").issue("edge.test", dns="edge.test")
    cert_path, key_path = tmp_path / "edge.crt", tmp_path / "edge.key"
    cert_path.write_text(cert_pem)
    key_path.write_text(key_pem)
    tls = ("--ssl-cert", str(cert_path), "--ssl-key", str(key_path))
    gw = Gateway(tmp_path, config(echo), 1, *tls)
    gw.ssl_port = free_port()
    gw.start()
    try:
        served = served_certificate(gw.ssl_port)
        assert served == x509.load_pem_x509_certificate(cert_pem.encode())
        # The plain listener stays plain with a certificate set (Kong's rule: ssl is a flag).
        assert httpx.get(gw.url("/both/x")).status_code == 200
    finally:
        assert gw.stop() == 0
    for port in (gw.port, gw.ssl_port):
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_an_rsa_and_an_ecdsa_pair_are_served_side_by_side(tmp_path: Path, echo: Echo) -> None:
    """Kong's ssl_cert is a list, each entry a path or the PEM text (or base64 of it, as
    Secrets reach environment variables), usually an RSA and an ECDSA pair: each client gets the
    one its key exchange supports, as from nginx's several ``ssl_certificate`` lines."""
    pki = Pki("listeners-b64-ca")
    pairs = [pki.issue("rsa.test", rsa_key=True), pki.issue("ecdsa.test")]
    (tmp_path / "second.crt").write_text(pairs[1][0])
    (tmp_path / "second.key").write_text(pairs[1][1])
    b64 = [base64.b64encode(pem.encode()).decode() for pem in pairs[0]]
    tls = (
        "--ssl-cert",
        f"{b64[0]},{tmp_path / 'second.crt'}",
        "--ssl-key",
        f"{b64[1]},{tmp_path / 'second.key'}",
    )
    gw = Gateway(tmp_path, config(echo), 1, *tls)
    gw.ssl_port = free_port()
    gw.start()
    try:
        rsa_cert, ecdsa_cert = (x509.load_pem_x509_certificate(p[0].encode()) for p in pairs)
        assert served_certificate(gw.ssl_port, "ECDHE-RSA-AES128-GCM-SHA256") == rsa_cert
        assert served_certificate(gw.ssl_port, "ECDHE-ECDSA-AES128-GCM-SHA256") == ecdsa_cert
        assert served_certificate(gw.ssl_port) in (rsa_cert, ecdsa_cert)
    finally:
        assert gw.stop() == 0


def renewal_gateway(tmp_path: Path, echo: Echo, *args: str) -> tuple[Gateway, KubeletVolume]:
    pki = Pki("listeners-renewal-ca")
    first = pki.issue("first.test")
    volume = KubeletVolume(tmp_path / "secret", "tls.crt")
    volume.write_files({"tls.crt": first[0], "tls.key": first[1]})
    tls = ("--ssl-cert", str(volume.file("tls.crt")), "--ssl-key", str(volume.file("tls.key")))
    route = "  - name: plain\n    paths: [/plain]\n"
    gw = Gateway(
        tmp_path, config(echo, route), 1, "--prefix", str(tmp_path / "prefix"), *tls, *args
    )
    gw.ssl_port = free_port()
    gw.start()
    assert served_certificate(gw.ssl_port) == x509.load_pem_x509_certificate(first[0].encode())
    return gw, volume


def request_until(gw: Gateway, done: threading.Event, statuses: list[int | str]) -> None:
    """GET over the ssl listener until ``done``, a new connection per request (each one meets
    whichever worker is up, and makes a new handshake); each status, or the error, noted."""
    while not done.is_set():
        try:
            r = httpx.get(https(gw, "/plain/x"), verify=False, timeout=10)
            statuses.append(r.status_code)
        except httpx.HTTPError as exc:
            statuses.append(repr(exc))


def test_a_renewed_secret_is_served_by_the_edge_with_no_request_lost(
    tmp_path: Path, echo: Echo
) -> None:
    """cert-manager renews the Secret mounted at ssl_cert: the edge (fastkong's TLS) serves the
    new pair to new handshakes within seconds, replacing no process, so not one request of a
    client opening a connection per request goes unanswered."""
    gw, volume = renewal_gateway(tmp_path, echo)
    assert gw.ssl_port is not None
    statuses: list[int | str] = []
    done = threading.Event()
    client = threading.Thread(target=request_until, args=(gw, done, statuses))
    try:
        client.start()
        before = set(gw.worker_pids())
        second = Pki("listeners-renewal-ca-2").issue("second.test")
        volume.write_files({"tls.crt": second[0], "tls.key": second[1]})
        renewed = x509.load_pem_x509_certificate(second[0].encode())
        eventually(lambda: served_certificate(gw.ssl_port or 0) == renewed, timeout=20)
        time.sleep(1)
        done.set()
        client.join(timeout=15)
        assert set(gw.worker_pids()) == before  # nothing was restarted
        assert len(statuses) >= 10 and set(statuses) == {200}, [x for x in statuses if x != 200][:5]
        assert gw.status()["fastkong"]["certificate"]["reloads"] == {"success": 1, "failure": 0}
    finally:
        done.set()
        if client.is_alive():
            client.join(timeout=15)
        assert gw.stop() == 0


def test_a_renewed_secret_is_served_by_granian_while_requests_go_on(
    tmp_path: Path, echo: Echo
) -> None:
    """With ``--ssl-termination granian``: the new pair is served within seconds, requests
    meanwhile are answered, and a worker that dies after the renewal is respawned (Granian
    resolved the first paths, which kubelet has since deleted)."""
    gw, volume = renewal_gateway(tmp_path, echo, "--ssl-termination", "granian")
    second = Pki("listeners-renewal-ca-2").issue("second.test")
    port = gw.ssl_port
    assert port is not None
    statuses: list[int | str] = []
    done = threading.Event()
    client = threading.Thread(target=request_until, args=(gw, done, statuses))
    try:
        client.start()
        before = set(gw.worker_pids())  # the plain listener's worker and the ssl one's
        volume.write_files({"tls.crt": second[0], "tls.key": second[1]})
        renewed = x509.load_pem_x509_certificate(second[0].encode())
        eventually(lambda: served_certificate(port) == renewed, timeout=20)

        def replaced() -> bool:  # the ssl worker replaced and the old one drained; no other
            now = set(gw.worker_pids())
            return len(now) == 2 and len(now - before) == 1

        eventually(replaced, timeout=20)
        (ssl_worker,) = set(gw.worker_pids()) - before
        done.set()
        client.join(timeout=15)
        # Every answer is a 200. The one thing a worker's replacement may cost, as an nginx
        # reload does, is a connection the old worker accepted an instant before it stopped,
        # closed before the request was read (in the TLS handshake, or before the request
        # head); this client has one request at a time, so that is one at most, and it must be
        # exactly that (never a reset mid-answer or a 5xx).
        unanswered = [x for x in statuses if x != 200]
        assert len(statuses) >= 10 and len(unanswered) <= 1, unanswered[:5]
        closed_early = ("Server disconnected without sending a response", "UNEXPECTED_EOF")
        assert all(any(m in str(x) for m in closed_early) for x in unanswered), unanswered
        status = gw.status()["fastkong"]["certificate"]
        assert status["reloads"] == {"success": 1, "failure": 0}
        # A worker that dies now is respawned from fastkong's copy of the pair. (Granian takes
        # a worker dying within 5.5 s of its start for a crash loop and gives up: wait that out.)
        time.sleep(3)
        os.kill(ssl_worker, signal.SIGKILL)
        eventually(lambda: len(set(gw.worker_pids()) - before - {ssl_worker}) == 1, timeout=20)
        assert served_certificate(port) == renewed
    finally:
        done.set()
        if client.is_alive():
            client.join(timeout=15)
        assert gw.stop() == 0


def idle_lifetime(port: int, limit: float) -> float:
    """Seconds an HTTP/1.1 connection stays open after one answered request (``limit`` if it
    outlives it); the connection is used again after a short idle time first."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        for _ in range(2):
            sock.sendall(b"GET /both/none HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 ")
            time.sleep(0.5)
        start = time.monotonic()
        sock.settimeout(limit)
        try:
            assert sock.recv(1) == b""  # closed by the gateway
        except TimeoutError:
            return limit
        return time.monotonic() - start


def test_idle_client_connections_follow_keepalive_timeout(tmp_path: Path, echo: Echo) -> None:
    # Kong leaves nginx's keepalive_timeout, 75 s; Granian alone would close idle
    # connections after 30 s, under the 60 s idle timeout of the load balancers in front.
    gw = Gateway(tmp_path, config(echo), 1, "--keepalive-timeout", "2s")
    gw.start()
    try:
        assert 1.0 <= idle_lifetime(gw.port, 15) < 15
    finally:
        assert gw.stop() == 0
    # 0: no keep-alive, as nginx's keepalive_timeout 0.
    gw = Gateway(tmp_path, config(echo), 1, "--keepalive-timeout", "0")
    gw.start()
    try:
        with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
            sock.sendall(b"GET /both/none HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 ") and b"\r\nconnection: close\r\n" in answer.lower()
    finally:
        assert gw.stop() == 0


def handshake(port: int, version: ssl.TLSVersion) -> str | None:
    """The TLS version a client limited to ``version`` agrees on, None if it is refused."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = context.maximum_version = version
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        try:
            with context.wrap_socket(raw, server_hostname="localhost") as tls:
                return tls.version()
        except ssl.SSLError:
            return None


def test_tls_12_clients_are_served_as_by_kongs_default_suite(gateway: Gateway) -> None:
    assert gateway.ssl_port is not None
    assert handshake(gateway.ssl_port, ssl.TLSVersion.TLSv1_2) == "TLSv1.2"
    assert handshake(gateway.ssl_port, ssl.TLSVersion.TLSv1_3) == "TLSv1.3"


def test_the_modern_suite_accepts_tls_13_only(tmp_path: Path, echo: Echo) -> None:
    gw = Gateway(tmp_path, config(echo), 1, "--ssl-cipher-suite", "modern")
    gw.ssl_port = free_port()
    gw.start()
    try:
        assert handshake(gw.ssl_port, ssl.TLSVersion.TLSv1_2) is None
        assert handshake(gw.ssl_port, ssl.TLSVersion.TLSv1_3) == "TLSv1.3"
    finally:
        assert gw.stop() == 0


def children(pid: int) -> list[tuple[int, str]]:
    """(pid, command line) of the processes whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append((int(entry.name), cmdline))
    return found


def process_state(pid: int) -> list[str] | None:
    """``[state, parent pid]`` from ``/proc``, None once the process is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[:2]
    except OSError:
        return None


def running(pid: int) -> bool:
    state = process_state(pid)
    return state is not None and state[0] != "Z"


def test_a_listener_that_dies_stops_the_node(tmp_path: Path, echo: Echo) -> None:
    """The node serves every listener or none: when one Granian process dies, the supervisor
    drains the others and exits non-zero, so the orchestrator restarts it whole."""
    gw = Gateway(tmp_path, config(echo), 1)
    gw.ssl_port = free_port()
    gw.start()
    assert gw.proc is not None
    try:
        masters = [(pid, cmd) for pid, cmd in children(gw.proc.pid) if "granian_main" in cmd]
        assert len(masters) == 2
        (plain_master,) = [pid for pid, cmd in masters if f'"port": {gw.port}' in cmd]
        plain_workers = [pid for pid, _ in children(plain_master)]
        os.kill(plain_master, signal.SIGKILL)
        assert gw.proc.wait(timeout=60) == 1
        # Its orphaned worker ends too (it would go on serving 8000), and the ssl listener's
        # processes are stopped with the node: nothing listens anymore.
        eventually(lambda: not any(running(pid) for pid in plain_workers))
        for port in (gw.port, gw.ssl_port):
            with pytest.raises(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=2).close()
    finally:
        gw.stop()


def test_a_killed_supervisor_takes_its_processes_along(tmp_path: Path, echo: Echo) -> None:
    """SIGKILL (the OOM killer) leaves no Granian master or worker serving behind."""
    prefix = tmp_path / "prefix"
    gw = Gateway(tmp_path, config(echo), 2, "--prefix", str(prefix))
    gw.ssl_port = free_port()
    gw.start()
    # A killed supervisor cannot remove its node's tables from /dev/shm: the test does, below.
    tag = hashlib.md5(str(prefix.resolve()).encode()).hexdigest()[:12]
    assert gw.proc is not None
    masters = [pid for pid, cmd in children(gw.proc.pid) if "granian_main" in cmd]
    workers = [pid for master in masters for pid, _ in children(master)]
    assert len(masters) == 2 and len(workers) == 4
    gw.proc.kill()
    gw.proc.wait()
    # Each master drains its workers first (at most the drain timeout, 30 s). A zombie no
    # longer runs: who reaps orphans (init, or a subreaper above the test) is not ours to wait.
    try:
        eventually(lambda: not any(running(pid) for pid in masters + workers), timeout=45)
    except AssertionError:
        left = {pid: process_state(pid) for pid in masters + workers if running(pid)}
        raise AssertionError(f"still running (pid: state, parent): {left}") from None
    for port in (gw.port, gw.ssl_port):
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
    for table in Path("/dev/shm").glob(f"fastkong-{tag}.*"):
        table.unlink()


def test_http2_only_where_the_listener_says_so(tmp_path: Path, echo: Echo) -> None:
    """Kong's ``http2`` flag: without it a listener speaks HTTP/1.1 alone (TLS offers no h2 in
    ALPN; a plain one refuses HTTP/2's preface); with it, both."""
    gw = Gateway(tmp_path, config(echo), 1)
    gw.port_flags = "ssl"
    gw.ssl_port = free_port()  # "ssl http2"
    gw.start()
    try:
        with httpx.Client(verify=False, http2=True) as client:
            r = client.get(f"https://127.0.0.1:{gw.port}/both/x")
            assert (r.status_code, r.http_version) == (200, "HTTP/1.1")
            r = client.get(https(gw, "/both/x"))
            assert (r.status_code, r.http_version) == (200, "HTTP/2")
    finally:
        gw.stop()
    (tmp_path / "plain").mkdir()
    plain = Gateway(tmp_path / "plain", config(echo), 1).start()
    try:
        assert httpx.get(plain.url("/both/x")).status_code == 200
        with httpx.Client(http1=False, http2=True) as h2c:
            with pytest.raises(httpx.HTTPError):
                h2c.get(plain.url("/both/x"))
    finally:
        plain.stop()
