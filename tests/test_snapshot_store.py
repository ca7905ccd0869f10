"""Snapshot stores: one contract for the file and the memory store, then the file system's failures.

File-system errors are simulated where a real one cannot be made: the tests
run as root, where a ``chmod 0o500`` directory stays writable, so the
read-only case patches ``os.open`` to fail with EROFS when that is so (and is
a real read-only directory otherwise); disk full patches ``os.write`` to fail
with ENOSPC after a partial write; a crash between two steps of a save is
simulated by copying the directory's state before every step.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
from pathlib import Path
from typing import Iterator

import pytest

from gateway.model import Contact, Phone
from gateway.snapshot import store as store_module
from gateway.snapshot.codec import SourceSnapshot, decode, encode, encode_parts
from gateway.snapshot.store import (
    CURRENT_NAME,
    PREVIOUS_NAME,
    FileSnapshotStore,
    MemorySnapshotStore,
    SnapshotWriteError,
)


def snapshot_bytes(generation: int, contacts: int = 3) -> bytes:
    """A valid snapshot whose generation number is its ``created`` time and in its sync state."""
    people = tuple(Contact("a", f"{generation}-{i}", display_name=f"Person {i}", phones=(Phone("mobile", f"+49{i}"),))
                   for i in range(contacts))
    return encode({"a": SourceSnapshot(contacts=people, sync={"delta_link": f"link-{generation}", "next_link": None,
                                                              "identity": ["t", "c"], "last_success": 50.0}),
                   "b": SourceSnapshot(sync={"delta_link": None, "next_link": "resume-here"})},
                  created=float(generation))


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        self.now += 1
        return self.now


class StoreContract:
    """What every snapshot store does; subclasses provide the store and ways to damage it."""

    def make_store(self):
        raise NotImplementedError

    def damage(self, store, name: str, data: bytes) -> None:
        """Replace the bytes of generation file ``name``."""
        raise NotImplementedError

    def contents(self, store) -> dict[str, bytes]:
        """Every file of the store by name."""
        raise NotImplementedError

    @contextlib.contextmanager
    def failing(self, store, code: int) -> Iterator[None]:
        """Saves fail with OSError ``code`` inside the block."""
        raise NotImplementedError
        yield  # pragma: no cover

    def test_empty_store_loads_nothing(self) -> None:
        store = self.make_store()
        assert store.load() == (None, [])
        assert store.generations() == []

    def test_save_then_load(self) -> None:
        store = self.make_store()
        path = store.save(snapshot_bytes(1))
        assert path.endswith(CURRENT_NAME)
        snapshot, problems = store.load()
        assert problems == []
        assert snapshot == decode(snapshot_bytes(1))

    def test_save_accepts_parts(self) -> None:
        store = self.make_store()
        sources = {"a": SourceSnapshot(contacts=(Contact("a", "1"),))}
        store.save(encode_parts(sources, 9.0))
        assert store.load()[0].sources["a"].contacts == (Contact("a", "1"),)

    def test_two_generations_are_kept(self) -> None:
        store = self.make_store()
        for generation in (1, 2, 3):
            store.save(snapshot_bytes(generation))
        assert store.load()[0].created == 3.0
        gens = store.generations()
        assert [(g.generation, g.created, g.ok) for g in gens] == [("current", 3.0, True), ("previous", 2.0, True)]
        assert gens[0].sources["a"].contacts == 3 and gens[0].sources["a"].delta_link
        assert gens[0].sources["b"].importing and not gens[0].sources["b"].delta_link
        assert gens[0].sources["a"].identity == ("t", "c") and gens[0].sources["a"].last_success == 50.0
        assert set(self.contents(store)) == {CURRENT_NAME, PREVIOUS_NAME}

    @pytest.mark.parametrize("bad, reason", [
        (b"", "empty"),
        (snapshot_bytes(2)[:100], "truncated"),
        (snapshot_bytes(2)[:-1] + bytes([snapshot_bytes(2)[-1] ^ 1]), "corrupted"),
        (b"PK\x03\x04 a zip file", "not a dirgw snapshot"),
    ])
    def test_a_bad_newest_generation_is_moved_aside_and_the_previous_used(self, bad: bytes, reason: str) -> None:
        store = self.make_store()
        store.save(snapshot_bytes(1))
        store.save(snapshot_bytes(2))
        self.damage(store, CURRENT_NAME, bad)
        snapshot, problems = store.load()
        assert snapshot is not None and snapshot.created == 1.0
        assert len(problems) == 1 and reason in problems[0] and "moved aside to" in problems[0]
        files = self.contents(store)
        aside = [n for n in files if n.startswith(CURRENT_NAME + ".bad-")]
        assert len(aside) == 1 and files[aside[0]] == bad  # kept, byte for byte
        assert CURRENT_NAME not in files
        assert [g.generation for g in store.generations()] == ["previous", "bad"]
        # The next save becomes the newest generation and keeps the good previous one.
        store.save(snapshot_bytes(3))
        assert [(g.generation, g.created) for g in store.generations()] == [
            ("current", 3.0), ("previous", 1.0), ("bad", None)]

    def test_both_bad_loads_nothing_and_keeps_both(self) -> None:
        store = self.make_store()
        store.save(snapshot_bytes(1))
        store.save(snapshot_bytes(2))
        self.damage(store, CURRENT_NAME, b"")
        self.damage(store, PREVIOUS_NAME, snapshot_bytes(1)[:-5])
        snapshot, problems = store.load()
        assert snapshot is None
        assert len(problems) == 2 and "empty" in problems[0] and "truncated" in problems[1]
        assert sorted(n.split(".bad-")[0] for n in self.contents(store)) == [PREVIOUS_NAME, CURRENT_NAME]
        assert [g.reason for g in store.generations()] == ["empty", "truncated"] or \
            sorted(g.reason for g in store.generations()) == ["empty", "truncated"]

    def test_a_bad_newest_generation_found_by_save_is_moved_aside(self) -> None:
        store = self.make_store()
        store.save(snapshot_bytes(1))
        store.save(snapshot_bytes(2))
        self.damage(store, CURRENT_NAME, b"garbage")
        store.save(snapshot_bytes(3))
        assert any("moved aside" in p for p in store.problems)
        assert [(g.generation, g.created) for g in store.generations()] == [
            ("current", 3.0), ("previous", 1.0), ("bad", None)]

    @pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EIO])
    def test_a_failed_save_changes_nothing(self, code: int) -> None:
        store = self.make_store()
        store.save(snapshot_bytes(1))
        store.save(snapshot_bytes(2))
        before = self.contents(store)
        with self.failing(store, code):
            with pytest.raises(SnapshotWriteError) as e:
                store.save(snapshot_bytes(3))
        assert e.value.errno == code
        assert errno.errorcode[code] in e.value.message and "unchanged" in e.value.message
        assert self.contents(store) == before
        assert store.load()[0].created == 2.0
        store.save(snapshot_bytes(4))  # and it works again afterwards
        assert [g.created for g in store.generations()] == [4.0, 2.0]


class TestMemoryStore(StoreContract):
    def make_store(self):
        return MemorySnapshotStore(clock=Clock())

    def damage(self, store, name, data):
        store.files[name] = (data, store.files[name][1])

    def contents(self, store):
        return {name: data for name, (data, _) in store.files.items()}

    @contextlib.contextmanager
    def failing(self, store, code):
        store.fail_with = OSError(code, os.strerror(code))
        try:
            yield
        finally:
            store.fail_with = None


def _contents(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in directory.iterdir() if p.is_file()}


class TestFileStore(StoreContract):
    @pytest.fixture(autouse=True)
    def _directory(self, tmp_path: Path) -> None:
        self.directory = tmp_path / "var"

    def make_store(self):
        return FileSnapshotStore(str(self.directory), clock=Clock())

    def damage(self, store, name, data):
        (self.directory / name).write_bytes(data)

    def contents(self, store):
        return _contents(self.directory)

    @contextlib.contextmanager
    def failing(self, store, code):
        """The disk fails mid-write: the first write goes through partly, then ``code``."""
        real_write = os.write
        calls = []

        def write(fd, data):
            calls.append(len(data))
            if len(calls) == 1:
                return real_write(fd, bytes(data)[:10])
            raise OSError(code, os.strerror(code))

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(store_module.os, "write", write)
            yield
        assert len(calls) >= 2


# -- the file system's failures ---------------------------------------------------


def _writable_despite_mode(directory: Path) -> bool:
    """True when the mode does not stop writes (root, or a file system ignoring modes)."""
    probe = directory / ".probe"
    try:
        probe.write_bytes(b"x")
    except PermissionError:
        return False
    probe.unlink()
    return True


def test_read_only_directory(tmp_path: Path) -> None:
    """A read-only directory: a clear SnapshotWriteError, the snapshots unchanged, no temporary file."""
    directory = tmp_path / "var"
    store = FileSnapshotStore(str(directory))
    store.save(snapshot_bytes(1))
    before = _contents(directory)
    directory.chmod(0o500)
    try:
        with pytest.MonkeyPatch.context() as mp:
            if _writable_despite_mode(directory):  # running as root: make the file system say EROFS
                real_open = os.open

                def read_only_open(path, flags, *args, **kwargs):
                    if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
                        raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)
                    return real_open(path, flags, *args, **kwargs)

                mp.setattr(store_module.os, "open", read_only_open)
                expected = "read-only"
            else:  # pragma: no cover - a non-root run
                expected = "permission denied"
            with pytest.raises(SnapshotWriteError, match=expected) as e:
                store.save(snapshot_bytes(2))
        assert str(directory) in str(e.value) and "unchanged" in str(e.value)
    finally:
        directory.chmod(0o755)
    assert _contents(directory) == before
    assert store.load()[0].created == 1.0


def test_directory_path_is_a_file(tmp_path: Path) -> None:
    """A real error, no patching: the configured directory is a file."""
    path = tmp_path / "var"
    path.write_text("not a directory")
    with pytest.raises(SnapshotWriteError, match="not a directory") as e:
        FileSnapshotStore(str(path)).save(snapshot_bytes(1))
    assert e.value.errno in (errno.EEXIST, errno.ENOTDIR)
    assert FileSnapshotStore(str(path)).load() == (None, [f"{path}: not a directory, no snapshots there"])
    assert path.read_text() == "not a directory"


def test_save_empties_a_list_of_parts(tmp_path: Path) -> None:
    """The memory of a big snapshot is given back piece by piece, not all at once after the save."""
    parts = encode_parts({"a": SourceSnapshot(contacts=(Contact("a", "1"),))}, 1.0)
    data = b"".join(parts)
    FileSnapshotStore(str(tmp_path)).save(parts)
    assert parts == []
    assert (tmp_path / CURRENT_NAME).read_bytes() == data


def test_missing_directory_is_created(tmp_path: Path) -> None:
    store = FileSnapshotStore(str(tmp_path / "a" / "b"))
    store.save(snapshot_bytes(1))
    assert (tmp_path / "a" / "b" / CURRENT_NAME).exists()


def test_disk_full_while_writing_removes_the_temporary_file(tmp_path: Path) -> None:
    directory = tmp_path / "var"
    store = FileSnapshotStore(str(directory))
    store.save(snapshot_bytes(1))
    before = _contents(directory)
    real_write = os.write
    written = []

    def write(fd, data):
        if written:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written.append(real_write(fd, bytes(data)[:100]))
        return written[-1]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(store_module.os, "write", write)
        with pytest.raises(SnapshotWriteError, match=r"disk full.*ENOSPC"):
            store.save(snapshot_bytes(2))
    assert _contents(directory) == before  # no temporary file left


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_failures_after_the_write_change_nothing(tmp_path: Path, failing: str) -> None:
    directory = tmp_path / "var"
    store = FileSnapshotStore(str(directory))
    store.save(snapshot_bytes(1))
    store.save(snapshot_bytes(2))
    before = _contents(directory)

    def fail(*args):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(store_module.os, failing, fail)
        with pytest.raises(SnapshotWriteError, match="I/O error"):
            store.save(snapshot_bytes(3))
    assert _contents(directory) == before


def test_without_hard_links_the_rotation_renames(tmp_path: Path) -> None:
    directory = tmp_path / "var"
    store = FileSnapshotStore(str(directory))

    def no_link(*args):
        raise OSError(errno.EPERM, "hard links not supported")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(store_module.os, "link", no_link)
        for generation in (1, 2, 3):
            store.save(snapshot_bytes(generation))
    assert [(g.generation, g.created) for g in store.generations()] == [("current", 3.0), ("previous", 2.0)]
    assert set(_contents(directory)) == {CURRENT_NAME, PREVIOUS_NAME}


def _record_states(monkeypatch: pytest.MonkeyPatch, directory: Path, states: list[dict[str, bytes]]) -> None:
    """Before every step that changes the directory, copy its contents (what a crash there would leave)."""
    for name in ("replace", "rename", "link", "unlink", "fsync", "close"):
        real = getattr(os, name)

        def step(*args, _real=real, **kwargs):
            states.append(_contents(directory) if directory.exists() else {})
            return _real(*args, **kwargs)

        monkeypatch.setattr(store_module.os, name, step)


@pytest.mark.parametrize("start", [0, 1, 2])
@pytest.mark.parametrize("links", [True, False])
def test_a_crash_at_any_step_leaves_a_valid_generation(tmp_path: Path, start: int, links: bool) -> None:
    """For each instant of a save (before every step, and after the last), the directory as a crash
    would leave it loads a valid snapshot: the new one, or the newest one before the save."""
    directory = tmp_path / "var"
    store = FileSnapshotStore(str(directory))
    for generation in range(1, start + 1):
        store.save(snapshot_bytes(generation))
    states: list[dict[str, bytes]] = []
    with pytest.MonkeyPatch.context() as mp:
        if not links:
            mp.setattr(store_module.os, "link", lambda *a: (_ for _ in ()).throw(OSError(errno.EPERM, "no")))
        _record_states(mp, directory, states)
        store.save(snapshot_bytes(10))
    states.append(_contents(directory))
    assert len(states) >= (7 if start else 5)
    for i, state in enumerate(states):
        replay = tmp_path / f"crash-{i}"
        replay.mkdir()
        for name, data in state.items():
            (replay / name).write_bytes(data)
        snapshot, problems = FileSnapshotStore(str(replay)).load()
        assert problems == [], (i, problems)
        if start == 0:
            assert snapshot is None or snapshot.created == 10.0, i
        else:
            assert snapshot is not None and snapshot.created in (float(start), 10.0), (i, state.keys())
    assert decode(states[-1][CURRENT_NAME]).created == 10.0


@pytest.mark.parametrize("links, failing_call, newest, previous", [
    (True, 1, 2.0, 1.0),  # new file -> current fails: nothing changed
    (True, 2, 3.0, 1.0),  # link -> previous fails: the new one is in, the older previous stays
    (False, 1, 2.0, 1.0),  # current -> previous fails: nothing changed
    (False, 2, 2.0, None),  # new file -> current fails after the rotation: rolled back, the oldest is gone
])
def test_a_failed_rename_at_any_point_leaves_a_valid_generation(
        tmp_path: Path, links: bool, failing_call: int, newest: float, previous: float | None) -> None:
    """os.replace raising at each of its calls during a save."""
    directory = tmp_path / "var"
    store = FileSnapshotStore(str(directory))
    store.save(snapshot_bytes(1))
    store.save(snapshot_bytes(2))
    real_replace = os.replace
    calls = []

    def replace(src, dst):
        calls.append((src, dst))
        if len(calls) == failing_call:
            raise OSError(errno.EIO, "simulated failure")
        return real_replace(src, dst)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(store_module.os, "replace", replace)
        if not links:
            mp.setattr(store_module.os, "link", lambda *a: (_ for _ in ()).throw(OSError(errno.EPERM, "no")))
        try:
            store.save(snapshot_bytes(3))
            assert any("could not keep the previous generation" in p for p in store.problems)
        except SnapshotWriteError as e:
            assert "I/O error" in e.message
    assert [g.created for g in store.generations()] == [c for c in (newest, previous) if c is not None]
    snapshot, problems = FileSnapshotStore(str(directory)).load()
    assert problems == [] and snapshot.created == newest
    assert not [n for n in _contents(directory) if ".tmp-" in n]


def test_stale_temporary_files_are_removed(tmp_path: Path) -> None:
    """A crash of a save leaves a temporary file; the next save removes it (a live process's is kept)."""
    directory = tmp_path / "var"
    directory.mkdir()
    dead = directory / f".{CURRENT_NAME}.tmp-999999999-abcd"
    dead.write_bytes(b"half a snapshot")
    mine = directory / f".{CURRENT_NAME}.tmp-{os.getpid()}-abcd"
    mine.write_bytes(b"from an earlier save of this process")
    live = directory / f".{CURRENT_NAME}.tmp-1-abcd"  # pid 1 is alive
    live.write_bytes(b"another process is saving")
    unrelated = directory / "notes.txt"
    unrelated.write_text("keep me")
    store = FileSnapshotStore(str(directory))
    assert [g.generation for g in store.generations()] == ["temp", "temp", "temp"]
    store.save(snapshot_bytes(1))
    assert sorted(_contents(directory)) == sorted([CURRENT_NAME, live.name, "notes.txt"])


def test_bad_files_are_never_overwritten(tmp_path: Path) -> None:
    """Two bad files moved aside in the same second get distinct names."""
    directory = tmp_path / "var"
    store = FileSnapshotStore(str(directory), clock=lambda: 1_700_000_000.0)
    for payload in (b"first", b"second"):
        store.save(snapshot_bytes(1))
        (directory / CURRENT_NAME).write_bytes(payload)
        store.load()
    aside = {n: d for n, d in _contents(directory).items() if ".bad-" in n}
    assert sorted(aside.values()) == [b"first", b"second"]
    assert f"{CURRENT_NAME}.bad-20231114T221320Z" in aside


def test_unreadable_newest_generation_is_reported_and_left(tmp_path: Path) -> None:
    directory = tmp_path / "var"
    store = FileSnapshotStore(str(directory))
    store.save(snapshot_bytes(1))
    store.save(snapshot_bytes(2))
    real_open = open

    def failing_open(path, *args, **kwargs):
        if str(path).endswith(os.sep + CURRENT_NAME):
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return real_open(path, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("builtins.open", failing_open)
        snapshot, problems = FileSnapshotStore(str(directory)).load()
    assert snapshot.created == 1.0
    assert problems == [f"{directory / CURRENT_NAME}: cannot read it: Permission denied"]
    assert (directory / CURRENT_NAME).exists()


def test_save_checks_an_unknown_newest_generation_once(tmp_path: Path) -> None:
    """A newest generation this store did not write or load is verified before it becomes the previous."""
    directory = tmp_path / "var"
    FileSnapshotStore(str(directory)).save(snapshot_bytes(1))
    store = FileSnapshotStore(str(directory))
    store.save(snapshot_bytes(2))  # verifies generation 1 by reading it
    assert [g.created for g in store.generations()] == [2.0, 1.0]
    mode = stat.S_IMODE((directory / CURRENT_NAME).stat().st_mode)
    assert mode & 0o600 == 0o600


def test_inspect_a_real_directory_copy_is_read_only(tmp_path: Path) -> None:
    """generations() changes nothing, even with bad files."""
    directory = tmp_path / "var"
    store = FileSnapshotStore(str(directory))
    store.save(snapshot_bytes(1))
    (directory / CURRENT_NAME).write_bytes(b"junk")
    before = _contents(directory)
    gens = store.generations(full=True)
    assert [(g.generation, g.ok, g.reason) for g in gens] == [("current", False, "foreign")]
    assert _contents(directory) == before
    shutil.rmtree(directory)
    assert store.generations() == []
