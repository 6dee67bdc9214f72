"""A real OpenLDAP ``slapd`` on free loopback ports, with a throwaway config and directory.

The directory (``dc=example,dc=com``) is loaded with ``slapadd`` before the start: an
organizational unit of people, one ``inetOrgPerson`` per user with a plain ``userPassword``,
and an administrator (``rootdn``) that :meth:`Slapd.set_password` binds as through
``ldapmodify``. With a certificate, slapd also listens for LDAPS and answers StartTLS.

The tests that use it fail, never skip, when slapd is missing: ``scripts/test.sh`` installs
Debian's ``slapd`` and ``ldap-utils`` (``apt-get install slapd ldap-utils``). slapd runs in the
foreground (``-d 0``) as the user running the tests, started and stopped by its pid.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
from pathlib import Path

from tests.helpers import free_port, stop, wait_port

MISSING = (
    "{} is not installed: the ldap-auth tests need OpenLDAP (apt-get install slapd ldap-utils)"
)
SUFFIX = "dc=example,dc=com"
PEOPLE = f"ou=scientists,{SUFFIX}"
ADMIN = f"cn=admin,{SUFFIX}"
ADMIN_PASSWORD = "admin-secret"
SCHEMAS = ("core", "cosine", "inetorgperson")


def tool(name: str) -> str:
    """The path of an OpenLDAP program (slapd and slapadd live in /usr/sbin)."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise RuntimeError(MISSING.format(name))
    return found


def _schema_dir() -> Path:
    for candidate in (Path("/etc/ldap/schema"), Path("/etc/openldap/schema")):
        if (candidate / "core.schema").is_file():
            return candidate
    raise RuntimeError(MISSING.format("the OpenLDAP schema (core.schema)"))


def _module_dir() -> Path | None:
    for candidate in (
        Path("/usr/lib/ldap"),
        Path("/usr/lib/openldap"),
        Path("/usr/libexec/openldap"),
    ):
        if (candidate / "back_mdb.la").exists() or (candidate / "back_mdb.so").exists():
            return candidate
    return None  # built in


class Slapd:
    """slapd on ``127.0.0.1:<port>`` (and ``<tls_port>`` for LDAPS when given ``cert``) serving
    ``users`` (uid -> password) under :data:`PEOPLE`."""

    def __init__(
        self, workdir: Path, users: dict[str, str], cert: tuple[str, str] | None = None
    ) -> None:
        self.workdir = workdir
        self.users = users
        self.cert = cert
        self.port = free_port()
        self.tls_port = free_port() if cert is not None else None
        self.proc: subprocess.Popen[bytes] | None = None
        self.loaded = False

    def __repr__(self) -> str:
        pid = self.proc.pid if self.proc is not None else None
        return f"<Slapd 127.0.0.1:{self.port} ldaps={self.tls_port} pid={pid}>"

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    def dn(self, uid: str) -> str:
        return f"uid={uid},{PEOPLE}"

    def _configure(self) -> Path:
        data = self.workdir / "db"
        data.mkdir(exist_ok=True)
        schemas = _schema_dir()
        lines = [f"include {schemas / name}.schema" for name in SCHEMAS]
        modules = _module_dir()
        if modules is not None:
            lines += [f"modulepath {modules}", "moduleload back_mdb"]
        lines.append(f"pidfile {self.workdir / 'slapd.pid'}")
        if self.cert is not None:
            cert, key = self.workdir / "cert.pem", self.workdir / "key.pem"
            cert.write_text(self.cert[0])
            key.write_text(self.cert[1])
            lines += [f"TLSCertificateFile {cert}", f"TLSCertificateKeyFile {key}"]
        lines += [
            "database mdb",
            "maxsize 16777216",
            f'suffix "{SUFFIX}"',
            f'rootdn "{ADMIN}"',
            f"rootpw {ADMIN_PASSWORD}",
            f"directory {data}",
        ]
        conf = self.workdir / "slapd.conf"
        conf.write_text("\n".join(lines) + "\n")
        return conf

    def _ldif(self) -> str:
        entries = [
            f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\n"
            "o: Example\ndc: example\n",
            f"dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: scientists\n",
        ]
        for uid, password in self.users.items():
            entries.append(
                f"dn:: {_b64(self.dn(uid))}\nobjectClass: inetOrgPerson\nuid:: {_b64(uid)}\n"
                f"cn:: {_b64(uid)}\nsn:: {_b64(uid)}\nuserPassword:: {_b64(password)}\n"
            )
        return "\n".join(entries)

    def start(self) -> Slapd:
        conf = self._configure()
        if not self.loaded:
            subprocess.run(
                [tool("slapadd"), "-f", str(conf)],
                input=self._ldif().encode(),
                check=True,
                capture_output=True,
                timeout=30,
            )
            self.loaded = True
        urls = self.url + "/"
        if self.tls_port is not None:
            urls += f" ldaps://127.0.0.1:{self.tls_port}/"
        log = (self.workdir / "slapd.log").open("ab")
        self.proc = subprocess.Popen(
            [tool("slapd"), "-h", urls, "-f", str(conf), "-d", "0"],
            stdout=log,
            stderr=log,
        )
        log.close()
        wait_port(self.port, proc=self.proc)
        if self.tls_port is not None:
            wait_port(self.tls_port, proc=self.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            self.proc = None

    def set_password(self, uid: str, password: str) -> None:
        """Replace ``uid``'s password, as an administrator would (``ldapmodify``)."""
        change = (
            f"dn:: {_b64(self.dn(uid))}\nchangetype: modify\nreplace: userPassword\n"
            f"userPassword:: {_b64(password)}\n"
        )
        subprocess.run(
            [tool("ldapmodify"), "-x", "-H", self.url, "-D", ADMIN, "-w", ADMIN_PASSWORD],
            input=change.encode(),
            check=True,
            capture_output=True,
            timeout=30,
        )


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()
