"""The office's mail settings: `tonghop.toml` (see tonghop.example.toml), and where passwords come from.

A password is never read from the file and never written anywhere by tonghop: it comes from an
environment variable (named in the file, TONGHOP_IMAP_PASSWORD / TONGHOP_SMTP_PASSWORD by default,
TONGHOP_MAIL_PASSWORD for both) or from the system keyring (service "tonghop", the login as user name),
when the optional `keyring` package is installed. Problems raise ConfigError with a Vietnamese message.
"""

from __future__ import annotations

import datetime as dt
import os
import ssl
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_CONFIG = Path("tonghop.toml")
KEYRING_SERVICE = "tonghop"
SECURITIES = ("tls", "starttls")
DEFAULT_PORTS = {
    ("imap", "tls"): 993,
    ("imap", "starttls"): 143,
    ("smtp", "tls"): 465,
    ("smtp", "starttls"): 587,
}


class ConfigError(ValueError):
    """The mail settings cannot be used; the message (Vietnamese) says what to change."""


@dataclass(frozen=True)
class Server:
    """How to reach one mail server (IMAP or SMTP) and log in."""

    protocol: str  # "imap" | "smtp"
    host: str
    port: int
    security: str  # "tls": TLS from the first byte; "starttls": plain, then STARTTLS before logging in
    user: str
    password_env: str
    ca_file: Path | None = None
    timeout: float = 60.0

    def tls_context(self) -> ssl.SSLContext:
        """A verifying TLS context (the system's certificates, or `ca_file` when set)."""
        ctx = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        return ctx

    @property
    def account(self) -> str:
        """A name for this login in the store: user@host:port."""
        return f"{self.user}@{self.host}:{self.port}"

    def password(self) -> str:
        """The password from the environment or the keyring; ConfigError when neither has it."""
        for var in (self.password_env, "TONGHOP_MAIL_PASSWORD"):
            value = os.environ.get(var)
            if value:
                return value
        try:
            import keyring  # optional: pip install keyring

            value = keyring.get_password(KEYRING_SERVICE, self.user)
        except Exception:  # no keyring package, or no usable keyring backend on this machine
            value = None
        if value:
            return value
        raise ConfigError(
            f"Chưa có mật khẩu cho tài khoản {self.user} ({self.protocol.upper()}). Đặt mật khẩu vào biến "
            f"môi trường {self.password_env} (ví dụ trên Windows: set {self.password_env}=...), hoặc lưu vào "
            f"kho mật khẩu của máy: keyring set {KEYRING_SERVICE} {self.user}"
        )


@dataclass(frozen=True)
class MailConfig:
    address: str  # the office's address (From: of what is sent)
    name: str  # the office's name as wards see it in From: and below the letters
    imap: Server | None
    smtp: Server | None
    mailbox: str = "INBOX"
    per_minute: float = 20.0  # messages sent a minute at most (0: no pause)
    deadlines: dict[str, dt.date] = field(default_factory=dict)  # period → deadline
    path: Path = DEFAULT_CONFIG


def _server(raw: dict, protocol: str, address: str, base: Path, where: str) -> Server | None:
    if not raw:
        return None
    if "password" in raw:
        raise ConfigError(
            f"{where}: không ghi mật khẩu vào tệp cấu hình. Xóa dòng password và đặt mật khẩu vào biến "
            f"môi trường {raw.get('password_env') or f'TONGHOP_{protocol.upper()}_PASSWORD'} "
            "hoặc kho mật khẩu."
        )
    host = raw.get("host")
    if not isinstance(host, str) or not host.strip():
        raise ConfigError(f'{where}: thiếu tên máy chủ (host), ví dụ host = "{protocol}.gmail.com".')
    security = str(raw.get("security", "tls")).lower()
    if security not in SECURITIES:
        raise ConfigError(f'{where}: security phải là "tls" hoặc "starttls", không phải {security!r}.')
    port = raw.get("port", DEFAULT_PORTS[(protocol, security)])
    if not isinstance(port, int) or not 0 < port < 65536:
        raise ConfigError(f"{where}: cổng (port) phải là số từ 1 đến 65535, không phải {port!r}.")
    user = raw.get("user", address)
    if not isinstance(user, str) or not user:
        raise ConfigError(f"{where}: thiếu tên đăng nhập (user).")
    ca_file = raw.get("ca_file")
    if ca_file is not None:
        ca_file = (base / str(ca_file)).resolve()
        if not ca_file.is_file():
            raise ConfigError(f"{where}: không tìm thấy tệp chứng chỉ ca_file «{ca_file}».")
    timeout = raw.get("timeout", 60)
    if not isinstance(timeout, (int, float)) or timeout <= 0:
        raise ConfigError(f"{where}: timeout phải là số giây lớn hơn 0.")
    return Server(
        protocol=protocol,
        host=host.strip(),
        port=port,
        security=security,
        user=user,
        password_env=str(raw.get("password_env") or f"TONGHOP_{protocol.upper()}_PASSWORD"),
        ca_file=ca_file,
        timeout=float(timeout),
    )


def _date(value: object, where: str) -> dt.date:
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise ConfigError(
            f"{where}: hạn nộp {value!r} phải viết dạng năm-tháng-ngày, ví dụ 2020-07-20."
        ) from None


def load_config(path: Path | str = DEFAULT_CONFIG) -> MailConfig:
    """Read `tonghop.toml`; raises ConfigError (Vietnamese) when it is missing or wrong."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise ConfigError(
            f"Chưa có tệp cấu hình hộp thư «{path}». Chép tệp tonghop.example.toml thành {path.name} "
            "rồi điền địa chỉ hộp thư và máy chủ của Phòng."
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Không đọc được tệp cấu hình «{path}»: {exc.__class__.__name__}.") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"Tệp cấu hình «{path}» viết sai cú pháp ({exc}).") from None
    mail = raw.get("mail", {})
    address = mail.get("address")
    if not isinstance(address, str) or "@" not in address:
        raise ConfigError(f'{path.name} [mail]: thiếu địa chỉ thư của Phòng (address = "...@...").')
    base = path.resolve().parent
    imap = _server(raw.get("imap", {}), "imap", address, base, f"{path.name} [imap]")
    smtp = _server(raw.get("smtp", {}), "smtp", address, base, f"{path.name} [smtp]")
    per_minute = raw.get("smtp", {}).get("per_minute", 20)
    if not isinstance(per_minute, (int, float)) or per_minute < 0:
        raise ConfigError(f"{path.name} [smtp]: per_minute phải là số thư mỗi phút (0: không giới hạn).")
    deadlines = {str(k): _date(v, f"{path.name} [deadlines]") for k, v in raw.get("deadlines", {}).items()}
    return MailConfig(
        address=address.strip(),
        name=str(mail.get("name", "")).strip(),
        imap=imap,
        smtp=smtp,
        mailbox=str(raw.get("imap", {}).get("mailbox", "INBOX")),
        per_minute=float(per_minute),
        deadlines=deadlines,
        path=path,
    )
