"""Small I/O helpers: atomic writes and content hashes.

Every result file is written through these so that an interrupted run never
leaves a half-written table, JSON or checkpoint directory behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Any, Iterator, Mapping

import pandas as pd
import torch


CACHE_ENV = "POSEGUARD_CACHE"


def cache_dir(*parts: str) -> Path:
    """Where trained generators, extractors and defenses are cached: ``$POSEGUARD_CACHE`` or
    ``~/.cache/poseguard``. Outside the work tree, so that a fresh checkout on the same machine
    reuses hours of CPU training (entries are keyed by what they depend on, so reuse is safe)."""
    root = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "poseguard"
    return Path(root).joinpath(*parts)


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes, streamed so large checkpoints fit in memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_json(obj: Any) -> str:
    """Stable hash of a JSON-serialisable object (keys sorted)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def sha256_tensors(tensors: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of named tensors' bytes (names, dtypes and shapes included). Bytes, not sums: a sum's
    rounding depends on the thread count, which made one-thread and two-thread runs miss each other's caches."""
    digest = hashlib.sha256()
    for name, tensor in tensors.items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def unwind_on_sigterm() -> None:
    """Turn SIGTERM (``kill``, a CI timeout) into SystemExit for an entry point, so that a stopped process
    unwinds like Ctrl-C and :func:`atomic_path` / :func:`atomic_dir` remove their temporary files."""
    def stop(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling path; move it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Keep the real suffix last: some writers (papermill, imageio) choose a format by it.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    tmp_path.chmod(0o644)  # mkstemp creates 0600; results are meant to be read by others
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling directory that replaces ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp_path
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            shutil.rmtree(tmp_path)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_csv(path: str | os.PathLike, frame: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def replace_rows(path: str | os.PathLike, rows: pd.DataFrame, key: str, sort_by: list[str]) -> pd.DataFrame:
    """Write ``rows`` into the CSV table at ``path`` in place of its rows with the same ``key`` values
    (a rerun of one variant of an exploration leaves the others' rows), sorted; returns the table.
    Nullable columns of ``rows`` (counts beside empty cells, ``Int64``) keep their type, which the CSV
    alone would read back as float."""
    table = rows
    if Path(path).exists():
        earlier = pd.read_csv(path)
        nullable = {column: dtype for column, dtype in rows.dtypes.items()
                    if isinstance(dtype, pd.api.extensions.ExtensionDtype)}
        table = pd.concat([earlier[~earlier[key].isin(rows[key])], rows], ignore_index=True).astype(nullable)
    table = table.sort_values(sort_by, kind="stable", ignore_index=True)
    write_csv(path, table)
    return table
