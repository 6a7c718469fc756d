"""CurveZMQ on the Synaptic Bridge: the kernel's certificates, who may connect, and the
keys a client connects with.

``BATOS_HOME/curve/`` (made at the kernel's first start with CURVE on, in
``zmq.auth.create_certificates``' format, secret files 0600)::

    server.key, server.key_secret    the kernel's pair; give server.key to remote clients
    local.key, local.key_secret      the pair this machine's tools use (watchdog, doctor,
                                     client, tests); always let in
    authorized/*.key                 the public certificates of the clients let in

The kernel's ZAP handler (``Authenticator``: zmq.auth's asyncio authenticator, on the
kernel's event loop) reloads ``authorized/`` whenever its listing changes (polled every
``RELOAD_POLL_S``).  A refused client is logged in kernel.log and as a ``curve_refused``
event in metacognition.jsonl, once a minute at most per key.

    python -m batos.curve new NAME [DIR]    a client pair: DIR/NAME.key (copy it into the
                                            kernel's curve/authorized/) and DIR/NAME.key_secret
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import zmq
import zmq.auth
from zmq.auth.asyncio import AsyncioAuthenticator
from zmq.utils import z85

log = logging.getLogger("batos.curve")
CURVE_DIR = "curve"
AUTHORIZED = "authorized"
SERVER, LOCAL = "server", "local"
RELOAD_POLL_S = 1.0
REFUSAL_LOG_EVERY_S = 60.0   # a client retrying with a refused key is logged once in this


class CurveError(Exception):
    """A certificate is missing, unreadable or malformed; the message says which and what to do."""


def curve_dir(home: Path) -> Path:
    return Path(home) / CURVE_DIR


def authorized_dir(home: Path) -> Path:
    return curve_dir(home) / AUTHORIZED


# -- certificates ---------------------------------------------------------------------------
def read_certificate(path: Path, secret: bool = False) -> tuple[bytes, bytes | None]:
    """(public key, secret key or None) from a certificate file; CurveError when unusable."""
    try:
        public, secret_key = zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as exc:
        raise CurveError(f"curve: cannot read the certificate {path}: {exc}") from None
    if len(public) != 40 or (secret_key is not None and len(secret_key) != 40):
        raise CurveError(f"curve: {path} does not hold a 40-character Z85 CURVE key")
    if secret and secret_key is None:
        raise CurveError(f"curve: {path} is a public certificate; a secret one (NAME.key_secret) "
                         "is needed here")
    return public, secret_key


def _write_public(path: Path, public: bytes, source: str) -> None:
    """A public certificate as create_certificates writes one, replaced whole."""
    text = (f"#   ****  Made by BAT OS from {source}  ****\n"
            "#   ZeroMQ CURVE Public Certificate\n"
            "#   Exchange securely, or use a secure mechanism to verify the contents\n"
            "#   of this file after exchange. Store public certificates in your home\n"
            "#   directory, in the .curve subdirectory.\n\n"
            "metadata\ncurve\n"
            f"    public-key = \"{public.decode()}\"\n")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def create_pair(directory: Path, name: str) -> tuple[Path, Path]:
    """``NAME.key`` (0644) and ``NAME.key_secret`` (0600) in ``directory``, unless the secret
    file is there already.  The pair is made in a private (0700) scratch directory and the
    secret file linked in, so no reader sees half a file, nobody sees the secret with a wider
    mode, and a second process making the same pair at once keeps the first one's."""
    directory.mkdir(parents=True, exist_ok=True)
    public, secret = directory / f"{name}.key", directory / f"{name}.key_secret"
    if not secret.exists():
        with tempfile.TemporaryDirectory(dir=directory, prefix=".new-") as scratch:
            _pub, new_secret = zmq.auth.create_certificates(scratch, name)
            os.chmod(new_secret, 0o600)
            try:
                os.link(new_secret, secret)
            except FileExistsError:
                pass                                    # made meanwhile: keep that one
            except OSError:                             # no hard links on this file system
                data = Path(new_secret).read_bytes()
                try:
                    fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                except FileExistsError:
                    data = b""
                else:
                    with os.fdopen(fd, "wb") as f:
                        f.write(data)
    pub_key, _ = read_certificate(secret, secret=True)
    try:
        current = read_certificate(public)[0] if public.exists() else None
    except CurveError:
        current = None
    if current != pub_key:                              # missing, or not this pair's
        _write_public(public, pub_key, secret.name)
    return public, secret


def ensure_kernel_certificates(home: Path) -> Path:
    """The kernel's pair and the local pair, made when missing, and the local pair's public
    certificate in authorized/; returns BATOS_HOME/curve.  Safe to call from the watchdog
    and the kernel at once."""
    directory = curve_dir(home)
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        create_pair(directory, SERVER)
        local_public, _ = create_pair(directory, LOCAL)
        authorized = authorized_dir(home)
        authorized.mkdir(exist_ok=True)
        copy, key = authorized / local_public.name, read_certificate(local_public)[0]
        try:
            current = read_certificate(copy)[0] if copy.exists() else None
        except CurveError:
            current = None
        if current != key:
            _write_public(copy, key, local_public.name)
    except OSError as exc:
        raise CurveError(f"curve: cannot make the certificates in {directory}: {exc}") from None
    return directory


def load_authorized(directory: Path) -> dict[bytes, str]:
    """{Z85 public key -> file name} of the ``*.key`` files in ``directory``; a file that
    cannot be read is skipped and logged (zmq.auth's loader drops the whole directory for
    one bad file, which would lock everyone out while a certificate is half copied)."""
    keys: dict[bytes, str] = {}
    try:
        names = sorted(e.name for e in os.scandir(directory) if e.name.endswith(".key"))
    except OSError as exc:
        log.error("curve: cannot list %s: %s; no client but the local tools is let in", directory, exc)
        return keys
    for name in names:
        try:
            keys[read_certificate(directory / name)[0]] = name
        except CurveError as exc:
            log.warning("%s (skipped)", exc)
    return keys


# -- the kernel's side ----------------------------------------------------------------------
class Authenticator(AsyncioAuthenticator):
    """ZAP for the kernel's ROUTER: the keys in authorized/ and the local pair are let in,
    reloaded when authorized/ changes; refusals are logged (zmq.auth logs them at DEBUG)."""

    def __init__(self, context: zmq.Context, home: Path,
                 on_refused: Callable[[dict], None] | None = None):
        super().__init__(context, log=logging.getLogger("batos.curve.zap"))
        self.home = Path(home)
        self.directory = authorized_dir(home)
        self.on_refused = on_refused
        self.local_key = read_certificate(curve_dir(home) / f"{LOCAL}.key")[0]
        self.keys: dict[bytes, str] = {}       # {Z85 public key -> certificate file name}
        self._listing: Any = None
        self._peer = ""
        self._refusals: dict[bytes, tuple[float, int]] = {}   # {key -> (last logged, refused since)}
        self._watcher: asyncio.Task | None = None

    def start(self) -> None:
        super().start()
        self.reload()
        self._watcher = asyncio.ensure_future(self._watch())

    def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
        super().stop()

    def _scan(self) -> Any:
        try:
            return tuple(sorted((e.name, e.stat().st_mtime_ns, e.stat().st_size)
                                for e in os.scandir(self.directory) if e.name.endswith(".key")))
        except OSError:
            return None

    def reload(self) -> None:
        """Read authorized/ again (configure_curve's job, with a loader that skips a bad file)."""
        self._listing = self._scan()
        keys = load_authorized(self.directory)
        added = sorted(n for k, n in keys.items() if k not in self.keys)
        removed = sorted(n for k, n in self.keys.items() if k not in keys)
        self.keys = keys
        self.allow_any = False
        self.certs["*"] = {**{k: True for k in keys}, self.local_key: True}
        if added or removed:
            log.info("curve: %d authorized client certificate%s in %s%s%s", len(keys),
                     "" if len(keys) == 1 else "s", self.directory,
                     f"; added {', '.join(added)}" if added else "",
                     f"; removed {', '.join(removed)}" if removed else "")

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(RELOAD_POLL_S)
            try:
                if self._scan() != self._listing:
                    self.reload()
            except Exception:   # the watcher must outlive any one bad reload
                log.exception("curve: reloading %s failed", self.directory)

    async def handle_zap_message(self, msg: list[bytes]) -> None:
        self._peer = msg[3].decode("utf-8", "replace") if len(msg) > 3 else "?"
        await super().handle_zap_message(msg)

    async def _authenticate_curve(self, domain: str, client_key: bytes) -> tuple[bool, bytes]:
        allowed, reason = await super()._authenticate_curve(domain, client_key)
        if not allowed:
            self._refused(z85.encode(client_key), reason.decode("utf-8", "replace"))
        return allowed, reason

    def _refused(self, key: bytes, reason: str) -> None:
        now = time.monotonic()
        last, since = self._refusals.get(key, (0.0, 0))
        if last and now - last < REFUSAL_LOG_EVERY_S:
            self._refusals[key] = (last, since + 1)
            return
        self._refusals[key] = (now, 0)
        repeats = f" ({since} more refusals of it since the last line)" if since else ""
        log.warning("curve: refused a client from %s: its key %s is not authorized (%s; the "
                    "authorized certificates are %s/*.key)%s", self._peer or "?", key.decode(),
                    reason, self.directory, repeats)
        if self.on_refused is not None:
            self.on_refused({"event": "curve_refused", "address": self._peer, "client_key": key.decode(),
                             "reason": reason, "repeats": since})


def server_pair(home: Path) -> tuple[bytes, bytes]:
    """(public, secret) of the kernel, made first if missing."""
    directory = ensure_kernel_certificates(home)
    public, secret = read_certificate(directory / f"{SERVER}.key_secret", secret=True)
    assert secret is not None
    return public, secret


# -- the client's side ----------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ClientKeys:
    """What a DEALER needs to talk CURVE to one kernel."""
    server_public: bytes
    public: bytes
    secret: bytes
    server_key_file: str = ""
    client_cert_file: str = ""

    def apply(self, sock: zmq.Socket) -> None:
        sock.curve_serverkey = self.server_public
        sock.curve_publickey = self.public
        sock.curve_secretkey = self.secret


HOW_TO = ("give --server-key FILE (BATOS_SERVER_KEY: the kernel's BATOS_HOME/curve/server.key) and "
          "--client-cert FILE (BATOS_CLIENT_CERT: a secret certificate, NAME.key_secret, whose "
          "NAME.key is in the kernel's BATOS_HOME/curve/authorized/; python -m batos.curve new NAME "
          "makes one)")


def client_keys(settings: Any, server_key: str = "", client_cert: str = "") -> ClientKeys | None:
    """The keys to connect with, or None when CURVE is off.  Explicit files (arguments, then
    BATOS_SERVER_KEY / BATOS_CLIENT_CERT) turn CURVE on; otherwise, with CURVE on, the
    kernel's public certificate and the local pair in BATOS_HOME/curve."""
    server_key = server_key or settings.SERVER_KEY
    client_cert = client_cert or settings.CLIENT_CERT
    if not (settings.curve_enabled or server_key or client_cert):
        return None
    directory = curve_dir(settings.HOME)
    server_file = Path(server_key).expanduser() if server_key else directory / f"{SERVER}.key"
    cert_file = Path(client_cert).expanduser() if client_cert else directory / f"{LOCAL}.key_secret"
    try:
        server_public, _ = read_certificate(server_file)
        public, secret = read_certificate(cert_file, secret=True)
    except CurveError as exc:
        home_files = not (server_key and client_cert)
        hint = (f"; on the kernel's machine the kernel makes {directory} at its first start with "
                f"CURVE on, elsewhere {HOW_TO}") if home_files else ""
        raise CurveError(f"{exc}{hint}") from None
    assert secret is not None
    return ClientKeys(server_public, public, secret, str(server_file), str(cert_file))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (2, 3) or args[0] != "new" or not args[1].replace("-", "_").isidentifier():
        print("usage: python -m batos.curve new NAME [DIR]   (NAME: letters, digits, _ and -)",
              file=sys.stderr)
        return 2
    directory = Path(args[2] if len(args) == 3 else ".")
    if (directory / f"{args[1]}.key_secret").exists():
        print(f"{directory / args[1]}.key_secret exists; choose another NAME", file=sys.stderr)
        return 1
    public, secret = create_pair(directory, args[1])
    print(f"{public}: copy it into the kernel's BATOS_HOME/curve/authorized/\n"
          f"{secret}: this client's --client-cert (BATOS_CLIENT_CERT); keep it private")
    return 0


if __name__ == "__main__":
    sys.exit(main())
