"""A real Hugging Face cache on disk, laid out as huggingface_hub lays it out:
``models--ORG--NAME/blobs/<etag>`` holding the content, ``snapshots/<commit>/<file>``
relative symbolic links into ``blobs/``, and ``refs/main`` naming the commit."""
from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path


def add_repo(hub_cache: Path, repo_id: str, files: dict[str, Path | bytes],
             commit: str | None = None) -> Path:
    """Put ``files`` ({name in the repo -> a file to copy, or bytes}) into the cache;
    returns the snapshot directory."""
    org, name = repo_id.split("/")
    repo = hub_cache / f"models--{org}--{name}"
    commit = commit or hashlib.sha1(repo_id.encode()).hexdigest()
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    for rel, content in files.items():
        data_path = None if isinstance(content, bytes) else Path(content)
        digest = hashlib.sha256()
        if data_path is None:
            digest.update(content)
        else:
            with open(data_path, "rb") as f:
                while chunk := f.read(1 << 22):
                    digest.update(chunk)
        blob = repo / "blobs" / digest.hexdigest()
        if not blob.exists():
            if data_path is None:
                blob.write_bytes(content)
            else:
                shutil.copyfile(data_path, blob)
        link = snapshot / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        os.symlink(os.path.relpath(blob, link.parent), link)
    (repo / "refs" / "main").write_text(commit)
    return snapshot


def add_model_dir(hub_cache: Path, repo_id: str, directory: Path) -> Path:
    """A local transformers model directory, as the cache would hold it."""
    files = {str(p.relative_to(directory)): p for p in sorted(directory.rglob("*")) if p.is_file()}
    return add_repo(hub_cache, repo_id, files)
