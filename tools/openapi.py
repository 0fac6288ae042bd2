"""Generate ``openapi/openapi.json`` from the app, or (``--check``) fail when the committed one is stale."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from kernel.config import Settings
from tracker.web.app import create_app

TARGET = Path(__file__).resolve().parent.parent / "openapi" / "openapi.json"


def render() -> str:
    app = create_app(Settings(database_url="sqlite+aiosqlite:///:memory:"))
    return json.dumps(app.openapi(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        current = TARGET.read_text() if TARGET.exists() else ""
        if current != text:
            print(f"{TARGET.relative_to(Path.cwd())} is stale: run `make openapi` and commit it.", file=sys.stderr)
            return 1
        print("openapi/openapi.json is current")
        return 0
    TARGET.parent.mkdir(exist_ok=True)
    TARGET.write_text(text)
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
