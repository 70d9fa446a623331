"""How a bench script ends on bad input: one line naming the problem (a missing file, index, model or engine, a
bad value), exit 1, never a traceback. ``if __name__ == "__main__": finish(main)``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

from shopsearch.plugin.engine import EngineUnavailable, IndexNotFound


def finish(main: Callable[[], int | None]) -> None:
    """Run ``main`` and exit with its code; a known failure is one line on stderr and exit 1."""
    name = Path(sys.argv[0]).name
    try:
        code = main()
    except IndexNotFound as exc:
        sys.exit(f"{name}: index {exc.args[0]!r} does not exist; build it with `shopsearch index`")
    except (FileNotFoundError, NotADirectoryError, ValueError, EngineUnavailable) as exc:
        sys.exit(f"{name}: {exc}")
    sys.exit(code or 0)
