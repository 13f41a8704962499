"""A run directory's life: one writer at a time, its files (written and read back for a
resume), and charrnn deletes only files it made there.

`claim` holds an exclusive OS lock (`fcntl.flock` on `.charrnn.lock` inside the directory) for
as long as a training process writes it. The kernel drops the lock with the process, even on
SIGKILL, so a killed run never leaves the directory locked. Where `fcntl` does not exist
(Windows) no lock is taken; on NFS, Linux emulates flock with POSIX byte-range locks.
Readers (sample, eval, info, repl) take no lock: every file is published by an atomic rename.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from charrnn import checkpoint
from charrnn.corpus import CACHE_IDS, CACHE_META
from charrnn.errors import CheckpointError, RunInUseError

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX
    fcntl = None

LOCK_NAME = ".charrnn.lock"
RUN_FILES = ("latest.npz", "best.npz", "config.json", "metrics.jsonl")  # what makes a run
CACHE_FILES = (CACHE_IDS, CACHE_META)
# The temporary files of charrnn's own atomic writes in a run directory: "." + the target's
# name + "." + mkstemp's random letters + ".tmp" (the id cache's is ".corpus.<random>.tmp").
OWN_TEMP = re.compile(
    r"\.(?:latest\.npz|best\.npz|config\.json|metrics\.jsonl|corpus\.json|corpus)"
    r"\.[A-Za-z0-9_]+\.tmp"
)


def own_temp_files(run_dir: Path) -> list[Path]:
    """Temporary files of charrnn's atomic writes whose process died before the rename."""
    return sorted(p for p in run_dir.iterdir() if OWN_TEMP.fullmatch(p.name) and p.is_file())


def _holder_pid(fd: int) -> str:
    """The pid in a lock file another process holds. The holder writes it right after its
    flock succeeds, so a rival that lost the race by microseconds waits a moment for it."""
    pid = ""
    for _ in range(50):  # 0.1 s at most
        pid = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        if pid.isdigit():
            break
        time.sleep(0.002)
    return pid


def _lock(run_dir: Path) -> int | None:
    """Take the directory's lock; the open descriptor holds it (None where there is no flock)."""
    if fcntl is None:
        return None
    path = run_dir / LOCK_NAME
    for _ in range(100):  # a holder may unlink the file between our open and our flock
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except FileNotFoundError:
            raise CheckpointError(f"{run_dir}: no such run directory") from None
        except OSError as exc:
            raise CheckpointError(f"cannot lock {run_dir} ({exc.strerror or exc})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _holder_pid(fd)
            os.close(fd)
            holder = f"pid {pid}" if pid.isdigit() else "pid unknown"
            raise RunInUseError(
                f"{run_dir}: in use by another charrnn process ({holder}); one training "
                "writes a run directory at a time"
            ) from None
        except OSError as exc:  # a file system without locks: say so rather than risk it
            os.close(fd)
            raise CheckpointError(f"cannot lock {run_dir} ({exc.strerror or exc})") from None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            return fd
        os.close(fd)  # we locked a file its last holder had already unlinked: take the new one
    raise CheckpointError(f"cannot lock {run_dir}: its lock file keeps changing")


def _unlock(run_dir: Path, fd: int | None) -> None:
    if fd is None:
        return
    with contextlib.suppress(OSError):
        (run_dir / LOCK_NAME).unlink()  # still ours: we hold the lock
    os.close(fd)


def _refuse_unless_empty(run_dir: Path) -> None:
    """A new run needs a directory with nothing of anyone else's in it (as `git clone`)."""
    if any((run_dir / name).exists() for name in RUN_FILES):
        raise CheckpointError(f"{run_dir}: already holds a run; pass --resume to continue it")
    ours = {LOCK_NAME, *CACHE_FILES}
    foreign = sorted(
        p.name + ("/" if p.is_dir() else "")
        for p in run_dir.iterdir()
        if p.name not in ours and not OWN_TEMP.fullmatch(p.name)
    )
    if foreign:
        more = len(foreign) - 5
        shown = ", ".join(foreign[:5]) + (f" and {more} more" if more > 0 else "")
        raise CheckpointError(
            f"{run_dir}: is not empty (holds {shown}); give --out a new or empty directory"
        )


@contextlib.contextmanager
def claim(run_dir: Path, new: bool) -> Iterator[None]:
    """Be the one writer of run_dir while the block runs: for a new run (made if missing, else
    it must be empty) or to resume one. Leftover temporary files of charrnn's own writes are
    removed once the lock is held; a directory this call made and nothing filled is removed."""
    created = False
    if new:
        if run_dir.exists() and not run_dir.is_dir():
            raise CheckpointError(f"{run_dir}: exists and is not a directory")
        if run_dir.is_dir():  # checked before locking, so a run being resumed is not disturbed
            _refuse_unless_empty(run_dir)
        else:
            try:
                run_dir.mkdir(parents=True)
                created = True
            except FileExistsError:
                pass  # made at this moment by a rival: the lock decides
            except OSError as exc:
                raise CheckpointError(f"cannot create {run_dir} ({exc.strerror or exc})") from None
    elif not run_dir.is_dir():
        raise CheckpointError(f"{run_dir}: no such run directory")
    fd = _lock(run_dir)
    try:
        if new:
            _refuse_unless_empty(run_dir)  # again, now that no rival can change it
        for leftover in own_temp_files(run_dir):
            leftover.unlink(missing_ok=True)  # a write cut short when its process was killed
        yield
    finally:
        _unlock(run_dir, fd)
        if created:
            with contextlib.suppress(OSError):
                run_dir.rmdir()  # only if nothing was written: a failed start leaves no trace


def discard_cache(run_dir: Path) -> None:
    """Remove the corpus id cache of a new run whose text proved unusable."""
    for name in CACHE_FILES:
        (run_dir / name).unlink(missing_ok=True)


def save(
    run_dir: Path,
    arrays: dict[str, np.ndarray],
    meta: dict,
    resume_state: dict,
    best: bool,
    history: list[dict] | None,
) -> None:
    """Write a checkpoint: best.npz when it is the best so far, latest.npz (with what an exact
    resume needs), config.json, and metrics.jsonl after an evaluation. Each file atomically."""
    try:
        if best:
            checkpoint.save_npz(run_dir / "best.npz", arrays, meta)
        checkpoint.save_npz(run_dir / "latest.npz", arrays, {**meta, **resume_state})
        checkpoint.save_json(run_dir / "config.json", meta)
        if history is not None:  # rewritten whole: a torn or lost line cannot stay behind
            checkpoint.save_jsonl(run_dir / "metrics.jsonl", history)
    except OSError as exc:
        raise CheckpointError(
            f"cannot write a checkpoint in {run_dir} ({exc.strerror or exc}); "
            "the previous checkpoint is intact"
        ) from None


def load_resume_state(run_dir: Path) -> dict:
    """Everything latest.npz holds for resuming: its metadata, arrays and evaluation history."""
    path = checkpoint.checkpoint_path(run_dir, "latest")
    meta = checkpoint.read_meta(path)
    expected = checkpoint.model_arrays_expected(meta)
    arrays = checkpoint.read_npz(path)
    for name, (shape, dtype) in expected.items():
        if name not in arrays or arrays[name].shape != shape or arrays[name].dtype != dtype:
            raise CheckpointError(f"{path}: array {name!r} is missing or has the wrong shape")
    if checkpoint.STATE not in arrays:
        raise CheckpointError(f"{path}: no carried hidden state; cannot resume")
    if isinstance(meta.get("history"), list):
        history = [r for r in meta["history"] if isinstance(r, dict) and "step" in r]
    else:  # checkpoints written before the history moved into latest.npz
        history = checkpoint.read_metrics(run_dir, up_to=meta["step"])
    return {"meta": meta, "arrays": arrays, "history": history}
