"""`make check-compat` refuses a schema change old data cannot be read with (fixture pairs)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from hs_common.testing import repository_root

FIXTURES = Path(__file__).parent / "fixtures" / "compat"
SEALED = repository_root() / "schemas" / "common" / "Sealed.avsc"


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


@pytest.fixture
def schema_repo(tmp_path: Path) -> Path:
    """A git repository whose last commit holds the base schemas."""
    repo = tmp_path / "repo"
    shutil.copytree(FIXTURES / "base", repo / "schemas")
    shutil.copy(SEALED, repo / "schemas" / "Sealed.avsc")
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "base schemas")
    return repo


def _check_compat(repo: Path, variant: str) -> subprocess.CompletedProcess[str]:
    for avsc in (FIXTURES / variant).glob("*.avsc"):
        shutil.copy(avsc, repo / "schemas" / avsc.name)
    return subprocess.run(
        [
            "make",
            "--no-print-directory",
            "-C",
            str(repository_root()),
            "check-compat",
            "BASE=HEAD",
            f"REPO={repo}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )


def test_a_breaking_change_is_refused_with_the_types_it_breaks(schema_repo: Path) -> None:
    result = _check_compat(schema_repo, "breaking")
    assert result.returncode != 0
    assert "INCOMPATIBLE fx.common.Header" in result.stderr
    assert "INCOMPATIBLE fx.clinical.Vital" in result.stderr  # embeds the changed Header
    assert "site" in result.stderr


def test_a_compatible_change_is_accepted(schema_repo: Path) -> None:
    result = _check_compat(schema_repo, "compatible")
    assert result.returncode == 0, result.stderr
    assert "checked 1 changed schema(s) against HEAD" in result.stdout
    assert "0 incompatible" in result.stdout


def test_a_breaking_change_inside_a_sealed_field_is_refused(schema_repo: Path) -> None:
    result = _check_compat(schema_repo, "breaking_sealed")
    assert result.returncode != 0
    assert (
        "INCOMPATIBLE fx.clinical.Vital: sealed fx.clinical.Vital.patient: cannot read old data"
        in result.stderr
    )


def test_removing_a_schema_is_refused(schema_repo: Path) -> None:
    (schema_repo / "schemas" / "Vital.avsc").unlink()
    result = _check_compat(schema_repo, "none")
    assert result.returncode != 0
    assert "fx.clinical.Vital: removed" in result.stderr
