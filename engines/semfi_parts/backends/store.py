"""Where exported ONNX graphs and TensorRT engines are kept, and what names them.

The cache lives under the user's cache folder (``~/.cache/sfi/semfi`` on Linux, from platformdirs),
or the ``cache_dir`` setting: a 14B graph is ~28 GB per dtype, which belongs on a scratch disk a
render box chooses, never in the model folder (sfi does not write into folders it did not make).
Each entry is a folder named by the digest of its key, written under a temporary name and renamed
when complete, so a stopped export or build never leaves a half entry that a later run would use.

Digests of the model and LoRA are taken from the files' names, sizes and modification times (plus
``config.json``'s text): reading 28 GB to hash it would cost minutes per run, and a file replaced
by a download changes its size or time.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from engines.errors import EngineError

GRAPH_VERSION = 1  # bump when the exported forward changes (dit.py): old graphs stop matching
META = "entry.json"


def cache_root(setting: str) -> Path:
    """The cache folder for the ``cache_dir`` setting ("" = the user's cache folder)."""
    if setting:
        return Path(setting).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("sfi")) / "semfi"


def sfi_version() -> str:
    try:
        return importlib.metadata.version("sfi")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def files_digest(files: list[Path], texts: tuple[Path, ...] = ()) -> str:
    """A digest of files by name, size and modification time, and of small text files by content."""
    stats = [[path.name, path.stat().st_size, path.stat().st_mtime_ns] for path in sorted(files)]
    return digest({"files": stats, "texts": [path.read_text() for path in texts if path.is_file()]})


def model_digest(model_dir: Path, dit_files: list[Path]) -> str:
    return files_digest(dit_files, (Path(model_dir) / "config.json",))


def lora_digest(lora: Path) -> str:
    return files_digest([Path(lora)])


def onnx_key(model: str, lora: str, dtype: str) -> dict[str, Any]:
    """What an exported graph depends on: the DiT and universal LoRA baked into it, its dtype, our forward."""
    return {"kind": "onnx", "model": model, "lora": lora, "dtype": dtype, "graph": GRAPH_VERSION, "sfi": sfi_version()}


@dataclass(frozen=True)
class Entry:
    folder: Path
    meta: dict[str, Any]

    @property
    def size(self) -> int:
        return sum(p.stat().st_size for p in self.folder.iterdir() if p.is_file())


class Store:
    """The cache folder: entries by key, each complete or absent."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def folder(self, key: dict[str, Any]) -> Path:
        return self.root / f"{key['kind']}-{digest(key)}"

    def find(self, key: dict[str, Any]) -> Path | None:
        folder = self.folder(key)
        return folder if (folder / META).is_file() else None

    def write(self, key: dict[str, Any], fill, **meta: Any) -> Path:
        """Make the entry for ``key``: ``fill(folder)`` writes its files into a fresh temporary folder,
        which becomes the entry only once ``fill`` returned."""
        final = self.folder(key)
        partial = final.with_name(final.name + f".partial-{time.time_ns()}")
        try:
            partial.mkdir(parents=True)
        except OSError as error:
            raise EngineError(f"cannot write the SemFi engine cache in '{self.root}' ({error.strerror}); "
                              f"set engines.semfi.cache_dir to a writable folder") from None
        try:
            fill(partial)
            (partial / META).write_text(json.dumps({"key": key, "made": time.strftime("%Y-%m-%dT%H:%M:%S"), **meta}, indent=2))
            if final.exists():  # another process finished the same entry first; keep it
                shutil.rmtree(partial)
            else:
                partial.rename(final)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        return final

    def entries(self) -> Iterator[Entry]:
        """Complete entries, oldest first."""
        if not self.root.is_dir():
            return
        for folder in sorted(self.root.iterdir()):
            meta_file = folder / META
            if folder.is_dir() and meta_file.is_file():
                try:
                    yield Entry(folder, json.loads(meta_file.read_text()))
                except ValueError:
                    continue


def describe_entries(store: Store) -> list[str]:
    """One line per cached graph or engine, for ``sfi doctor``."""
    from engines.semfi_parts.loading import size_text

    lines = []
    for entry in store.entries():
        key = entry.meta.get("key", {})
        if key.get("kind") == "tensorrt":
            what = (f"TensorRT engine ({'; '.join(entry.meta.get('profiles', []))}; TensorRT {key.get('tensorrt')}, "
                    f"{key.get('gpu')})")
        else:
            what = "ONNX graph"
        lines.append(f"{entry.folder.name}: {what}, {key.get('dtype')}, {size_text(entry.size)}")
    return lines
