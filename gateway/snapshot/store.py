"""Where snapshots live: two generations in a directory, written crash-safely.

``snapshot.dgs`` is the newest generation and ``snapshot.1.dgs`` the one
before.  :meth:`FileSnapshotStore.save` writes a temporary file in the same
directory, fsyncs it, then rotates and renames it in and fsyncs the directory;
a crash or a file-system error at any moment leaves at least one complete,
valid generation under its name (see ``save`` for the order of the steps).
:meth:`FileSnapshotStore.load` returns the newest generation that decodes; a
file that does not is moved aside as ``<name>.bad-<UTC time>`` (never
deleted) and reported.

Synchronous, blocking I/O: call ``save`` (and ``encode_parts``) in a thread,
``load`` before the service listens.  :class:`MemorySnapshotStore` behaves the
same without a file system, for tests.
"""

from __future__ import annotations

import errno
import os
import secrets
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any, Callable, Union

from attrs import field, frozen

from gateway.snapshot.codec import Snapshot, SnapshotError, SnapshotSummary, decode, decode_summary

__all__ = [
    "CURRENT_NAME",
    "PREVIOUS_NAME",
    "SnapshotWriteError",
    "GenerationInfo",
    "SourceInfo",
    "FileSnapshotStore",
    "MemorySnapshotStore",
]

CURRENT_NAME = "snapshot.dgs"
PREVIOUS_NAME = "snapshot.1.dgs"
_TEMP_MARK = ".tmp-"
#: A temporary file of another process still alive is left alone until it is this old.
_STALE_TEMP_SECONDS = 3600.0

Data = Union[bytes, bytearray, memoryview, Iterable[bytes]]


class SnapshotWriteError(Exception):
    """A snapshot could not be saved; the generations already on disk are unchanged."""

    def __init__(self, message: str, errno: int | None = None, path: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errno = errno
        self.path = path


@frozen
class SourceInfo:
    """One source of a generation, for inspection."""

    contacts: int
    delta_link: bool  # a saved delta link: the source continues with delta rounds
    importing: bool  # a saved resume point: an interrupted full import continues there
    last_success: float | None
    identity: tuple[str, ...] | None


@frozen
class GenerationInfo:
    """One snapshot file: ``generation`` is ``current``, ``previous``, ``bad`` (moved aside) or ``temp``."""

    generation: str
    path: str
    size: int
    mtime: float
    ok: bool
    reason: str | None = None  # SnapshotError.reason, "unreadable" or "temp"; None when ok
    message: str | None = None
    created: float | None = None
    version: int | None = None
    sources: dict[str, SourceInfo] = field(factory=dict)
    extensions: dict[str, int] = field(factory=dict)  # name -> size (the index's base and its changes)


def _source_info(contacts: int, sync: dict[str, Any]) -> SourceInfo:
    identity = sync.get("identity")
    last = sync.get("last_success")
    return SourceInfo(
        contacts=contacts,
        delta_link=bool(sync.get("delta_link")),
        importing=bool(sync.get("next_link")),
        last_success=float(last) if isinstance(last, (int, float)) else None,
        identity=tuple(identity) if isinstance(identity, (list, tuple)) else None,
    )


def _summary(data: bytes, full: bool) -> SnapshotSummary | Snapshot:
    return decode(data) if full else decode_summary(data)


def _info(generation: str, path: str, size: int, mtime: float, result: SnapshotSummary | Snapshot | SnapshotError
          | str) -> GenerationInfo:
    if isinstance(result, SnapshotError):
        return GenerationInfo(generation, path, size, mtime, ok=False, reason=result.reason, message=result.message)
    if isinstance(result, str):
        reason, _, message = result.partition(": ")
        return GenerationInfo(generation, path, size, mtime, ok=False, reason=reason, message=message)
    sources = {}
    for name, source in result.sources.items():
        count = source.contacts if isinstance(source.contacts, int) else len(source.contacts)
        sources[name] = _source_info(count, source.sync)
    extensions = {name: value if isinstance(value, int) else len(value) for name, value in result.extensions.items()}
    return GenerationInfo(generation, path, size, mtime, ok=True, created=result.created, version=result.version,
                          sources=sources, extensions=extensions)


def _bad_name(name: str, when: float, taken: Callable[[str], bool]) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(when))
    candidate = f"{name}.bad-{stamp}"
    serial = 1
    while taken(candidate):
        serial += 1
        candidate = f"{name}.bad-{stamp}-{serial}"
    return candidate


_HINTS = {
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied (check the directory's owner and mode)",
    errno.EPERM: "operation not permitted (check the directory's owner and mode)",
    errno.ENOSPC: "no space left on the device (disk full)",
    errno.EDQUOT: "disk quota exceeded",
    errno.ENOTDIR: "the path is not a directory",
    errno.EEXIST: "the path exists and is not a directory",
    errno.ENOENT: "the directory does not exist",
    errno.EIO: "I/O error",
}


def _write_error(directory: str, step: str, e: OSError) -> SnapshotWriteError:
    code = e.errno
    hint = _HINTS.get(code or -1, e.strerror or str(e))
    name = errno.errorcode.get(code or -1, "error")
    where = e.filename or directory
    return SnapshotWriteError(
        f"cannot save a snapshot in {directory}: {hint} ({name} while {step} {where}); "
        f"the snapshots already there are unchanged",
        errno=code, path=where)


def _chunks(data: Data) -> Iterator[bytes | bytearray | memoryview]:
    """The pieces of ``data``."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        yield data
    else:
        yield from data


def _release(data: Data) -> None:
    """Empty a list of written pieces, last first, pausing between them.

    Freeing hundreds of megabytes in one go holds the GIL for tens of
    milliseconds (the allocator gives the memory back to the system at once),
    and the reactor thread would wait; the newest allocations first, a few at
    a time, spreads that out.
    """
    if isinstance(data, list):
        while data:
            del data[-8:]
            time.sleep(0)


class FileSnapshotStore:
    """Snapshot generations in ``directory`` (created by the first save when missing)."""

    def __init__(self, directory: str, clock: Callable[[], float] = time.time) -> None:
        self.directory = os.path.abspath(directory)
        self.path = os.path.join(self.directory, CURRENT_NAME)
        self.previous_path = os.path.join(self.directory, PREVIOUS_NAME)
        self._clock = clock
        self._lock = threading.Lock()
        #: (device, inode, size, mtime) of the newest generation as last written or read and found valid.
        self._known_good: tuple[int, int, int, int] | None = None
        #: What the last save noticed without failing (a bad newest generation moved aside, a leftover
        #: file it could not remove, a directory fsync that failed): one message each, for the log.
        self.problems: list[str] = []

    # -- save ------------------------------------------------------------

    def save(self, data: Data) -> str:
        """Write ``data`` (bytes, or byte strings to write in order) as the newest generation; its path.

        A list (as :func:`~gateway.snapshot.codec.encode_parts` returns) is
        emptied once written, a few pieces at a time (see ``_release``).

        Steps: write and fsync a temporary file; hard-link the current
        generation to a second temporary name; rename the new file over the
        current one (the commit point); rename the link over the previous
        generation; fsync the directory.  A failure before the commit point
        changes nothing (temporary files are removed); a crash leaves at
        least one valid generation.  Without hard links (some file systems),
        the current generation is renamed to the previous one first.
        Raises :class:`SnapshotWriteError`.
        """
        with self._lock:
            self.problems = []
            try:
                os.makedirs(self.directory, exist_ok=True)
            except OSError as e:
                raise _write_error(self.directory, "creating", e) from e
            self._remove_stale_temps()
            tmp = self._temp_name(CURRENT_NAME)
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o644)
            except OSError as e:
                raise _write_error(self.directory, "creating", e) from e
            try:
                try:
                    for chunk in _chunks(data):
                        view = memoryview(chunk).cast("B")
                        while view:
                            written = os.write(fd, view[:1 << 24])
                            view = view[written:]
                        del view, chunk
                    _release(data)
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError as e:
                self._unlink_quietly(tmp)
                raise _write_error(self.directory, "writing", e) from e
            self._rotate_and_commit(tmp)
            self._fsync_directory()
            try:
                st = os.stat(self.path)
                self._known_good = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
            except OSError:  # pragma: no cover
                self._known_good = None
            return self.path

    def _rotate_and_commit(self, tmp: str) -> None:
        keep: str | None = None  # a hard link to the current generation, to become the previous one
        rename_first = False
        if os.path.lexists(self.path):
            if self._is_good(self.path):
                keep = self._temp_name(PREVIOUS_NAME)
                try:
                    os.link(self.path, keep)
                except OSError:
                    keep = None
                    rename_first = True
            else:
                self.problems.append(self._move_aside(self.path, "the newest generation is not valid"))
        rotated = False
        try:
            if rename_first:
                os.replace(self.path, self.previous_path)
                rotated = True
            os.replace(tmp, self.path)  # the commit point
        except OSError as e:
            self._unlink_quietly(tmp)
            if keep:
                self._unlink_quietly(keep)
            if rotated:  # put the newest generation back under its name (the one before it is gone)
                try:
                    os.replace(self.previous_path, self.path)
                except OSError:
                    pass  # it is still there as the previous generation, and load() finds it
            raise _write_error(self.directory, "renaming into", e) from e
        if keep:
            try:
                os.replace(keep, self.previous_path)
            except OSError as e:
                self._unlink_quietly(keep)
                self.problems.append(f"{self.previous_path}: could not keep the previous generation: {e.strerror}")

    def _is_good(self, path: str) -> bool:
        """Whether ``path`` holds a valid snapshot: known from the last save or load, else checked."""
        try:
            st = os.stat(path)
        except OSError:
            return False
        if self._known_good == (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns):
            return True
        try:
            with open(path, "rb") as f:
                decode_summary(f.read())
        except (OSError, SnapshotError):
            return False
        return True

    def _temp_name(self, name: str) -> str:
        return os.path.join(self.directory, f".{name}{_TEMP_MARK}{os.getpid()}-{secrets.token_hex(4)}")

    def _remove_stale_temps(self) -> None:
        """Remove temporary files left by a crash (of this process, or of one no longer running)."""
        try:
            names = os.listdir(self.directory)
        except OSError:
            return
        now = self._clock()
        for name in names:
            if not (name.startswith(".") and _TEMP_MARK in name):
                continue
            path = os.path.join(self.directory, name)
            try:
                pid = int(name.rpartition(_TEMP_MARK)[2].split("-")[0])
            except ValueError:
                continue
            if pid != os.getpid() and _alive(pid):
                try:
                    if now - os.stat(path).st_mtime < _STALE_TEMP_SECONDS:
                        continue
                except OSError:
                    continue
            self._unlink_quietly(path)

    def _fsync_directory(self) -> None:
        try:
            fd = os.open(self.directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        except OSError as e:  # pragma: no cover
            self.problems.append(f"{self.directory}: cannot open the directory to fsync it: {e.strerror}")
            return
        try:
            os.fsync(fd)
        except OSError as e:
            if e.errno not in (errno.EINVAL, errno.ENOTSUP):  # some file systems cannot fsync a directory
                self.problems.append(f"{self.directory}: fsync of the directory failed: {e.strerror}")
        finally:
            os.close(fd)

    @staticmethod
    def _unlink_quietly(path: str) -> None:
        try:
            os.unlink(path)
        except OSError:
            pass

    def _move_aside(self, path: str, why: str) -> str:
        """Rename a bad file to ``<name>.bad-<time>``; the message to report."""
        directory, name = os.path.split(path)
        target = os.path.join(directory, _bad_name(name, self._clock(), lambda n: os.path.lexists(
            os.path.join(directory, n))))
        try:
            os.rename(path, target)
        except OSError as e:
            return f"{path}: {why}; could not move it aside ({e.strerror})"
        if self._known_good is not None and path == self.path:
            self._known_good = None
        return f"{path}: {why}; moved aside to {target}"

    # -- load ------------------------------------------------------------

    def load(self, contacts: bool = True) -> tuple[Snapshot | None, list[str]]:
        """The newest valid generation (or None) and what was wrong with the others
        (``contacts=False``: with its contacts left undecoded, see ``codec.decode``).

        A file that is not a valid snapshot is moved aside and reported;
        one that cannot be read (permissions, I/O error) is reported and left
        in place.
        """
        with self._lock:
            problems: list[str] = []
            if not os.path.isdir(self.directory):
                if os.path.lexists(self.directory):
                    problems.append(f"{self.directory}: not a directory, no snapshots there")
                return None, problems
            for path in (self.path, self.previous_path):
                try:
                    with open(path, "rb") as f:
                        st = os.fstat(f.fileno())
                        data = f.read()
                except FileNotFoundError:
                    continue
                except OSError as e:
                    problems.append(f"{path}: cannot read it: {e.strerror}")
                    continue
                try:
                    snapshot = decode(data, contacts)
                except SnapshotError as e:
                    problems.append(self._move_aside(path, e.message))
                    continue
                finally:
                    del data
                if path == self.path:
                    self._known_good = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
                return snapshot, problems
            return None, problems

    # -- inspection ------------------------------------------------------

    def generations(self, full: bool = False) -> list[GenerationInfo]:
        """Every snapshot file in the directory, newest generation first, then bad and temporary files.

        Checks header, checksum and manifest of each; with ``full``, decodes
        every contact too.  Changes nothing on disk.
        """
        try:
            names = sorted(os.listdir(self.directory))
        except OSError:
            names = []
        listed = [("current", CURRENT_NAME), ("previous", PREVIOUS_NAME)]
        listed += [("bad", n) for n in names if n.startswith((CURRENT_NAME + ".bad-", PREVIOUS_NAME + ".bad-"))]
        listed += [("temp", n) for n in names if n.startswith(".") and _TEMP_MARK in n]
        out = []
        for generation, name in listed:
            path = os.path.join(self.directory, name)
            try:
                with open(path, "rb") as f:
                    st = os.fstat(f.fileno())
                    data = f.read() if generation != "temp" else b""
            except FileNotFoundError:
                continue
            except OSError as e:
                try:
                    st = os.stat(path)
                except OSError:
                    continue
                out.append(_info(generation, path, st.st_size, st.st_mtime, f"unreadable: {e.strerror}"))
                continue
            if generation == "temp":
                result: Any = "temp: temporary file of a save in progress or interrupted"
            else:
                try:
                    result = _summary(data, full)
                except SnapshotError as e:
                    result = e
            out.append(_info(generation, path, st.st_size, st.st_mtime, result))
        return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists
        return True
    return True


class MemorySnapshotStore:
    """The :class:`FileSnapshotStore` interface over a dict, for tests.

    ``files`` maps names to ``(bytes, mtime)``.  Set ``fail_with`` to an
    ``OSError`` to make the next saves fail as the file system would.
    """

    directory = "memory:"

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.files: dict[str, tuple[bytes, float]] = {}
        self.fail_with: OSError | None = None
        self.problems: list[str] = []
        self.path = self.directory + CURRENT_NAME
        self.previous_path = self.directory + PREVIOUS_NAME

    def save(self, data: Data) -> str:
        self.problems = []
        if self.fail_with is not None:
            raise _write_error(self.directory, "writing", self.fail_with)
        blob = b"".join(bytes(c) for c in _chunks(data))
        current = self.files.get(CURRENT_NAME)
        if current is not None:
            try:
                decode_summary(current[0])
            except SnapshotError:
                self.problems.append(self._move_aside(CURRENT_NAME, "the newest generation is not valid"))
            else:
                self.files[PREVIOUS_NAME] = current
        self.files[CURRENT_NAME] = (blob, self._clock())
        return self.path

    def _move_aside(self, name: str, why: str) -> str:
        target = _bad_name(name, self._clock(), self.files.__contains__)
        self.files[target] = self.files.pop(name)
        return f"{self.directory}{name}: {why}; moved aside to {self.directory}{target}"

    def load(self, contacts: bool = True) -> tuple[Snapshot | None, list[str]]:
        problems: list[str] = []
        for name in (CURRENT_NAME, PREVIOUS_NAME):
            if name not in self.files:
                continue
            try:
                return decode(self.files[name][0], contacts), problems
            except SnapshotError as e:
                problems.append(self._move_aside(name, e.message))
        return None, problems

    def generations(self, full: bool = False) -> list[GenerationInfo]:
        listed = [("current", CURRENT_NAME), ("previous", PREVIOUS_NAME)]
        listed += [("bad", n) for n in sorted(self.files) if ".bad-" in n]
        out = []
        for generation, name in listed:
            if name not in self.files:
                continue
            data, mtime = self.files[name]
            try:
                result: Any = _summary(data, full)
            except SnapshotError as e:
                result = e
            out.append(_info(generation, self.directory + name, len(data), mtime, result))
        return out
