"""Job logs: a Snakemake job's stdout and stderr go to its log file, and errors end there readably; one line
for an error in the user's code (a plugin)."""

from __future__ import annotations

import contextlib
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path

from lfa.errors import LfaError


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
        except LfaError as err:  # the user's to fix: one line, here and in Snakemake's own output
            print(f"ERROR: {type(err).__name__}: {err}", file=fh)  # the line lfa status reads
            print(f"ERROR ({path}): {type(err).__name__}: {err}", file=sys.__stderr__)
            raise SystemExit(1) from None
        except BaseException as err:
            traceback.print_exc(file=fh)
            print(f"ERROR: {type(err).__name__}: {err}", file=fh)
            # The message also goes to the real stderr, so it is visible in Snakemake's own output.
            print(f"ERROR ({path}): {type(err).__name__}: {err}", file=sys.__stderr__)
            raise


def error_line(err: BaseException) -> str:
    """The last line of an exception's traceback, with the line of the user's code it came from (the last frame
    outside this package, Python and the installed libraries; none if there is no such frame)."""
    frames = [(f.filename, f.lineno) for f in traceback.extract_tb(err.__traceback__)
              if not f.filename.startswith("<frozen")]
    if isinstance(err, SyntaxError) and err.filename:  # raised while compiling: the file has no frame yet
        frames.append((err.filename, err.lineno))
    ours = [Path(__file__).resolve().parent, *(Path(p).resolve() for p in {sys.prefix, sys.base_prefix})]
    user = [f for f in frames if f[0].startswith("<") or not any(Path(f[0]).resolve().is_relative_to(o)
                                                                  for o in ours)]
    place = user[-1] if user else None
    where = f" (at {Path(place[0]).name}, line {place[1]})" if place else ""
    return f"{traceback.format_exception_only(type(err), err)[-1].strip()}{where}"
