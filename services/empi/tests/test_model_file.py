"""The EMPI's model file holds term frequencies of names and phones: keyed, sealed, private."""

from __future__ import annotations

import itertools
import json
import random
import stat
from pathlib import Path

import pytest
from test_index import person

from hs_common.crypto import Keyring
from hs_common.errors import KeyringError, SealedFieldError
from hs_empi.model import estimate
from hs_empi.service import read_model, save_model
from hs_empi.standardize import standardize


def test_the_model_file_reveals_no_name_or_phone_and_scores_as_the_model_does(
    tmp_path: Path,
) -> None:
    rng = random.Random(11)
    fields = [person(n, rng) for n in range(600)]
    records = [standardize(f) for f in fields]
    model = estimate(records, random_pairs=20_000)
    keyring, path = Keyring.generate(), tmp_path / "empi-model.json"
    save_model(model, path, keyring)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    written = path.read_text(encoding="utf-8")
    names = {r.name.full for r in records if r.name is not None}
    phones = {phone for r in records for phone in r.phones}
    assert not any(value in written for value in names | phones)

    loaded = read_model(path, keyring)
    assert names & set(model.tf["name"]) and phones & set(model.tf["contact"])  # as estimated
    assert not (names | phones) & (set(loaded.tf["name"]) | set(loaded.tf["contact"]))  # keyed
    for a, b in itertools.pairwise(records):
        assert loaded.score(a, b).weight == pytest.approx(model.score(a, b).weight)


def test_a_model_file_opens_only_with_its_keyring(tmp_path: Path) -> None:
    rng = random.Random(3)
    model = estimate([standardize(person(n, rng)) for n in range(200)], random_pairs=5_000)
    path, mine = tmp_path / "empi-model.json", Keyring.generate()
    save_model(model, path, mine)
    with pytest.raises(KeyringError, match="not in the keyring"):
        read_model(path, Keyring.generate())
    document = json.loads(path.read_text())
    ciphertext = document["sealed"]["ciphertext"]
    document["sealed"]["ciphertext"] = ciphertext[:-2] + ("00" if ciphertext[-2:] != "00" else "11")
    path.write_text(json.dumps(document))  # one byte changed
    with pytest.raises(SealedFieldError):
        read_model(path, mine)
