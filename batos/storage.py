"""The storage behind the Living Image, named by a URI (``BATOS_DB_URI``, zodburi-style).

    (unset)                        ZODB FileStorage at HOME/DB_FILE, blobs in HOME/BLOB_DIR:
                                   one kernel (the default; nothing else changes)
    file:///PATH/Data.fs           the same at another path (?blobstorage_dir=DIR)
    zeo://HOST:PORT                a ZEO server (ClientStorage): many kernels on one image
    zeo:///PATH/zeo.sock           ... through a unix socket
    postgresql://USER@HOST:PORT/DB RelStorage on PostgreSQL: many kernels on one image

Options ride in the query: for ZEO ``storage`` (the server's storage name, 1),
``cache_size`` (bytes of the client's object cache), ``blob_dir`` (the blob cache,
default HOME/zeo_blob_cache), ``shared_blob_dir`` (true: ``blob_dir`` is the server's
own blob directory, on the same file system) and ``wait_timeout`` (seconds to wait for
the server at start, 30); for PostgreSQL ``blob_dir`` (default
HOME/relstorage_blob_cache), ``shared_blob_dir`` (false: blobs are kept in the
database and ``blob_dir`` is a cache; true: blobs live only in that shared directory)
and ``keep_history`` (true); any other query parameter is libpq's (``sslmode``, a
``host`` that is a socket directory, ...).

Every shared storage syncs at the start of each transaction, so a kernel's next
transaction (a read included) sees what other kernels committed before it began:
RelStorage polls the database then, and ZEO is opened with ``server_sync`` (a round
trip to the server, after which every earlier invalidation has arrived).

``python -m batos.zeo_server [--address HOST:PORT]`` (``./puter.sh zeo``) runs ZEO's
own ``runzeo`` on HOME/DB_FILE with blobs in HOME/BLOB_DIR, on a loopback address.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

VAR = "BATOS_DB_URI"
ZEO_DEFAULT_ADDRESS = "127.0.0.1:8100"
ZEO_BLOB_CACHE = "zeo_blob_cache"
RELSTORAGE_BLOB_CACHE = "relstorage_blob_cache"
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
_OPTIONS = {   # {kind -> the query options BAT OS reads (for postgresql the rest go to libpq)}
    "file": ("blobstorage_dir",),
    "zeo": ("storage", "cache_size", "blob_dir", "shared_blob_dir", "wait_timeout"),
    "postgresql": ("blob_dir", "shared_blob_dir", "keep_history"),
}


class StorageURIError(ValueError):
    """A ``BATOS_DB_URI`` that cannot be used (``config.load`` reports it as a ConfigError)."""


def _error(message: str) -> Exception:
    return StorageURIError(message)


@dataclasses.dataclass(frozen=True)
class StorageSpec:
    """Where the image is and how to open it, parsed from the URI."""
    kind: str                           # "file", "zeo" or "postgresql"
    uri: str                            # as given ("" for the default FileStorage)
    blob_dir: Path                      # FileStorage: the blobs; otherwise a cache or the shared directory
    path: Path | None = None            # file: the .fs file
    address: Any = None                 # zeo: (host, port) or a socket path
    dsn: str = ""                       # postgresql: the libpq connection URI, without BAT OS's options
    storage_name: str = "1"
    cache_size: int = 20 << 20
    shared_blob_dir: bool = False
    wait_timeout: float = 30.0
    keep_history: bool = True

    @property
    def shared(self) -> bool:
        """Several kernels may open this image at once."""
        return self.kind != "file"

    def describe(self) -> str:
        """The image's name in logs and messages (a password never shows)."""
        if self.kind == "file":
            return str(self.path)
        if self.kind == "zeo":
            where = self.address if isinstance(self.address, str) else "%s:%d" % self.address
            return f"zeo://{where}" + (f" (storage {self.storage_name})" if self.storage_name != "1" else "")
        return redact(self.dsn)


def redact(uri: str) -> str:
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = parts.netloc.replace(":" + parts.password + "@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _bool(name: str, raw: str, uri: str) -> bool:
    low = raw.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise _error(f"config: {VAR}={redact(uri)!r}: {name}={raw!r} is not a boolean (use true/false)")


def _number(name: str, raw: str, uri: str, kind: type) -> Any:
    try:
        value = kind(raw)
    except ValueError:
        raise _error(f"config: {VAR}={redact(uri)!r}: {name}={raw!r} is not a number") from None
    if value <= 0:
        raise _error(f"config: {VAR}={redact(uri)!r}: {name}={raw!r} must be positive")
    return value


def parse(uri: str, home: Path, db_file: Path, blob_dir: Path) -> StorageSpec:
    """The storage a URI names; a URI that cannot be used is a StorageURIError naming BATOS_DB_URI."""
    home = Path(home)

    def under_home(p: Path) -> Path:
        return p if p.is_absolute() else home / p

    uri = uri.strip()
    if not uri:
        return StorageSpec("file", "", under_home(blob_dir), path=under_home(db_file))
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme == "postgres":
        scheme = "postgresql"
    if scheme not in _OPTIONS:
        raise _error(f"config: {VAR}={redact(uri)!r} is not a storage URI BAT OS knows: use "
                     "file:///PATH/Data.fs, zeo://HOST:PORT or postgresql://USER@HOST:PORT/DB "
                     "(unset: the FileStorage in BATOS_HOME)")
    try:
        query = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise _error(f"config: {VAR}={redact(uri)!r} has a query that cannot be read "
                     "(NAME=VALUE pairs joined by &)") from None
    ours = {k: v for k, v in query if k in _OPTIONS[scheme]}
    if scheme != "postgresql":
        unknown = sorted({k for k, _ in query} - set(_OPTIONS[scheme]))
        if unknown:
            raise _error(f"config: {VAR}={redact(uri)!r}: unknown option(s) {', '.join(unknown)}; "
                         f"{scheme}:// takes {', '.join(_OPTIONS[scheme])}")
    if parts.fragment:
        raise _error(f"config: {VAR}={redact(uri)!r} has a fragment (#...); remove it")

    if scheme == "file":
        raw = parts.netloc + parts.path
        if not raw:
            raise _error(f"config: {VAR}={uri!r} names no file (file:///PATH/Data.fs)")
        path = under_home(Path(raw).expanduser())
        blobs = Path(ours["blobstorage_dir"]).expanduser() if "blobstorage_dir" in ours \
            else path.with_name(path.name + ".blob")
        return StorageSpec("file", uri, under_home(blobs), path=path)

    shared = _bool("shared_blob_dir", ours["shared_blob_dir"], uri) if "shared_blob_dir" in ours else False
    if shared and "blob_dir" not in ours:
        raise _error(f"config: {VAR}={redact(uri)!r}: shared_blob_dir=true needs blob_dir= "
                     "(the shared directory itself)")
    if scheme == "zeo":
        if parts.netloc and parts.path not in ("", "/"):
            raise _error(f"config: {VAR}={uri!r} has a path after HOST:PORT; use zeo://HOST:PORT "
                         "or zeo:///PATH/TO/SOCKET")
        if parts.netloc:
            try:
                host, port = parts.hostname, parts.port
            except ValueError:
                raise _error(f"config: {VAR}={uri!r} has a port outside 0..65535") from None
            if not host or not port:
                raise _error(f"config: {VAR}={uri!r} is not zeo://HOST:PORT (a port is needed)")
            address: Any = (host, port)
        elif parts.path and parts.path != "/":
            address = parts.path
        else:
            raise _error(f"config: {VAR}={uri!r} names no server (zeo://HOST:PORT or zeo:///PATH/TO/SOCKET)")
        blobs = Path(ours["blob_dir"]).expanduser() if "blob_dir" in ours else Path(ZEO_BLOB_CACHE)
        return StorageSpec(
            "zeo", uri, under_home(blobs), address=address, storage_name=ours.get("storage", "1") or "1",
            cache_size=_number("cache_size", ours["cache_size"], uri, int) if "cache_size" in ours else 20 << 20,
            shared_blob_dir=shared,
            wait_timeout=_number("wait_timeout", ours["wait_timeout"], uri, float)
            if "wait_timeout" in ours else 30.0)

    # postgresql: what is left of the URI is libpq's
    if not (parts.netloc or parts.path.strip("/") or any(k in ("host", "dbname") for k, _ in query)):
        raise _error(f"config: {VAR}={redact(uri)!r} names no database "
                     "(postgresql://USER@HOST:PORT/DB)")
    rest = [(k, v) for k, v in query if k not in _OPTIONS["postgresql"]]
    qs = urlencode(rest, quote_via=quote, safe="/")
    dsn = f"postgresql://{parts.netloc}{parts.path}" + (f"?{qs}" if qs else "")
    blobs = Path(ours["blob_dir"]).expanduser() if "blob_dir" in ours else Path(RELSTORAGE_BLOB_CACHE)
    return StorageSpec("postgresql", uri, under_home(blobs), dsn=dsn, shared_blob_dir=shared,
                       keep_history=_bool("keep_history", ours["keep_history"], uri)
                       if "keep_history" in ours else True)


def spec_for(settings: Any) -> StorageSpec:
    return parse(settings.DB_URI, settings.HOME, settings.DB_FILE, settings.BLOB_DIR)


def open_storage(spec: StorageSpec, label: str = "") -> Any:
    """Open the storage (exceptions are the storage's own; ``Image.open`` words them)."""
    spec.blob_dir.mkdir(parents=True, exist_ok=True)
    if spec.kind == "file":
        import ZODB.FileStorage
        spec.path.parent.mkdir(parents=True, exist_ok=True)
        return ZODB.FileStorage.FileStorage(str(spec.path), blob_dir=str(spec.blob_dir))
    if spec.kind == "zeo":
        from ZEO.ClientStorage import ClientStorage
        return ClientStorage(spec.address, storage=spec.storage_name, cache_size=spec.cache_size,
                             blob_dir=str(spec.blob_dir), shared_blob_dir=spec.shared_blob_dir,
                             wait_timeout=spec.wait_timeout, server_sync=True,
                             client_label=label or None)
    from relstorage.adapters.postgresql import PostgreSQLAdapter
    from relstorage.options import Options
    from relstorage.storage import RelStorage
    from psycopg2.extensions import make_dsn, parse_dsn
    options = Options(blob_dir=str(spec.blob_dir), shared_blob_dir=spec.shared_blob_dir,
                      keep_history=spec.keep_history, create_schema=True)
    # RelStorage appends " key=value" pairs to the DSN: give it libpq's key=value form
    dsn = make_dsn(**parse_dsn(spec.dsn))
    return RelStorage(PostgreSQLAdapter(dsn=dsn, options=options), options=options)


def open_hint(spec: StorageSpec) -> str:
    """What to do when the storage cannot be opened."""
    if spec.kind == "zeo":
        return "start the server (./puter.sh zeo) or fix BATOS_DB_URI"
    if spec.kind == "postgresql":
        return "check that PostgreSQL runs and the database exists, or fix BATOS_DB_URI"
    return "another kernel may be using it; stop it or give this one its own BATOS_HOME"


# -------------------------------------------------------------- the ZEO server

def zeo_config(address: str, path: Path, blob_dir: Path) -> str:
    return (f"<zeo>\n  address {address}\n</zeo>\n"
            f"<filestorage 1>\n  path {path}\n  blob-dir {blob_dir}\n</filestorage>\n"
            "<eventlog>\n  level INFO\n  <logfile>\n    path STDERR\n"
            "    format %(asctime)s %(name)s %(levelname)s %(message)s\n  </logfile>\n</eventlog>\n")
