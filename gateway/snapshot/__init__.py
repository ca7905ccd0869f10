"""Snapshots: the index and each source's sync state on disk, so a restart serves at once.

``codec`` is the file format (pure), ``store`` the crash-safe files,
``inspect`` what ``dirgw snapshot inspect`` shows, ``bench`` the timings.
"""

from gateway.snapshot.codec import (
    ChecksumMismatch,
    EmptySnapshot,
    ForeignFile,
    MalformedSnapshot,
    NewerVersion,
    Snapshot,
    SnapshotError,
    SnapshotSummary,
    SourceSnapshot,
    TruncatedSnapshot,
    decode,
    decode_summary,
    encode,
    encode_parts,
)
from gateway.snapshot.store import (
    FileSnapshotStore,
    GenerationInfo,
    MemorySnapshotStore,
    SnapshotWriteError,
    SourceInfo,
)

__all__ = [
    "ChecksumMismatch",
    "EmptySnapshot",
    "FileSnapshotStore",
    "ForeignFile",
    "GenerationInfo",
    "MalformedSnapshot",
    "MemorySnapshotStore",
    "NewerVersion",
    "Snapshot",
    "SnapshotError",
    "SnapshotSummary",
    "SnapshotWriteError",
    "SourceInfo",
    "SourceSnapshot",
    "TruncatedSnapshot",
    "decode",
    "decode_summary",
    "encode",
    "encode_parts",
]
