"""After a key rotation, `hs-edge reseal` seals the read model's events anew under the active
keys (including fields sealed since the event was written, such as an alert's rule), so that
the old keys can be retired; what the events say does not change."""

from __future__ import annotations

from pathlib import Path

import pytest

from hs_common.admin import sealed_key_ids
from hs_common.codec import Codec
from hs_common.crypto import Keyring, Sealed
from hs_common.schemas import SchemaCatalogue
from hs_common.testing import golden_example
from hs_edge.cli import main
from hs_edge.store import Store

ALERT = "hs.vitals.Alert"


def _before_the_rule_was_sealed(catalogue: SchemaCatalogue) -> SchemaCatalogue:
    [old] = [
        r for r in catalogue.released()
        if r.name == ALERT and f"{ALERT}.rule_id" not in r.sealed_fields and "cohort" in str(r.wire)
    ]  # fmt: skip
    return SchemaCatalogue([old])


def test_reseal_renews_every_event_of_the_read_model(
    catalogue: SchemaCatalogue, schema_root: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    path, database = tmp_path / "keyring.json", str(tmp_path / "edge.db")
    old_keys = Keyring.generate()
    old_keys.to_file(path)
    monkeypatch.setenv("HS_KEYRING_FILE", str(path))
    store = Store.open(database)
    observation = golden_example(catalogue.get("hs.clinical.Observation"), schema_root)
    alert = golden_example(catalogue.get(ALERT), schema_root)
    old_alert = Codec(_before_the_rule_was_sealed(catalogue), old_keys).encode(ALERT, alert)
    assert alert["rule_id"].encode() in old_alert  # written when the rule was in the clear
    store.put_observation(
        "HZ01", "O1", "K1", None, "LABORATORY", observation["effective_at"],
        Codec(catalogue, old_keys).encode("hs.clinical.Observation", observation),
    )  # fmt: skip
    store.put_alert(alert["alert_id"], alert["action"], "K1", alert["at"], old_alert)
    new_keys = old_keys.rotated()
    new_keys.to_file(path)

    assert main(["reseal", "--database", database]) == 0
    report = capsys.readouterr().out
    assert report.startswith("2 events re-sealed")
    assert all(key_id in report.rpartition("used by no event")[2] for key_id in old_keys.keys)
    blind, codec = Codec(catalogue, Keyring.empty()), Codec(catalogue, new_keys)
    events = list(store.events())
    used = {k for event in events for k in sealed_key_ids(blind.decode(event).record)}
    assert used == set(new_keys.active.values())
    [renewed_alert] = [e for e in events if codec.decode(e).schema == ALERT]
    assert alert["rule_id"].encode() not in renewed_alert
    assert isinstance(blind.decode(renewed_alert).record["rule_id"], Sealed)
    assert codec.decode(renewed_alert).record == alert
    assert main(["reseal", "--database", database]) == 0
    assert capsys.readouterr().out.startswith("0 events re-sealed")
