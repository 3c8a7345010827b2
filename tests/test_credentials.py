"""Every NATS credential kind assetd documents (docs/runbook.md, "Credentials"), end to end:
a nats-server that requires it, the daemon connected with it applying an event that an
AssetClient with it published. Everything secret is made here, at test time: user nkeys
(``nkeys``), operator/account/user JWTs signed with them and a ``.creds`` file, a CA with a
server and a client certificate (``cryptography``)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import hashlib
import ipaddress
import os
import ssl
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import nkeys
import orjson
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from faststream.nats.security import parse_security

from assetd.client import AssetClient
from assetd.config import Settings
from assetd.daemon.embedded import EmbeddedNats
from assetd.daemon.security import nats_security
from tests.conftest import running_daemon, running_nats

# -- nkeys and JWTs ----------------------------------------------------------------------------


def new_key(prefix: int) -> Any:
    """A fresh nkey pair of one kind (nkeys.PREFIX_BYTE_USER, _ACCOUNT, _OPERATOR)."""
    return nkeys.from_seed(nkeys.encode_seed(os.urandom(32), prefix))


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def signed_jwt(subject: Any, issuer: Any, name: str, nats_claims: dict[str, Any]) -> str:
    """A NATS JWT (v2): claims about ``subject``'s public key, signed by ``issuer``'s nkey
    (ed25519), ``jti`` the base32 SHA-512/256 of the claims as the nsc tool writes it."""
    claims: dict[str, Any] = {"jti": "", "iat": int(time.time()), "iss": issuer.public_key.decode(),
                              "name": name, "sub": subject.public_key.decode(),
                              "nats": nats_claims}
    digest = hashlib.new("sha512_256", orjson.dumps(claims)).digest()
    claims["jti"] = base64.b32encode(digest).decode().rstrip("=")
    head = _b64(orjson.dumps({"typ": "JWT", "alg": "ed25519-nkey"}))
    body = _b64(orjson.dumps(claims))
    return f"{head}.{body}.{_b64(issuer.sign(f'{head}.{body}'.encode()))}"


UNLIMITED = {"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
             "wildcards": True, "conn": -1, "leaf": -1,
             "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1}


@dataclass
class Operator:
    """An operator, a system account, one account with JetStream and one user, as JWTs: the
    server's config (``operator``, memory resolver preloaded with both accounts; JetStream
    needs the system account) and the user's creds file."""

    server_config: str
    creds: str


def operator_setup() -> Operator:
    op = new_key(nkeys.PREFIX_BYTE_OPERATOR)
    account, system = new_key(nkeys.PREFIX_BYTE_ACCOUNT), new_key(nkeys.PREFIX_BYTE_ACCOUNT)
    user = new_key(nkeys.PREFIX_BYTE_USER)
    op_jwt = signed_jwt(op, op, "test-operator", {"type": "operator", "version": 2})
    account_jwt = signed_jwt(account, op, "ASSETD", {
        "limits": UNLIMITED, "default_permissions": {"pub": {}, "sub": {}},
        "type": "account", "version": 2})
    system_jwt = signed_jwt(system, op, "SYS", {
        "limits": {**UNLIMITED, "mem_storage": 0, "disk_storage": 0, "streams": 0,
                   "consumer": 0}, "type": "account", "version": 2})
    user_jwt = signed_jwt(user, account, "assetd", {
        "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1,
        "type": "user", "version": 2})
    creds = ("-----BEGIN NATS USER JWT-----\n" f"{user_jwt}\n" "------END NATS USER JWT------\n\n"
             "************************* IMPORTANT *************************\n"
             "NKEY Seed printed below can be used to sign and prove identity.\n"
             "NKEYs are sensitive and should be treated as secrets.\n\n"
             "-----BEGIN USER NKEY SEED-----\n" f"{user.seed.decode()}\n"
             "------END USER NKEY SEED------\n")
    config = (f'operator: "{op_jwt}"\n'
              f"system_account: {system.public_key.decode()}\n"
              "resolver: MEMORY\n"
              f'resolver_preload: {{ {account.public_key.decode()}: "{account_jwt}", '
              f'{system.public_key.decode()}: "{system_jwt}" }}\n')
    return Operator(server_config=config, creds=creds)


# -- certificates ------------------------------------------------------------------------------


def _cert(subject: str, key: Any, issuer: x509.Name, issuer_key: Any, *, ca: bool = False,
          server: bool = False) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(issuer).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5))
               .not_valid_after(now + dt.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False,
            encipher_only=False, decipher_only=False), critical=True)
    elif server:
        builder = builder.add_extension(x509.SubjectAlternativeName([
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False).add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    else:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


@dataclass
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_pki(where: Path) -> Pki:
    """A CA and, signed by it, a certificate for the server (127.0.0.1) and one for a client."""
    def write_key(key: Any, path: Path) -> Path:
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
        return path

    def write_cert(cert: x509.Certificate, path: Path) -> Path:
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return path

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "assetd test CA")])
    ca = _cert("assetd test CA", ca_key, ca_name, ca_key, ca=True)
    server_key, client_key = ec.generate_private_key(ec.SECP256R1()), \
        ec.generate_private_key(ec.SECP256R1())
    return Pki(ca=write_cert(ca, where / "ca.pem"),
               server_cert=write_cert(_cert("127.0.0.1", server_key, ca_name, ca_key,
                                            server=True), where / "server.pem"),
               server_key=write_key(server_key, where / "server-key.pem"),
               client_cert=write_cert(_cert("assetd", client_key, ca_name, ca_key),
                                      where / "client.pem"),
               client_key=write_key(client_key, where / "client-key.pem"))


# -- a secured server per kind ----------------------------------------------------------------


class SecuredNats(EmbeddedNats):
    """The embedded server's config (loopback, JetStream) plus an authorization/TLS block."""

    def __init__(self, *, store_dir: Path, port: int, extra: str) -> None:
        super().__init__(store_dir=store_dir, port=port)
        self.extra = extra

    def config_text(self) -> str:
        return super().config_text() + self.extra


@dataclass
class Kind:
    """One credential kind: the server config that requires it and the settings that meet it
    (``None`` fields: what a client without the credential has)."""

    server_config: str
    settings: dict[str, Any]
    without: dict[str, Any]


def credential_kind(name: str, where: Path) -> Kind:
    """Server config and client settings for one documented credential kind."""
    if name == "user_password":
        return Kind('authorization { users = [ {user: assetd, password: "pw-1"} ] }\n',
                    {"nats_user": "assetd", "nats_password": "pw-1"},
                    {"nats_user": "assetd", "nats_password": "wrong"})
    if name == "token":
        return Kind('authorization { token: "tok-1" }\n', {"nats_token": "tok-1"},
                    {"nats_token": "tok-2"})
    if name == "nkey":
        user = new_key(nkeys.PREFIX_BYTE_USER)
        seed = where / "user.nk"
        seed.write_bytes(user.seed + b"\n")
        seed.chmod(0o600)
        other = where / "other.nk"
        other.write_bytes(new_key(nkeys.PREFIX_BYTE_USER).seed + b"\n")
        return Kind(f"authorization {{ users = [ {{nkey: {user.public_key.decode()}}} ] }}\n",
                    {"nats_nkey": seed}, {"nats_nkey": other})
    if name == "creds":
        op = operator_setup()
        creds = where / "user.creds"
        creds.write_text(op.creds)
        creds.chmod(0o600)
        stranger = operator_setup()  # a user of another operator: same form, not trusted
        other = where / "other.creds"
        other.write_text(stranger.creds)
        return Kind(op.server_config, {"nats_creds": creds}, {"nats_creds": other})
    if name == "tls":
        pki = make_pki(where)
        return Kind(f'tls {{ cert_file: "{pki.server_cert}", key_file: "{pki.server_key}", '
                    f'ca_file: "{pki.ca}", verify: true, timeout: 5 }}\n',
                    {"nats_tls_ca": pki.ca, "nats_tls_cert": pki.client_cert,
                     "nats_tls_key": pki.client_key},
                    {"nats_tls_ca": pki.ca})  # trusts the server, has no client certificate
    raise AssertionError(name)


KINDS = ["user_password", "token", "nkey", "creds", "tls"]


def secured_server(kind: Kind) -> contextlib.AbstractContextManager[EmbeddedNats]:
    """A nats-server that requires ``kind``'s credential."""
    return running_nats("assetd-cred-", server_type=SecuredNats, extra=kind.server_config)


async def _refusal(url: str, settings: Settings) -> Exception:
    """The error of a plain nats-py connect with ``settings``' credentials (it must fail)."""
    async def quiet(exc: Exception) -> None:
        return None

    try:
        nc = await nats.connect(url, max_reconnect_attempts=0, connect_timeout=3,
                                allow_reconnect=False, error_cb=quiet,
                                **settings.nats_connect_options())
    except Exception as exc:
        return exc
    await nc.close()
    raise AssertionError(f"{url} let a client in without the credential")


DOCS = Path(__file__).resolve().parent.parent / "docs"


async def _ctl_with_flag(url: str, name: str, kind: Kind) -> None:
    """``assetctl --nats-<kind> FILE`` gets in (no ASSETD_NATS_* in its environment); with
    the wrong file it is refused in one line that says to check the credentials."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSETD_NATS")}
    flag, key = f"--nats-{name}", f"nats_{name}"
    for path, code in ((kind.settings[key], 0), (kind.without[key], 1)):
        proc = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "assetctl"), "show", "m", "-p", "fraud",
            "--nats-url", url, flag, str(path), "--json", env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        assert proc.returncode == code, err
        if code == 0:
            assert b'"instance": "v1"' in out
        else:
            assert err.count(b"\n") == 1 and b"refused the connection" in err


@pytest.mark.parametrize("name", KINDS)
async def test_daemon_and_client_with_each_credential_kind(
        name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The server refuses a client without the credential; the daemon given it by its
    documented ASSETD_NATS_* variables starts, and an event an AssetClient given the same
    variables publishes is applied and can be resolved."""
    kind = credential_kind(name, tmp_path)
    variables = {f"ASSETD_{key.upper()}": str(value) for key, value in kind.settings.items()}
    for doc in ("runbook.md", "architecture.md"):
        text = (DOCS / doc).read_text()
        for var in variables:
            assert var in text or f"`_{var.rsplit('_', 1)[1]}`" in text, (doc, var)
    with secured_server(kind) as server:
        refused = await _refusal(server.url, Settings(nats_url=server.url, **kind.without))
        if name == "tls":  # no client certificate: the server ends the handshake
            assert isinstance(refused, OSError), repr(refused)
        else:
            assert "authorization violation" in str(refused).lower(), repr(refused)
        for var, value in variables.items():
            monkeypatch.setenv(var, value)
        cred = Settings(nats_url=server.url)
        assert cred.nats_connect_options(), "the variables were read"
        daemon = Settings(nats_url=server.url, db_url=f"sqlite:///{tmp_path / 'r.db'}",
                          data_dir=tmp_path, http_port=0, fetch_timeout=0.5, nak_delay=0.1,
                          startup_timeout=20)
        async with running_daemon(daemon) as d, \
                AssetClient("fraud", settings=cred, timeout=15) as client:
            # its relay's child reached the server with the same credential (or it would
            # not have started)
            assert d._process_publisher is not None and d._process_publisher.pid
            eid = await client.publish("asset_registered", "m", {"kind": "model"},
                                       event_id=str(uuid.uuid4()))
            for _ in range(300):
                got = await client.event(eid)
                if got["status"] != "unknown":
                    break
                await asyncio.sleep(0.05)
            assert got["status"] == "applied", got
            assert (await client.peek("m"))["instance"] == "v1"
            if name in ("nkey", "creds"):  # assetctl's flags for the two file kinds
                await _ctl_with_flag(server.url, name, kind)


@pytest.mark.parametrize("name", KINDS)
def test_the_daemon_and_the_client_connect_alike(name: str, tmp_path: Path) -> None:
    """The broker's security object carries exactly the connect options the client uses
    (one place, Settings.nats_connect_options, reads the credential settings)."""
    settings = Settings(**credential_kind(name, tmp_path).settings)
    client = settings.nats_connect_options()
    daemon = {k: v for k, v in parse_security(nats_security(settings)).items()
              if v is not None and k not in ("tls_handshake_first",)}
    tls_client, tls_daemon = client.pop("tls", None), daemon.pop("tls", None)
    assert daemon == client
    assert (tls_client is None) == (tls_daemon is None)
    if tls_daemon is not None:
        assert isinstance(tls_daemon, ssl.SSLContext)
        assert tls_daemon.verify_mode == ssl.CERT_REQUIRED


def test_one_credential_kind_wins() -> None:
    """With several kinds set, the first of creds, nkey, token, user/password is used, by the
    daemon and the client alike."""
    s = Settings(nats_creds=Path("/x.creds"), nats_nkey=Path("/x.nk"), nats_token="t",  # type: ignore[arg-type]
                 nats_user="u", nats_password="p")  # type: ignore[arg-type]
    assert s.nats_connect_options() == {"user_credentials": "/x.creds"}
    s = Settings(nats_nkey=Path("/x.nk"), nats_token="t", nats_user="u")  # type: ignore[arg-type]
    assert s.nats_connect_options() == {"nkeys_seed": "/x.nk"}
    s = Settings(nats_token="t", nats_user="u")  # type: ignore[arg-type]
    assert s.nats_connect_options() == {"token": "t"}
