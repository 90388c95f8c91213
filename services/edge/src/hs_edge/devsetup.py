"""Development credentials for the edge: a token-signing key (and its public key set), a
self-signed TLS certificate for 127.0.0.1/localhost, and demo clients with random secrets.
Production takes the identity provider's key set and real certificates from settings, and
refuses the development token endpoint."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from joserfc.jwk import ECKey

from hs_edge.auth import Role
from hs_edge.clients import secret_hash

# (client id, role, scopes, institution: for source staff, the one whose reports it reads)
DEMO_CLIENTS: tuple[tuple[str, Role, str, str | None], ...] = (
    ("ward-app", Role.CLINICIAN, "user/*.read user/Flag.write", None),
    ("cdc-dashboard", Role.PUBLIC_HEALTH, "user/*.read", None),
    ("research-export", Role.RESEARCHER, "user/Observation.read user/Patient.read", None),
    ("admin-console", Role.ADMINISTRATOR, "system/*.*", None),
    ("hz01-it", Role.SOURCE_STAFF, "user/MeasureReport.read", "HZ01"),  # HZ01's IT team
)


@dataclass(frozen=True)
class DevFiles:
    folder: Path

    @property
    def signing_key(self) -> Path:
        return self.folder / "signing-key.json"

    @property
    def jwks(self) -> Path:
        return self.folder / "jwks.json"

    @property
    def certificate(self) -> Path:
        return self.folder / "tls-cert.pem"

    @property
    def private_key(self) -> Path:
        return self.folder / "tls-key.pem"

    @property
    def clients(self) -> Path:
        return self.folder / "clients.json"


def write_dev_files(folder: Path) -> dict[str, str]:
    """Write the files; returns the demo clients' secrets (shown once, stored hashed)."""
    files = DevFiles(folder)
    folder.mkdir(parents=True, exist_ok=True)
    key = ECKey.generate_key("P-256", parameters={"kid": f"dev-{secrets.token_hex(4)}"})
    _write_private(files.signing_key, json.dumps(key.as_dict(private=True)))
    files.jwks.write_text(json.dumps({"keys": [key.as_dict(private=False)]}))
    tls_key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hs-edge development")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(tls_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=365))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(IPv4Address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(tls_key, hashes.SHA256())
    )
    files.certificate.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    _write_private(
        files.private_key,
        tls_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode(),
    )  # fmt: skip
    shown = {client: secrets.token_urlsafe(24) for client, *_ in DEMO_CLIENTS}
    clients = [
        {"client_id": client, "secret_sha256": secret_hash(shown[client]), "role": role.value,
         "scope": scope, "person_id": None, "institution": institution}
        for client, role, scope, institution in DEMO_CLIENTS
    ]  # fmt: skip
    _write_private(files.clients, json.dumps(clients, indent=2))
    return shown


def _write_private(path: Path, text: str) -> None:
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(text)
