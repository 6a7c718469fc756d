"""The Ship of Theseus: applying ``update_instructions.json`` without losing the image.

``apply`` is the whole sequence: validate -> stop the kernel (the ladder) -> back
up the image -> record the code's revision -> run the steps in the project root
-> apply the parser and persona settings (``BATOS_HOME/overrides.json``, read by
config.py) -> start the kernel and wait for ``ping``.  A failed step or a kernel
that does not come up restores the revision, the image and the settings, and
starts the previous kernel.  The instructions file is then moved to
``BATOS_HOME/upgrades/`` marked applied, failed or rejected, beside a JSON report.
The rest of the module is its parts.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

from pydantic import BaseModel, Field, ValidationError, field_validator

import config
from batos import storage

if TYPE_CHECKING:
    from watchdog.process import KernelProcess

# the supervisor's logger: upgrade lines read in watchdog.log as they always have
log = logging.getLogger("watchdog")
PROJECT_ROOT = Path(__file__).resolve().parent.parent
TAIL = 2000


class UpgradeError(Exception):
    """The instructions cannot be used; the message says why."""


class Instructions(BaseModel):
    id: str = Field(min_length=1, max_length=100)
    steps: list[list[str]] = Field(default_factory=list, max_length=50)
    parser_repo_id: Optional[str] = None
    parser_filename: Optional[str] = None
    parser_revision: Optional[str] = None
    persona_models: Optional[dict[str, str]] = None

    @field_validator("id")
    @classmethod
    def _safe_id(cls, v: str) -> str:
        if not re.match(r"^[A-Za-z0-9._-]+$", v):
            raise ValueError("id may hold only letters, digits, '.', '_' and '-'")
        return v

    @field_validator("steps")
    @classmethod
    def _argv(cls, v: list[list[str]]) -> list[list[str]]:
        if any(not step or not all(isinstance(a, str) for a in step) for step in v):
            raise ValueError("each step must be a non-empty list of strings (an argv)")
        return v

    @field_validator("persona_models")
    @classmethod
    def _personas(cls, v: Optional[dict[str, str]]) -> Optional[dict[str, str]]:
        if v is not None and set(v) - set(config.PERSONAS):
            raise ValueError(f"persona_models names unknown personas {sorted(set(v) - set(config.PERSONAS))}")
        return v


def load(path: Path) -> Instructions:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UpgradeError(f"not readable JSON: {exc}") from None
    if not isinstance(data, dict):
        raise UpgradeError("the instructions must be a JSON object")
    try:
        return Instructions.model_validate(data)
    except ValidationError as exc:
        raise UpgradeError("; ".join(f"{'.'.join(map(str, e['loc'])) or 'file'}: {e['msg']}"
                                     for e in exc.errors()[:5])) from None


def settings_updates(inst: Instructions) -> dict[str, Any]:
    updates: dict[str, Any] = {}
    for key, name in (("parser_repo_id", "HF_PARSER_REPO_ID"), ("parser_filename", "HF_PARSER_FILENAME"),
                      ("parser_revision", "HF_PARSER_REVISION")):
        if getattr(inst, key) is not None:
            updates[name] = getattr(inst, key)
    if inst.persona_models is not None:
        updates["PERSONA_MODELS"] = inst.persona_models
    return updates


# -------------------------------------------------------------- the sequence

def apply(settings: Any, path: Path, kernel: "KernelProcess", launch: Callable[[str], bool]) -> dict:
    """Apply the instructions at ``path`` to the running ``kernel``; returns the report
    (also written beside the moved instructions).  ``launch(reason)`` starts a kernel
    and says whether it answered ping in time."""
    home = settings.HOME
    try:
        inst = load(path)
    except UpgradeError as exc:
        report: dict = {"outcome": "rejected", "reason": str(exc)}
        where = finish(path, home, "unnamed", "rejected", report)
        log.error("watchdog: rejected %s: %s (report %s); the kernel is untouched", path.name, exc, where)
        return report
    log.info("watchdog: applying upgrade %s (%d steps)", inst.id, len(inst.steps))
    report = {"id": inst.id, "started_at": time.time(), "steps": []}
    t_down = time.monotonic()
    report["stop"] = kernel.stop()
    revision = git_revision()
    report["revision_before"] = revision
    previous = config.read_overrides(home)
    try:
        saved = backup(settings, home / "backups" / f"{inst.id}-{int(time.time())}")
    except BackupError as exc:   # no step runs on an image that could not be saved
        report.update(outcome="failed", reason=f"no backup of the image: {exc}", backup=None)
        report["rolled_back"] = launch(f"upgrade {inst.id} not applied")
        report["downtime_s"] = round(time.monotonic() - t_down, 3)
        where = finish(path, home, inst.id, "failed", report)
        log.error("watchdog: upgrade %s not applied: no backup of the image: %s (report %s)",
                  inst.id, exc, where)
        return report
    report["backup"] = str(saved)
    report["steps"] = run_steps(inst.steps, settings.UPGRADE_STEP_TIMEOUT_S)
    ok = all(s.get("exit_code") == 0 for s in report["steps"]) and len(report["steps"]) == len(inst.steps)
    if ok:
        report["settings"] = settings_updates(inst)
        if report["settings"]:
            config.write_overrides(home, report["settings"])
        ok = launch(f"upgrade {inst.id}")
        if not ok:
            report["reason"] = "the upgraded kernel did not answer ping in time"
    else:
        failed = report["steps"][-1]
        report["reason"] = f"step {failed['argv']} failed ({failed.get('error') or failed.get('exit_code')})"
    if ok:
        report["outcome"] = "applied"
    else:
        kernel.stop()
        if revision and git_revision() != revision:
            report["revision_restored"] = restore_revision(revision)
        note = restore(settings, saved)
        if note:
            report["image_not_restored"] = note
        (home / config.OVERRIDES_FILE).unlink(missing_ok=True)
        if previous:
            config.write_overrides(home, previous)
        report["outcome"] = "failed"
        report["rolled_back"] = launch(f"rollback of {inst.id}")
    report["downtime_s"] = round(time.monotonic() - t_down, 3)
    report["revision_after"] = git_revision()
    where = finish(path, home, inst.id, report["outcome"], report)
    log.info("watchdog: upgrade %s %s in %.1fs (report %s)", inst.id, report["outcome"],
             report["downtime_s"], where)
    return report


# -------------------------------------------------------------- image backup
#
# Each storage is saved by its own means: the FileStorage (one kernel, stopped) is
# copied; a ZEO image with repozo on the server's FileStorage, which must be this
# home's DB_FILE (the file ``./puter.sh zeo`` serves); RelStorage with pg_dump.  A
# shared image is never restored automatically: other kernels may have written to it
# since, so the report says how to restore it by hand.

class BackupError(Exception):
    """The image cannot be saved; the upgrade does not go ahead."""


def backup(settings: Any, dest: Path) -> Path:
    """A consistent copy of the image and its blobs, by the storage's own means."""
    spec = storage.spec_for(settings)
    dest.mkdir(parents=True, exist_ok=True)
    if spec.kind == "zeo":
        _backup_zeo(settings, dest)
    elif spec.kind == "postgresql":
        _backup_postgresql(settings, spec, dest)
    else:
        for suffix in ("", ".index"):
            src = Path(str(spec.path) + suffix)
            if src.exists():
                shutil.copy2(src, dest / src.name)
    blobs = settings.blob_path if spec.kind == "zeo" else spec.blob_dir
    if blobs.exists() and (spec.kind != "postgresql" or spec.shared_blob_dir):
        shutil.copytree(blobs, dest / "blobs", copy_function=_link_or_copy,
                        ignore=shutil.ignore_patterns("tmp", "*.lock"))
    return dest


def _backup_zeo(settings: Any, dest: Path) -> None:
    """repozo's full backup of the ZEO server's FileStorage (safe while it serves)."""
    fs = settings.db_path
    if not fs.exists():
        raise BackupError(f"the image is served by ZEO ({storage.spec_for(settings).describe()}) and "
                          f"its FileStorage is not in this BATOS_HOME ({fs} does not exist): run the "
                          "watchdog in the home where ./puter.sh zeo runs, or back the server up "
                          "where it runs (python -m ZODB.scripts.repozo -B -F -f Data.fs -r DIR)")
    (dest / "repozo").mkdir(exist_ok=True)
    _run([sys.executable, "-m", "ZODB.scripts.repozo", "-B", "-F", "-f", str(fs), "-r", str(dest / "repozo")],
         "repozo", settings.UPGRADE_STEP_TIMEOUT_S)


def _backup_postgresql(settings: Any, spec: Any, dest: Path) -> None:
    """pg_dump of the whole database (RelStorage's tables and the blobs kept in it)."""
    pg_dump = shutil.which("pg_dump")
    if pg_dump is None:
        raise BackupError(f"the image is in PostgreSQL ({spec.describe()}) and pg_dump is not "
                          "installed here (Debian: apt-get install postgresql-client); install it "
                          "or back the database up by other means before upgrading")
    _run([pg_dump, "--format=custom", f"--file={dest / 'image.pgdump'}", f"--dbname={spec.dsn}"],
         "pg_dump", settings.UPGRADE_STEP_TIMEOUT_S)


def _run(argv: list[str], what: str, timeout_s: float) -> None:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BackupError(f"{what} failed: {exc}") from None
    if out.returncode != 0:
        raise BackupError(f"{what} failed (exit {out.returncode}): {(out.stderr or out.stdout)[-500:].strip()}")


def restore(settings: Any, src: Path) -> str | None:
    """Put the image back as it was saved.  A shared image is not put back (other kernels
    may have written to it since): the returned note says how to do it by hand."""
    spec = storage.spec_for(settings)
    if spec.kind == "zeo":
        return (f"the image is shared through ZEO ({spec.describe()}) and other kernels may have "
                f"written to it since the backup; to roll it back, stop the ZEO server and every "
                f"kernel, then run: {sys.executable} -m ZODB.scripts.repozo -R -r {src / 'repozo'} "
                f"-o {settings.db_path}, and put {src / 'blobs'} back as {settings.blob_path}")
    if spec.kind == "postgresql":
        return (f"the image is shared through PostgreSQL ({spec.describe()}) and other kernels may "
                "have written to it since the backup; to roll it back, stop every kernel, then run: "
                f"pg_restore --clean --if-exists --dbname=URI {src / 'image.pgdump'}")
    for suffix in ("", ".index"):
        target = Path(str(spec.path) + suffix)
        saved = src / target.name
        if saved.exists():
            shutil.copy2(saved, target)
        elif target.exists():
            target.unlink()
    if (src / "blobs").exists():
        shutil.rmtree(spec.blob_dir, ignore_errors=True)
        shutil.copytree(src / "blobs", spec.blob_dir, copy_function=_link_or_copy)
    return None


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)        # committed blobs never change: a hard link is a copy
    except OSError:
        shutil.copy2(src, dst)


# -------------------------------------------------------------- code revision

def git_revision(root: Path = PROJECT_ROOT) -> Optional[str]:
    if not (root / ".git").exists():
        return None
    out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else None


def restore_revision(rev: str, root: Path = PROJECT_ROOT) -> bool:
    out = subprocess.run(["git", "checkout", "--force", rev], cwd=root, capture_output=True, text=True)
    return out.returncode == 0


# -------------------------------------------------------------- steps

def argv_for(step: list[str]) -> list[str]:
    """``python`` and ``pip`` mean the project's own interpreter."""
    if step[0] == "python":
        return [sys.executable, *step[1:]]
    if step[0] == "pip":
        return [sys.executable, "-m", "pip", *step[1:]]
    return list(step)


def run_steps(steps: list[list[str]], timeout_s: float, root: Path = PROJECT_ROOT) -> list[dict]:
    """Run the steps in order; stop at the first that fails.  One record per step run."""
    records = []
    for step in steps:
        t0 = time.monotonic()
        record: dict[str, Any] = {"argv": step}
        try:
            out = subprocess.run(argv_for(step), cwd=root, capture_output=True, text=True,
                                 timeout=timeout_s, stdin=subprocess.DEVNULL)
            record.update(exit_code=out.returncode, stdout_tail=out.stdout[-TAIL:],
                          stderr_tail=out.stderr[-TAIL:])
        except subprocess.TimeoutExpired as exc:
            record.update(exit_code=None, error=f"timed out after {timeout_s:g}s",
                          stdout_tail=(exc.stdout or b"")[-TAIL:].decode(errors="replace")
                          if isinstance(exc.stdout, bytes) else (exc.stdout or "")[-TAIL:])
        except OSError as exc:
            record.update(exit_code=None, error=f"cannot run: {exc}")
        record["seconds"] = round(time.monotonic() - t0, 3)
        records.append(record)
        if record.get("exit_code") != 0:
            break
    return records


def finish(path: Path, home: Path, inst_id: str, outcome: str, report: dict) -> Path:
    """Move the instructions aside, marked with the outcome, beside a JSON report."""
    done = home / "upgrades"
    done.mkdir(parents=True, exist_ok=True)
    stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    base = f"{inst_id}.{stamp}.{outcome}"
    try:
        os.replace(path, done / f"{base}.json")
    except OSError as exc:
        report["move_error"] = str(exc)
    report_path = done / f"{base}.report.json"
    report_path.write_text(json.dumps(report, indent=2, default=str))
    return report_path
