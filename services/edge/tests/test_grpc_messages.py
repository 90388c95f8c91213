"""The gRPC Observation built directly is the REST view's, field for field."""

from __future__ import annotations

from typing import Any

import pytest
from healthstream.edge.v1 import edge_pb2 as pb

from hs_common.codec import Codec
from hs_common.crypto import Keyring
from hs_common.schemas import SchemaCatalogue, default_schema_root
from hs_common.testing import golden_example
from hs_edge.grpc_api import message, observation
from hs_edge.operations import observation_view

CATALOGUE = SchemaCatalogue.load(default_schema_root())
CODEC = Codec(CATALOGUE, Keyring.generate())


def example(**result: Any) -> dict[str, Any]:
    name = "hs.clinical.Observation"
    record = CODEC.decode(
        CODEC.encode(name, golden_example(CATALOGUE.get(name), default_schema_root()))
    ).record
    record["result"] |= result
    return record


@pytest.mark.parametrize(
    "result",
    [
        {},
        {"code": None, "reference_range": None},
        {"value_quantity": None, "unit": None, "original_unit": None, "value_text": "阴性"},
        {"reference_range": {"low": None, "high": 5.0, "text": "<5"}, "value_quantity": 0.0},
    ],
)
def test_the_direct_observation_equals_the_view_s(result: dict[str, Any]) -> None:
    record = example(**result)
    direct = observation(record)
    assert direct == message(observation_view(record), pb.Observation)
    assert direct.HasField("value") is (record["result"]["value_quantity"] is not None)
