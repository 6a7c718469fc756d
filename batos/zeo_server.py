"""``python -m batos.zeo_server [--address HOST:PORT]`` (``./puter.sh zeo``): ZEO's own
``runzeo`` on this home's image (HOME/DB_FILE, blobs in HOME/BLOB_DIR), on a loopback
address; kernels then use ``BATOS_DB_URI=zeo://HOST:PORT`` (batos/storage.py)."""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import config
from batos import storage


def zeo_address(settings: Any, given: str | None) -> str:
    """The loopback HOST:PORT the server listens on: --address, else the host and port of a
    zeo:// BATOS_DB_URI, else 127.0.0.1:8100."""
    if given:
        address, var = given, "--address"
    else:
        spec = storage.spec_for(settings)
        if spec.kind == "zeo" and isinstance(spec.address, tuple):
            address, var = "%s:%d" % spec.address, storage.VAR
        else:
            address, var = storage.ZEO_DEFAULT_ADDRESS, "--address"
    host = address.rsplit(":", 1)[0]
    endpoint = f"tcp://[{host}]:{address.rsplit(':', 1)[1]}" if ":" in host and not host.startswith("[") \
        else f"tcp://{address}"
    config.check_endpoint(endpoint, var)
    return address


def serve_zeo(argv: list[str]) -> None:
    """Run ZEO's runzeo on HOME/DB_FILE (blobs: HOME/BLOB_DIR) in the foreground."""
    ap = argparse.ArgumentParser(prog="./puter.sh zeo", description=serve_zeo.__doc__)
    ap.add_argument("--address", help="loopback HOST:PORT (default: from a zeo:// BATOS_DB_URI, "
                                      f"else {storage.ZEO_DEFAULT_ADDRESS})")
    args = ap.parse_args(argv)
    try:
        settings = config.load()
        address = zeo_address(settings, args.address)
    except config.ConfigError as exc:
        print(exc, file=sys.stderr)
        sys.exit(2)
    settings.db_path.parent.mkdir(parents=True, exist_ok=True)
    settings.blob_path.mkdir(parents=True, exist_ok=True)
    conf = settings.HOME / "zeo.conf"
    conf.write_text(storage.zeo_config(address, settings.db_path, settings.blob_path))
    print(f"storage: ZEO serving {settings.db_path} on {address} (config {conf}); "
          f"kernels use BATOS_DB_URI=zeo://{address}", file=sys.stderr, flush=True)
    os.execv(sys.executable, [sys.executable, "-m", "ZEO.runzeo", "-C", str(conf)])


def main(argv: list[str] | None = None) -> None:
    serve_zeo(list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    main()
