"""Log output: readable text by default, JSON lines on request."""

from __future__ import annotations

import sys
from typing import IO

from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    jsonFileLogObserver,
    textFileLogObserver,
)

__all__ = ["start_logging"]


def start_logging(fmt: str = "text", level: str = "info", stream: IO[str] | None = None) -> None:
    """Send twisted.logger events to ``stream`` (stderr) as text or JSON lines."""
    stream = stream or sys.stderr
    observer = jsonFileLogObserver(stream, recordSeparator="") if fmt == "json" else textFileLogObserver(stream)
    predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.levelWithName(level))
    globalLogBeginner.beginLoggingTo([FilteringLogObserver(observer, [predicate])], redirectStandardIO=False)
