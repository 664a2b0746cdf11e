"""Job logs: a Snakemake job's stdout and stderr go to its log file, and errors end there readably."""

from __future__ import annotations

import contextlib
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def logged(path: str | Path | None) -> Iterator[None]:
    """Send stdout/stderr to ``path`` (appending, so a resumed job keeps its history)."""
    if not path:
        yield
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", buffering=1) as fh, contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
        try:
            yield
        except SystemExit:
            raise
        except BaseException as err:
            traceback.print_exc(file=fh)
            print(f"ERROR: {type(err).__name__}: {err}", file=fh)
            # The message also goes to the real stderr, so it is visible in Snakemake's own output.
            print(f"ERROR ({path}): {type(err).__name__}: {err}", file=sys.__stderr__)
            raise
