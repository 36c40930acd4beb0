"""What every peer script of `sluice bench peers` ends with: its report as one
JSON line on stdout (the line `sluice bench peers` reads), or its error on stderr
with exit status 1.

The peer scripts import it from their own directory (Python puts a script's
directory first on `sys.path`), so it needs no installing.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Callable


def report_main(script: str, measure: Callable[[], dict[str, Any]]) -> int:
    """Runs `measure` and prints the report it returns as one compact JSON line;
    on an exception, prints `<script>: <type>: <message>` to stderr instead.
    Returns the exit status (0, or 1 on an error)."""
    try:
        report = measure()
    except Exception as e:
        print(f"{script}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(json.dumps(report, separators=(",", ":")))
    return 0
