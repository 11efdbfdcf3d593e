"""The servers every entry point needs: the configured ones, or (in development only) embedded
ones when unset."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import AsyncIterator

from ops.embedded import EmbeddedPostgres, EmbeddedRedis, check_redis_modules
from ops.settings import ConfigError, Settings, startup_problems


@asynccontextmanager
async def services(settings: Settings) -> AsyncIterator[Settings]:
    """Settings whose REDIS_URL and DATABASE_URL point at running servers (embedded if unset).

    In production an unset one raises ConfigError instead: patients' data in a throwaway
    embedded server would be lost with the container.
    """
    if not settings.development and (problems := startup_problems(settings)):
        raise ConfigError(problems[0])
    started: list[EmbeddedRedis | EmbeddedPostgres] = []
    try:
        updates: dict[str, str] = {}
        if not settings.redis_url:
            redis_server = EmbeddedRedis(settings.data_dir / "redis", appendonly=True)
            started.append(redis_server)
            updates["redis_url"] = redis_server.start()
        elif not settings.redis_cluster:  # a cluster's checkpointer needs no module
            check_redis_modules(settings.redis_url)
        if not settings.database_url:
            postgres = EmbeddedPostgres(settings.data_dir / "postgres")
            started.append(postgres)
            updates["database_url"] = postgres.start()
        yield settings.model_copy(update=updates)
    finally:
        for server in reversed(started):
            server.stop()
