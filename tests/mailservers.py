"""Real mail servers on loopback for the mail tests, started once per test session.

- IMAP: Debian's Dovecot (`dovecot-imapd`, installed by `make test` / `make mailservers` as root on
  Debian) with a throw-away configuration: its own base_dir under the session's temporary folder, a
  maildir, a passwd-file user, a self-signed certificate made here with `openssl`, free ports chosen
  at start, TLS on the implicit port and STARTTLS on the plain one (`ssl = required`: no login before
  TLS, even from loopback). Tests put messages in with IMAP APPEND, as a mail server delivers them.
- SMTP: aiosmtpd's server in a thread of the test process, once with STARTTLS and once with TLS from
  the first byte, AUTH required; it keeps every message it accepts, refuses (550) any recipient whose
  address starts with "refuse" and answers 450 (try later) for "busy".

Readiness is waited for (the port accepts connections and greets), never slept for. Where Dovecot or
openssl is not installed, the tests needing them are skipped with the reason.
"""

from __future__ import annotations

import contextlib
import grp
import imaplib
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

READY_TIMEOUT = 60.0  # seconds for a server to accept connections: generous for a loaded 2-core machine
USER, PASSWORD = "phong.gd@dongtrieu.test", "mật-khẩu-thử 123"
DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"


class Unavailable(Exception):
    """The server cannot be run here; the message says why (the tests needing it are skipped)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost / 127.0.0.1 (cert.pem, key.pem) made with openssl."""
    if shutil.which("openssl") is None:
        raise Unavailable("openssl is not installed")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "3",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return cert, key


def wait_for_port(port: int, alive=lambda: True, timeout: float = READY_TIMEOUT) -> None:
    """Return when 127.0.0.1:`port` accepts a connection; raise when `alive()` turns False or on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=5):
            return
        if not alive():
            raise Unavailable(f"the server exited before listening on port {port}")
        if time.monotonic() > deadline:
            raise Unavailable(f"nothing listens on port {port} after {timeout:.0f} s")
        time.sleep(0.05)  # polling interval while waiting for readiness, not a synchronisation


@dataclass
class Dovecot:
    root: Path
    cert: Path
    imaps_port: int = 0
    imap_port: int = 0

    def start(self) -> None:
        if not Path(DOVECOT).exists():
            raise Unavailable(
                "Dovecot is not installed (Debian: apt-get install dovecot-imapd; `make test` "
                "installs it when run as root)"
            )
        key = self.cert.with_name("key.pem")
        run, mail = self.root / "run", self.root / "mail"
        run.mkdir(parents=True)
        mail.mkdir()
        if (
            os.geteuid() == 0
        ):  # mail is never accessed as root (Dovecot refuses it): "nobody" owns the maildir
            owner = pwd.getpwnam("nobody")
            uid, gid = owner.pw_uid, owner.pw_gid
            os.chown(mail, uid, gid)
            users = ""
        else:  # a developer's own account runs the whole server
            uid, gid = os.getuid(), os.getgid()
            users = (
                f"default_internal_user = {pwd.getpwuid(uid).pw_name}\n"
                f"default_login_user = {pwd.getpwuid(uid).pw_name}\n"
                f"default_internal_group = {grp.getgrgid(gid).gr_name}\n"
            )
        (self.root / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}:{uid}:{gid}::{mail}/home::\n")
        for _ in range(3):  # another process may take a port between choosing and binding it
            self.imaps_port, self.imap_port = free_port(), free_port()
            conf = self.root / "dovecot.conf"
            conf.write_text(f"""\
base_dir = {run}
state_dir = {self.root / "state"}
log_path = {self.root / "dovecot.log"}
{users}protocols = imap
listen = 127.0.0.1
ssl = required
ssl_cert = <{self.cert}
ssl_key = <{key}
ssl_min_protocol = TLSv1.2
auth_mechanisms = plain login
mail_location = maildir:{mail}/%n
first_valid_uid = 1
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {self.root / "passwd"}
}}
userdb {{
  driver = passwd-file
  args = {self.root / "passwd"}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {self.imaps_port}
    ssl = yes
  }}
}}
""")
            (self.root / "state").mkdir(exist_ok=True)
            # Dovecot daemonizes itself: its master is not a child of the test process (tests that
            # count their own child processes stay right), and is stopped by the pid it writes.
            with (self.root / "stderr.log").open("ab") as log:
                started = subprocess.run([DOVECOT, "-c", str(conf)], stdout=log, stderr=log, timeout=120,
                                         check=False)
            if started.returncode == 0:
                try:
                    wait_for_port(self.imaps_port, self._alive)
                    wait_for_port(self.imap_port, self._alive)
                    return
                except Unavailable:
                    pass
            self.stop()
        errors = (self.root / "stderr.log").read_text(errors="replace")[-500:]
        raise Unavailable(f"Dovecot did not start: {errors} {self._log()[-500:]}")

    def _pid(self) -> int | None:
        try:
            return int((self.root / "run" / "master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def _alive(self) -> bool:
        pid = self._pid()
        if pid is None:
            return True  # not written yet: the port wait's own deadline bounds this
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def _log(self) -> str:
        try:
            return (self.root / "dovecot.log").read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM to Dovecot's master, then wait (bounded) until it is gone."""
        pid = self._pid()
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                os.kill(pid, 0)  # raises ProcessLookupError once it has exited
                time.sleep(0.05)  # polling for the exit of a process that is not our child
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            (self.root / "run" / "master.pid").unlink()

    # --- what the tests do with the mailbox ------------------------------------------------------
    def client(self) -> imaplib.IMAP4_SSL:
        ctx = ssl.create_default_context(cafile=str(self.cert))
        conn = imaplib.IMAP4_SSL("127.0.0.1", self.imaps_port, ssl_context=ctx, timeout=READY_TIMEOUT)
        conn.authenticate("PLAIN", lambda _: f"\0{USER}\0{PASSWORD}".encode())
        return conn

    def new_mailbox(self, name: str) -> None:
        c = self.client()
        try:
            assert c.create(f'"{name}"')[0] == "OK"
        finally:
            c.logout()

    def deliver(self, mailbox: str, *messages: bytes, when: float = 1594780200.0) -> None:
        """APPEND each message (bytes) to `mailbox`, in order."""
        c = self.client()
        try:
            for raw in messages:
                typ, data = c.append(f'"{mailbox}"', None, imaplib.Time2Internaldate(when), raw)
                assert typ == "OK", data
        finally:
            c.logout()

    def recreate(self, mailbox: str) -> None:
        """Delete and create `mailbox` again: the server gives it a new UIDVALIDITY."""
        c = self.client()
        try:
            assert c.delete(f'"{mailbox}"')[0] == "OK"
            assert c.create(f'"{mailbox}"')[0] == "OK"
        finally:
            c.logout()

    def flags(self, mailbox: str) -> list[bytes]:
        c = self.client()
        try:
            c.select(f'"{mailbox}"', readonly=True)
            _, data = c.uid("FETCH", "1:*", "(FLAGS)")
            return [d for d in data if d]
        finally:
            c.logout()

    def logins(self) -> list[str]:
        """The login lines of the server's log (they say "TLS" for STARTTLS, "secured" for imaps)."""
        return [line for line in self._log().splitlines() if "imap-login: Info: Login:" in line]


# --- SMTP -----------------------------------------------------------------------------------------


@dataclass
class Captured:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    login: str


@dataclass
class SmtpServers:
    cert: Path
    starttls_port: int = 0
    tls_port: int = 0
    messages: list[Captured] = field(default_factory=list)
    controllers: list = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        try:
            from aiosmtpd.controller import Controller
            from aiosmtpd.smtp import SMTP, AuthResult
        except ImportError as exc:
            raise Unavailable(f"aiosmtpd is not installed ({exc}); pip install -e '.[test]'") from None
        servers = self
        key = self.cert.with_name("key.pem")

        def server_context() -> ssl.SSLContext:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(str(self.cert), str(key))
            return ctx

        class Handler:
            async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
                local = address.split("@")[0].lower()
                if local.startswith("refuse"):
                    return "550 5.1.1 Mailbox unavailable"
                if local.startswith("busy"):
                    return "450 4.2.1 Mailbox busy, try again later"
                envelope.rcpt_tos.append(address)
                return "250 OK"

            async def handle_DATA(self, server, session, envelope):
                data = session.auth_data
                login = data.login.decode() if getattr(data, "login", None) else ""
                with servers.lock:
                    servers.messages.append(
                        Captured(
                            envelope.mail_from,
                            list(envelope.rcpt_tos),
                            envelope.original_content or envelope.content,
                            login,
                        )
                    )
                return "250 2.0.0 Accepted"

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = (
                getattr(auth_data, "login", b"") == USER.encode()
                and getattr(auth_data, "password", b"") == PASSWORD.encode()
            )
            return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

        class StartTls(Controller):
            def factory(self):
                return SMTP(
                    self.handler,
                    tls_context=server_context(),
                    require_starttls=True,
                    authenticator=authenticator,
                    auth_require_tls=True,
                    auth_required=True,
                    decode_data=False,
                )

        class ImplicitTls(Controller):
            def factory(self):
                # auth_require_tls only knows STARTTLS: on an implicit TLS port the session is already TLS
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    return SMTP(
                        self.handler,
                        authenticator=authenticator,
                        auth_require_tls=False,
                        auth_required=True,
                        decode_data=False,
                    )

        self.starttls_port, self.tls_port = free_port(), free_port()
        plain = StartTls(
            Handler(), hostname="127.0.0.1", port=self.starttls_port, ready_timeout=READY_TIMEOUT
        )
        implicit = ImplicitTls(
            Handler(),
            hostname="127.0.0.1",
            port=self.tls_port,
            ssl_context=server_context(),
            ready_timeout=READY_TIMEOUT,
        )
        for c in (plain, implicit):
            c.start()
            self.controllers.append(c)
        wait_for_port(self.starttls_port)
        wait_for_port(self.tls_port)

    def stop(self) -> None:
        for c in self.controllers:
            with contextlib.suppress(Exception):
                c.stop()
        self.controllers.clear()

    def take(self) -> list[Captured]:
        """The messages accepted since the last call."""
        with self.lock:
            out, self.messages = self.messages, []
        return out
