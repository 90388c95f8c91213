"""Certificates from the local broker's development CA (infra/kafka/kafka.sh makes it): for
principals that authenticate with mutual TLS instead of SCRAM, and for a local MLLP listener.
Never for production: there, certificates come from the site's own CA."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def issue_client_certificate(ca_pem: Path, principal: str, out: Path) -> tuple[Path, Path]:
    """A certificate whose common name is `principal` (the broker maps CN=x to User:x), signed
    by the CA whose key lies next to `ca_pem` as ca.key; returns (certificate, key) paths."""
    return _issue(ca_pem, principal, out, ExtendedKeyUsageOID.CLIENT_AUTH)


def issue_server_certificate(
    ca_pem: Path, name: str, addresses: list[str], out: Path
) -> tuple[Path, Path]:
    """A server's certificate for the IP addresses `addresses`, from the same CA."""
    names = [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
    return _issue(ca_pem, name, out, ExtendedKeyUsageOID.SERVER_AUTH, names)


def _issue(
    ca_pem: Path,
    name: str,
    out: Path,
    usage: x509.ObjectIdentifier,
    addresses: Sequence[x509.GeneralName] = (),
) -> tuple[Path, Path]:
    ca = x509.load_pem_x509_certificate(ca_pem.read_bytes())
    ca_key = serialization.load_pem_private_key((ca_pem.parent / "ca.key").read_bytes(), None)
    if not isinstance(ca_key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise TypeError(f"{ca_pem.parent / 'ca.key'}: not an RSA or EC key")
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=397))
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if addresses:
        builder = builder.add_extension(x509.SubjectAlternativeName(addresses), critical=False)
    certificate = builder.sign(ca_key, hashes.SHA256())
    cert_path, key_path = out / f"{name}.crt", out / f"{name}.key"
    key_path.touch(mode=0o600, exist_ok=True)
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path
