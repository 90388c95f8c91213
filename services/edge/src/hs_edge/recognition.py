"""Results already done elsewhere (检验结果互认): for an analyte about to be ordered, the same
person's results within the analyte's validity window, from any institution, so that a repeat
test can be avoided. Pure but for reading the window file."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

DEFAULT_WINDOWS = Path(__file__).with_name("data") / "recognition.toml"
STANDING = frozenset({"FINAL", "CORRECTED"})  # results that can stand in for a new test


@dataclass(frozen=True)
class Window:
    code: str  # <system>|<code>
    name: str
    days: int

    def opens(self, now: datetime) -> datetime:
        return now - timedelta(days=self.days)


def load_windows(path: Path = DEFAULT_WINDOWS) -> dict[str, Window]:
    document = tomllib.loads(path.read_text(encoding="utf-8"))
    windows = {}
    for entry in document.get("analyte", []):
        window = Window(str(entry["code"]), str(entry["name"]), int(entry["days"]))
        if window.days < 1 or "|" not in window.code:
            raise ValueError(f"{path}: {window.code}: a window is <system>|<code> and >= 1 day")
        windows[window.code] = window
    return windows


def standing(observations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The results that may stand in for a new test (final or corrected), newest first."""
    kept = [o for o in observations if o["status"] in STANDING]
    return sorted(kept, key=lambda o: o["effective_at"], reverse=True)
