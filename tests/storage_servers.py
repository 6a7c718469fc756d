"""Real storage servers for the tests and the scale benchmark: a ZEO server (``python -m
batos.zeo_server``, ZEO's own runzeo) and a throw-away PostgreSQL cluster (initdb in a
temporary directory as an unprivileged user, on a free loopback port, its socket in that
directory), both removed when stopped."""
from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PG_USER = "postgres"          # Debian's postgresql package makes this unprivileged system user
PG_FALLBACK_USER = "batos-pg"  # made (useradd --system) when there is no postgres user


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, wait_s: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {wait_s}s:\n"
                       f"{log.read_text(errors='replace')[-3000:]}")


class ZeoServer:
    """``python -m batos.zeo_server`` (what ``./puter.sh zeo`` runs) on ``home``'s image."""

    def __init__(self, home: Path):
        self.home = home
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.uri = f"zeo://{self.address}"
        self.log_path = home / "zeo.log"
        self.proc: subprocess.Popen | None = None

    def start(self, wait_s: float = 30.0) -> "ZeoServer":
        self.home.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("BATOS_")}
        env["BATOS_HOME"] = str(self.home)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "batos.zeo_server", "--address", self.address],
                                         cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        wait_port(self.port, self.proc, wait_s, "the ZEO server", self.log_path)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def pg_bindir() -> Path | None:
    """Where Debian's (or any) PostgreSQL server programs are, or None when not installed."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


PG_MISSING = ("PostgreSQL is not installed (no initdb; Debian: apt-get install postgresql): "
              "the RelStorage tests need a real server")


class PostgresCluster:
    """A throw-away cluster: ``initdb`` and ``pg_ctl`` as an unprivileged user (``runuser``
    when we are root), trust authentication on 127.0.0.1 only, fsync off."""

    def __init__(self):
        self.bindir = pg_bindir()
        if self.bindir is None:
            raise RuntimeError(PG_MISSING)
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="batos-pg-"))
        self.data = self.dir / "data"
        self.log_path = self.dir / "postgres.log"
        self.user = self._user()
        self.superuser = "batos"
        self._databases = 0

    @staticmethod
    def _user() -> str | None:
        if os.geteuid() != 0:
            return None
        import pwd
        for name in (PG_USER, PG_FALLBACK_USER):
            try:
                pwd.getpwnam(name)
                return name
            except KeyError:
                pass
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                        PG_FALLBACK_USER], check=True, capture_output=True)
        return PG_FALLBACK_USER

    def _as_user(self, argv: list[str]) -> list[str]:
        return ["runuser", "-u", self.user, "--", *argv] if self.user else argv

    def start(self) -> "PostgresCluster":
        if self.user:
            shutil.chown(self.dir, self.user)
        os.chmod(self.dir, 0o700)
        self._run([str(self.bindir / "initdb"), "-D", str(self.data), "-U", self.superuser, "-A", "trust",
                   "-E", "UTF8", "--no-sync", "--no-instructions"])
        options = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off")
        self._run([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log_path), "-o", options,
                   "-w", "-t", "60", "start"])
        return self

    def _run(self, argv: list[str]) -> None:
        out = subprocess.run(self._as_user(argv), capture_output=True, text=True, cwd=self.dir)
        if out.returncode != 0:
            log = self.log_path.read_text(errors="replace")[-2000:] if self.log_path.exists() else ""
            raise RuntimeError(f"{argv[0]} failed ({out.returncode}): {out.stderr[-2000:]}\n{log}")

    def dsn(self, database: str) -> str:
        return f"postgresql://{self.superuser}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database; returns its URI."""
        import psycopg2
        self._databases += 1
        name = f"batos_{self._databases}"
        conn = psycopg2.connect(self.dsn("postgres"))
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f"CREATE DATABASE {name}")
        finally:
            conn.close()
        return self.dsn(name)

    def stop(self) -> None:
        if self.data.exists():
            subprocess.run(self._as_user([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                                          "-w", "stop"]), capture_output=True, cwd=self.dir)
        shutil.rmtree(self.dir, ignore_errors=True)
