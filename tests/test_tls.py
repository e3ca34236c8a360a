"""HTTPS with client-certificate verification (mTLS), with certificates made by openssl."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from pathlib import Path

import aiohttp
import pytest

from tests.support.process import start_remediator
from tests.support.service import TOKEN, fixture_bytes


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_pki(directory: Path) -> None:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by it."""
    directory.mkdir()
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
            "-keyout", "ca.key", "-out", "ca.pem", cwd=directory)  # fmt: skip
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for name in ("server", "client"):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=directory)  # fmt: skip
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-days", "2", "-extfile", "san.ext",
                "-out", f"{name}.pem", cwd=directory)  # fmt: skip


def client_context(pki: Path, with_certificate: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    if with_certificate:
        context.load_cert_chain(pki / "client.pem", pki / "client.key")
    return context


async def post(url: str, context: ssl.SSLContext) -> int:
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=fixture_bytes("firing-2-alerts.json"), headers=headers,
                     ssl=context) as resp,
    ):  # fmt: skip
        return resp.status


async def test_mtls_accepts_a_client_certificate_from_the_ca_and_refuses_none(
    tmp_path: Path,
) -> None:
    pki = tmp_path / "pki"
    make_pki(pki)
    args = ("--tls-cert", str(pki / "server.pem"), "--tls-key", str(pki / "server.key"),
            "--tls-client-ca", str(pki / "ca.pem"))  # fmt: skip
    service = await start_remediator(tmp_path / "svc", extra_args=args, wait_ready=False)
    url = service.url.replace("http://", "https://") + "/webhook"
    try:
        for _ in range(100):
            try:
                assert await post(url, client_context(pki, with_certificate=True)) == 200
                break
            except aiohttp.ClientConnectorError:
                await asyncio.sleep(0.1)
        else:
            raise AssertionError(service.log_tail())
        with pytest.raises(aiohttp.ClientError):
            await post(url, client_context(pki, with_certificate=False))
    finally:
        assert await service.stop() == 0
