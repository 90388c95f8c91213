"""`hs-admin`: development keyring, topics and schema history.

hs-admin dev-keys         write a development keyring (HS_KEYRING_FILE) unless one exists
hs-admin dev-credentials  as the broker's administrator: a SCRAM login per service and per
                          institution (--institution CODE ...), written to --out as NAME.env, a
                          client certificate per institution where the development CA's key is
                          at hand, and the ACLs of hs_common.access
hs-admin apply-acls       as the administrator: create the ACLs of hs_common.access (production)
hs-admin create-topics    create every catalogued topic that is missing, and each institution's
                          inbound and acknowledgement topics
hs-admin rotate-keys      new active keys in HS_KEYRING_FILE (old ones kept for reading)
hs-admin keys-in-use      which data and MAC keys the catalogued topics' records still use, and
                          which keys of the keyring none does (those may be retired)
hs-admin reseal           as the administrator: the latest record of each key on the compacted
                          topics written again under the active keys (compaction then drops the
                          old ones)
hs-admin release-schemas  record every current schema version in schemas/history/
hs-admin counts           count the committed records on every catalogued topic
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

from confluent_kafka import Message

from hs_common import access, control, devpki, topics
from hs_common.codec import Codec
from hs_common.crypto import MAC_WRITERS, Keyring, Sealed
from hs_common.errors import CodecError
from hs_common.kafka import make_admin, make_producer, read_range
from hs_common.schemas import HISTORY_DIR, SchemaCatalogue, default_schema_root
from hs_common.settings import Environment, RuntimeSettings, read_env_file


def dev_keys(settings: RuntimeSettings) -> str:
    if settings.environment is Environment.PRODUCTION:
        return "refused: development keys are not generated in production"
    if settings.keyring_file.exists():
        keyring = Keyring.from_file(settings.keyring_file)
        if set(keyring.active_mac) >= set(MAC_WRITERS):
            return f"keyring {settings.keyring_file} exists; left as it is"
        fresh = Keyring.generate()  # a keyring from before control events were authenticated
        replace(keyring, mac_keys=fresh.mac_keys, active_mac=fresh.active_mac).to_file(
            settings.keyring_file
        )
        return f"keyring {settings.keyring_file}: MAC keys of {', '.join(MAC_WRITERS)} added"
    Keyring.generate().to_file(settings.keyring_file)
    return f"wrote development keyring {settings.keyring_file} (mode 600, not for production)"


def dev_credentials(settings: RuntimeSettings, institutions: Sequence[str], out: Path) -> str:
    if settings.environment is Environment.PRODUCTION:
        return "refused: development credentials are not generated in production"
    grants = access.policy(institutions)
    out.mkdir(parents=True, exist_ok=True)
    out.chmod(0o700)
    passwords = {g.principal: _kept_password(out / f"{g.principal}.env") for g in grants}
    admin = make_admin(settings)
    access.upsert_scram_users(admin, passwords)
    access.apply_acls(admin, grants)
    for principal, password in passwords.items():
        _write_private(out / f"{principal}.env", _login(settings, principal, password))
    certificates = 0
    ca = settings.kafka_ssl_ca
    mtls_bootstrap = os.environ.get("HS_KAFKA_MTLS_BOOTSTRAP")
    if ca is not None and (ca.parent / "ca.key").exists() and mtls_bootstrap:
        for code in institutions:
            principal = access.institution_principal(code)
            certificate, key = devpki.issue_client_certificate(ca, principal, out)
            _write_private(
                out / f"{principal}-mtls.env",
                {
                    "HS_KAFKA_BOOTSTRAP": mtls_bootstrap,
                    "HS_KAFKA_SECURITY_PROTOCOL": "SSL",
                    "HS_KAFKA_SSL_CA_LOCATION": str(ca),
                    "HS_KAFKA_SSL_CERTIFICATE_LOCATION": str(certificate),
                    "HS_KAFKA_SSL_KEY_LOCATION": str(key),
                },
            )
            certificates += 1
    return (
        f"{len(passwords)} principals ({', '.join(sorted(passwords))}) with SCRAM logins in "
        f"{out}/NAME.env, {certificates} client certificates, ACLs applied"
    )


def _kept_password(path: Path) -> str:
    """The principal's password from an earlier run (logins stay valid), else a new one."""
    kept = read_env_file(path).get("HS_KAFKA_SASL_PASSWORD") if path.exists() else None
    return kept or secrets.token_urlsafe(24)


def _login(settings: RuntimeSettings, principal: str, password: str) -> dict[str, str]:
    login = {
        "HS_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "HS_KAFKA_SECURITY_PROTOCOL": settings.kafka_security.value,
        "HS_KAFKA_SASL_MECHANISM": settings.kafka_sasl_mechanism,
        "HS_KAFKA_SASL_USERNAME": principal,
        "HS_KAFKA_SASL_PASSWORD": password,
    }
    if settings.kafka_ssl_ca is not None:
        login["HS_KAFKA_SSL_CA_LOCATION"] = str(settings.kafka_ssl_ca)
    return login


def _write_private(path: Path, variables: dict[str, str]) -> None:
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text("".join(f"{name}={value}\n" for name, value in variables.items()))


def apply_acls(settings: RuntimeSettings, institutions: Sequence[str]) -> str:
    count = access.apply_acls(make_admin(settings), access.policy(institutions))
    return f"{count} ACL bindings applied on {settings.kafka_bootstrap}"


def create_topics(settings: RuntimeSettings, institutions: Sequence[str] = ()) -> str:
    specs = list(topics.ALL) + [t for code in institutions for t in topics.institution_topics(code)]
    created = topics.ensure_topics(
        make_admin(settings), specs, settings.topic_partitions, settings.topic_replication
    )
    names = ", ".join(created) if created else "none (all exist)"
    return f"topics created on {settings.kafka_bootstrap}: {names}"


def release_schemas(settings: RuntimeSettings) -> str:
    root = settings.schema_dir or default_schema_root()
    catalogue = SchemaCatalogue.load(root)
    recorded = []
    for schema in catalogue:
        if catalogue.is_released(schema):
            continue
        path = root / HISTORY_DIR / schema.name / f"{schema.fingerprint.hex()}.avsc"
        path.parent.mkdir(parents=True, exist_ok=True)
        document = catalogue.release_document(schema.name)
        path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        recorded.append(f"{schema.name} {schema.fingerprint.hex()}")
    return "recorded: " + (", ".join(recorded) if recorded else "nothing new")


def counts(settings: RuntimeSettings) -> str:
    """The committed records on every catalogued topic, each read to its end (a pause in the
    fetches is not taken for the end)."""
    lines = [
        f"  {spec.name:<30}{sum(1 for _ in read_range(settings, spec.name, 'hs-admin')):>10,}"
        for spec in topics.ALL
    ]
    return "records per topic (committed):\n" + "\n".join(lines)


COMMANDS = (
    "dev-keys", "dev-credentials", "apply-acls", "create-topics", "release-schemas", "counts",
    "rotate-keys", "keys-in-use", "reseal",
)  # fmt: skip


def rotate_keys(settings: RuntimeSettings) -> str:
    keyring = Keyring.from_file(settings.keyring_file)
    rotated = keyring.rotated()
    rotated.to_file(settings.keyring_file)
    active = ", ".join(sorted({*rotated.active.values(), *rotated.active_mac.values()}))
    return f"keyring {settings.keyring_file}: new active keys {active}; old keys kept"


def keys_in_use(settings: RuntimeSettings) -> str:
    """Every sealed value's and MAC's key id on the catalogued topics, counted."""
    keyring = Keyring.from_file(settings.keyring_file)
    blind = Codec(
        SchemaCatalogue.load(settings.schema_dir or default_schema_root()), Keyring.empty()
    )
    used: Counter[str] = Counter()
    for spec in topics.ALL:
        for message in current_records(settings, spec):
            try:
                record = blind.decode(message.value() or b"").record
            except CodecError:
                continue  # not an event of ours: the dead letters say why it is there
            used.update(sealed_key_ids(record))
            mac_key = _mac_key(message)
            if mac_key is not None:
                used[mac_key] += 1
    lines = [f"  {key_id:<28}{count:>10,} values" for key_id, count in sorted(used.items())]
    idle = sorted((set(keyring.keys) | set(keyring.mac_keys)) - set(used))
    return (
        "keys in use on the topics:\n"
        + "\n".join(lines or ["  none"])
        + ("\nin the keyring, used by no record (may be retired): " + ", ".join(idle or ["none"]))
    )


def reseal(settings: RuntimeSettings) -> str:
    """Re-seal the compacted topics' current records that `resealed` renews or whose MAC uses
    a key no longer active, written under the same Kafka key with a fresh MAC where the schema
    has one."""
    keyring = Keyring.from_file(settings.keyring_file)
    codec = Codec(SchemaCatalogue.load(settings.schema_dir or default_schema_root()), keyring)
    active_mac = (None, *keyring.active_mac.values())
    producer = make_producer(settings, "hs-admin-reseal")
    written = 0
    for spec in (s for s in topics.ALL if s.compacted):
        for message in current_records(settings, spec):
            value, key = message.value() or b"", message.key()
            try:
                fresh = resealed(codec, value)
            except CodecError:
                continue
            if fresh is None and _mac_key(message) in active_mac:
                continue
            schema = codec.schema_of(value).name
            fresh = fresh or value
            headers = control.mac_headers(keyring, schema, fresh)
            producer.produce(spec.name, fresh, key or None, headers=headers or None)
            written += 1
    if producer.flush(60):
        return "refused: the broker did not confirm every record re-sealed"
    return f"{written} records re-sealed under the active keys"


def resealed(codec: Codec, value: bytes) -> bytes | None:
    """The event sealed anew under the active keys (same event, so the same binding), or None
    when it already is: every sealed value under an active key, and no field in the clear that
    the current version seals."""
    blind = Codec(codec.catalogue, Keyring.empty())
    sealed_with = set(sealed_key_ids(blind.decode(value).record))
    in_the_clear = codec.catalogue.sealed_since(blind.schema_of(value))
    if sealed_with <= set(codec.keyring.active.values()) and not in_the_clear:
        return None
    decoded = codec.decode(value)
    return codec.encode(decoded.schema, decoded.record)


def current_records(settings: RuntimeSettings, spec: topics.TopicSpec) -> Iterator[Message]:
    """A topic's records that still count: all of them, or on a compacted topic the latest of
    each key (compaction drops the others)."""
    messages = read_range(settings, spec.name, "hs-admin-keys", timeout=600)
    if not spec.compacted:
        yield from messages
        return
    latest: dict[bytes, Message] = {}
    for message in messages:
        latest[message.key() or b""] = message
    yield from latest.values()


def _mac_key(message: Message) -> str | None:
    for name, value in message.headers() or ():
        if name == control.MAC_HEADER and value is not None:
            return bytes(value).decode(errors="replace").partition(":")[0]
    return None


def sealed_key_ids(value: object) -> Iterator[str]:
    """The key ids of the sealed values a decoded record holds (those this process could not
    open stay Sealed)."""
    if isinstance(value, Sealed):
        yield value.key_id
    elif isinstance(value, dict):
        for item in value.values():
            yield from sealed_key_ids(item)
    elif isinstance(value, list):
        for item in value:
            yield from sealed_key_ids(item)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="hs-admin", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=COMMANDS)
    parser.add_argument("--institution", action="append", default=[], metavar="CODE")
    parser.add_argument("--out", type=Path, default=Path(".local/kafka-clients"))
    args = parser.parse_args(argv)
    settings = RuntimeSettings()
    institutions: list[str] = args.institution
    match args.command:
        case "dev-credentials":
            result = dev_credentials(settings, institutions, args.out)
        case "apply-acls":
            result = apply_acls(settings, institutions)
        case "create-topics":
            result = create_topics(settings, institutions)
        case "dev-keys":
            result = dev_keys(settings)
        case "release-schemas":
            result = release_schemas(settings)
        case "rotate-keys":
            result = rotate_keys(settings)
        case "keys-in-use":
            result = keys_in_use(settings)
        case "reseal":
            result = reseal(settings)
        case _:
            result = counts(settings)
    print(result)
    return 1 if result.startswith("refused") else 0


if __name__ == "__main__":
    sys.exit(main())
