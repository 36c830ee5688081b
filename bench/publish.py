"""How every benchmark ends: its JSON written where asked, its table printed, the path named."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def publish(result: dict[str, Any], out: str | Path, table: str) -> None:
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(table)
    print(f"written: {path}")
