"""Redis connections for the online store: pooled, hiredis-parsed, with short timeouts."""

from __future__ import annotations

import redis


def connect(url: str, *, timeout_ms: int = 20, max_connections: int = 64) -> redis.Redis:
    """A client whose reads fail fast (``timeout_ms``) instead of stalling a decision."""
    timeout = timeout_ms / 1000
    pool = redis.ConnectionPool.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=max(timeout, 0.05),
        max_connections=max_connections,
        health_check_interval=0,
    )
    return redis.Redis(connection_pool=pool)


def ping(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False


def reachable(url: str, timeout_ms: int = 200) -> bool:
    client = connect(url, timeout_ms=timeout_ms, max_connections=1)
    try:
        return ping(client)
    finally:
        client.close()
