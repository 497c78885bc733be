"""Shared fixtures: the report definition, the units list and a headless LibreOffice converter."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from pipeline.definition import load_definition
from pipeline.units import load_units

SOFFICE_TIMEOUT = 180  # seconds; a cold first start of LibreOffice takes a few


@pytest.fixture(scope="session")
def definition():
    """The shipped report definition (schemas/tthtcd-6thang.yaml)."""
    return load_definition()


@pytest.fixture(scope="session")
def units():
    """The shipped units list (21 wards and communes of Đông Triều, 2020). Do not mutate."""
    return load_units()


@pytest.fixture(scope="session")
def soffice_convert(tmp_path_factory):
    """A function convert(src, fmt, outdir) -> Path of the converted file, run by headless LibreOffice.

    One throw-away user profile serves the whole session (only the first start is slow). Tests using it
    are skipped when `soffice` is not on PATH, and fail when a conversion fails or times out.
    """
    exe = shutil.which("soffice")
    profile = tmp_path_factory.mktemp("soffice-profile")

    def convert(src: Path, fmt: str, outdir: Path, infilter: str | None = None) -> Path:
        if exe is None:
            pytest.skip("LibreOffice (soffice) is not on PATH; `make soffice` installs it")
        outdir.mkdir(parents=True, exist_ok=True)
        cmd = [exe, "--headless", "--norestore", f"-env:UserInstallation={profile.as_uri()}",
               *([f"--infilter={infilter}"] if infilter else []), "--convert-to", fmt,
               "--outdir", str(outdir), str(src)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=SOFFICE_TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            pytest.fail(f"soffice --convert-to {fmt} took more than {SOFFICE_TIMEOUT} s")
        out = outdir / f"{Path(src).stem}.{fmt.split(':')[0]}"
        if proc.returncode != 0 or not out.exists():
            pytest.fail(f"soffice --convert-to {fmt} failed ({proc.returncode}): {proc.stderr.strip()}")
        return out

    return convert


@pytest.fixture(scope="session")
def mail_servers():
    """Dovecot (IMAP) and aiosmtpd (SMTP) on loopback, started once (tests/mailservers.py); skips the
    test, saying why, where they cannot run."""
    import tempfile

    from mailservers import Dovecot, SmtpServers, Unavailable, make_certificate

    root = Path(tempfile.mkdtemp(prefix="tonghop-mail-"))
    root.chmod(0o755)  # Dovecot's mail user (not root) walks into its maildir below
    imap = smtp = None
    try:
        cert, _ = make_certificate(root)
        imap, smtp = Dovecot(root / "dovecot", cert), SmtpServers(cert)
        imap.start()
        smtp.start()
    except Unavailable as exc:
        reason = str(exc)
    else:
        reason = None
    yield (imap, smtp) if reason is None else reason
    for server in (imap, smtp):
        if server is not None:
            server.stop()
    shutil.rmtree(root, ignore_errors=True)
