"""The gRPC code in the package is what `make proto` makes from proto/ now."""

from __future__ import annotations

from pathlib import Path

from grpc_tools import protoc

from hs_common.testing import repository_root

GENERATED = ("edge_pb2.py", "edge_pb2.pyi", "edge_pb2_grpc.py", "edge_pb2_grpc.pyi")


def test_the_generated_grpc_code_matches_the_contract(tmp_path: Path) -> None:
    root = repository_root()
    out = str(tmp_path)
    status = protoc.main([
        "protoc", f"-I{root / 'proto'}", f"-I{Path(protoc.__file__).parent / '_proto'}",
        f"--python_out={out}", f"--grpc_python_out={out}", f"--mypy_out=quiet:{out}",
        f"--mypy_grpc_out=quiet:{out}", str(root / "proto/healthstream/edge/v1/edge.proto"),
    ])  # fmt: skip
    assert status == 0
    package = root / "services/edge/src/healthstream/edge/v1"
    for name in GENERATED:
        made = (tmp_path / "healthstream/edge/v1" / name).read_text()
        assert made == (package / name).read_text(), f"{name} is stale: run `make proto`"
