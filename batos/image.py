"""The Living Image: a ZODB storage with blobs (a FileStorage, or one many kernels share:
ZEO or RelStorage, named by ``BATOS_DB_URI``; see batos/storage.py).

Each thread works through its own connection and transaction manager (a
``Session``), so the kernel's workers never share persistent objects.
``with image.transaction("note") as s:`` commits on success and aborts on
error; ``image.transact(fn)`` also retries on ConflictError.

Root layout::

    root["batos"]    PersistentMapping  {"version", "created_at", "boots"}
    root["objects"]  OOBTree            {oid -> UvmObject}
    root["cycles"]   OOBTree            {cycle_id -> PersistentMapping}  (completed cycles)
"""
from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from typing import Any, Callable, Iterator, TypeVar

import transaction
import zc.lockfile
import ZODB
from BTrees.OOBTree import OOBTree
from persistent.mapping import PersistentMapping
from ZODB.POSException import ConflictError

from batos import storage
from batos.uvm import UvmObject

log = logging.getLogger("batos.image")
T = TypeVar("T")
IMAGE_VERSION = 1


class ImageError(RuntimeError):
    """The image cannot be opened; the message says why and what to do."""


class ObjectNotFound(LookupError):
    """No object with that oid in the image."""


class ConflictsExhausted(RuntimeError):
    """A transaction kept conflicting with others; it was given up."""


class Session:
    """One thread's connection to the image."""

    def __init__(self, db: ZODB.DB):
        self.tm = transaction.TransactionManager()
        self.conn = db.open(self.tm)

    @property
    def root(self) -> Any:
        return self.conn.root()

    def get(self, oid: str) -> UvmObject:
        obj = self.root["objects"].get(oid)
        if obj is None:
            raise ObjectNotFound(f"no object '{oid}' in the image (list_objects shows them)")
        return obj


class Image:
    def __init__(self, db: ZODB.DB, path: str, blob_dir: str):
        self.db = db
        self.path = path
        self.blob_dir = blob_dir
        self._local = threading.local()
        self._sessions: list[Session] = []   # every thread's session, to close at shutdown
        self._lock = threading.Lock()
        self.created = False                 # True when this open incarnated a new image
        self.spec: storage.StorageSpec | None = None   # what BATOS_DB_URI named (set by open)

    @classmethod
    def open(cls, settings, pool_size: int = 16) -> "Image":
        """Open the storage ``BATOS_DB_URI`` names (batos/storage.py): the FileStorage in
        BATOS_HOME by default, or a ZEO server or PostgreSQL shared by many kernels."""
        spec = storage.spec_for(settings)
        where = spec.describe()
        try:
            st = storage.open_storage(spec, label=getattr(settings, "kernel_name", ""))
        except (zc.lockfile.LockError, ZODB.POSException.StorageSystemError) as exc:
            hint = storage.open_hint(spec)
            raise ImageError(f"image: cannot open {where}: {exc}. {hint[0].upper() + hint[1:]}.") from exc
        except OSError as exc:
            raise ImageError(f"image: cannot open {where}: {exc}") from exc
        except Exception as exc:
            if spec.shared:
                raise ImageError(f"image: cannot open {where} ({type(exc).__name__}: {exc}); "
                                 f"{storage.open_hint(spec)}") from exc
            raise ImageError(f"image: {where} cannot be read ({type(exc).__name__}: {exc}); "
                             "restore a backup or move it aside to start a new image") from exc
        db = ZODB.DB(st, pool_size=pool_size, large_record_size=1 << 26)
        image = cls(db, where, str(spec.blob_dir))
        image.spec = spec
        return image

    # -- sessions and transactions ------------------------------------------------
    def session(self) -> Session:
        s = getattr(self._local, "session", None)
        if s is None:
            s = Session(self.db)
            self._local.session = s
            with self._lock:
                self._sessions.append(s)
        return s

    @contextlib.contextmanager
    def transaction(self, note: str | None = None) -> Iterator[Session]:
        """Commit on success, abort on any error (the error propagates)."""
        s = self.session()
        txn = s.tm.begin()
        try:
            yield s
        except BaseException:
            s.tm.abort()
            raise
        if note:
            txn.note(note)
        try:
            s.tm.commit()
        except BaseException:
            s.tm.abort()
            raise

    @contextlib.contextmanager
    def reading(self) -> Iterator[Session]:
        """A view of the latest committed state; anything changed in it is discarded."""
        s = self.session()
        s.tm.begin()
        try:
            yield s
        finally:
            s.tm.abort()

    def transact(self, fn: Callable[[Session], T], note: str | None = None, retries: int = 5) -> T:
        """Run ``fn(session)`` in a transaction, retrying on ConflictError."""
        for attempt in range(retries + 1):
            try:
                with self.transaction(note) as s:
                    return fn(s)
            except ConflictError:
                if attempt == retries:
                    raise ConflictsExhausted(
                        f"image: {note or 'a transaction'} gave up after {retries + 1} attempts: each "
                        "conflicted with a commit of another thread or kernel to the same objects") from None
                delay = min(0.5, 0.01 * (2 ** attempt)) * random.uniform(0.5, 1.0)
                log.info("image: conflict, retrying in %.3fs (%d/%d)", delay, attempt + 1, retries)
                time.sleep(delay)
        raise AssertionError("unreachable")

    # -- life cycle ---------------------------------------------------------------
    def bootstrap(self, incarnate: Callable[[Any], list[str]]) -> list[str]:
        """Create the root layout and any missing primordial objects; count the boot.

        Returns the oids that were created by this call (empty on a plain resume).
        """
        def _boot(s: Session) -> list[str]:
            root = s.root
            if "batos" not in root:
                root["batos"] = PersistentMapping(
                    {"version": IMAGE_VERSION, "created_at": time.time(), "boots": 0})
                root["objects"] = OOBTree()
                root["cycles"] = OOBTree()
                self.created = True
            meta = root["batos"]
            if meta.get("version", 0) > IMAGE_VERSION:
                raise ImageError(f"image: {self.path} was written by a newer BAT OS "
                                 f"(image version {meta['version']}); upgrade the code")
            meta["boots"] = meta.get("boots", 0) + 1
            return incarnate(root)

        return self.transact(_boot, note="bootstrap")

    def close(self) -> None:
        with self._lock:
            sessions, self._sessions = self._sessions, []
        for s in sessions:
            with contextlib.suppress(Exception):
                s.tm.abort()
            with contextlib.suppress(Exception):
                s.conn.close()
        self.db.close()
