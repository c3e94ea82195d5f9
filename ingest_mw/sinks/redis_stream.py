"""A sink that appends events to a Redis stream, one ``MULTI``/``EXEC`` per batch (extra ``redis``).

A log pipeline's usual next hop: consumers (a consumer group) read the
stream at their own pace. redis-py's client on the sync face, its asyncio
client on the async face.
"""

from __future__ import annotations

import asyncio
import os
from itertools import repeat
from typing import Any

import redis
import redis.asyncio
from redis.exceptions import NoPermissionError, RedisError, ResponseError

from ..batch import Batch, each_event_json
from ..headers import rounded_size
from .base import Outage, SinkUnavailable, StorageFull, made_off_the_loop_if_large
from .record import iso_utc, iso_utc_each_bytes, label_runs
from .url import masked

__all__ = ["RedisStreamSink", "xadd_commands"]

_MULTI = b"*1\r\n$5\r\nMULTI\r\n"
_EXEC = b"*1\r\n$4\r\nEXEC\r\n"
_bulk_header = b"$%d\r\n".__mod__


def _bulk(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


def xadd_commands(batch: Batch, stream: bytes, maxlen: int | None) -> tuple[bytes, int]:
    """The batch's ``XADD`` commands in the Redis protocol, one entry per event,
    and their number: every entry's shared part (the stream, trimming, the
    batch's fields) written once and repeated by ``join``, so that no Python
    code runs per event.

    An entry's fields: ``received_at``, ``api``, ``source``, then ``dataset``,
    ``service`` and ``namespace`` when set, ``dt`` and ``data`` (the event
    as JSON text, as the other sinks write it).
    """
    start = [b"XADD", stream]
    if maxlen is not None:
        start += [b"MAXLEN", b"~", b"%d" % maxlen]
    start += [b"*", b"received_at", iso_utc(batch.received_at).encode(), b"api", batch.api.encode()]
    start += [b"source", batch.source.encode()]
    commands, count = [], 0
    for service, namespace, times, data in label_runs(batch):
        words = list(start)
        for name, value in (("dataset", batch.dataset), ("service", service), ("namespace", namespace)):
            if value is not None:
                words += [name.encode(), value.encode()]
        words.append(b"dt")
        head = b"*%d\r\n" % (len(words) + 3) + b"".join(map(_bulk, words))
        texts = each_event_json(data)
        dts = iso_utc_each_bytes(times)
        entries = zip(
            repeat(head),
            map(_bulk_header, map(len, dts)),
            dts,
            repeat(b"\r\n$4\r\ndata\r\n"),
            map(_bulk_header, map(len, texts)),
            texts,
            repeat(b"\r\n"),
        )
        commands.append(b"".join(map(b"".join, entries)))
        count += len(texts)
    return b"".join(commands), count


class RedisStreamSink:
    """Append each event to the Redis stream ``stream`` as one entry (see
    :func:`xadd_commands` for its fields).

    ``url`` is a redis-py URL (``redis://[:password@]host:6379/0``, or
    ``rediss://`` for TLS). A batch is one ``MULTI``, its ``XADD``\\ s and
    ``EXEC``, sent at once: the entries appear together or not at all, and
    the batch is acknowledged by the server before the hook returns (so
    before the 202). ``maxlen`` trims the stream to about that many entries
    (``MAXLEN ~``: Redis trims whole nodes, so a few more may stay), else the
    stream grows until consumers ``XTRIM`` or ``XDEL`` it.

    ``timeout`` bounds connecting and each reply (unless the URL sets
    ``socket_timeout``): a server that is down or frozen fails a request in
    seconds. The batch then fails with :class:`~ingest_mw.sinks.SinkUnavailable`
    (one line logged per outage, the password masked), and the next batch
    connects again: the sink stores again once Redis answers, without a restart.
    """

    def __init__(
        self,
        url: str,
        *,
        stream: str = "ingest_mw:events",
        maxlen: int | None = None,
        timeout: float = 5.0,
    ) -> None:
        self.shown = masked(url)
        if not stream:
            raise ValueError("stream must be a non-empty name")
        if maxlen is not None and not (isinstance(maxlen, int) and maxlen >= 1):
            raise ValueError(f"maxlen must be a whole number >= 1 or None, not {maxlen!r}")
        if not timeout > 0:
            raise ValueError(f"timeout must be a number of seconds > 0, not {timeout!r}")
        self.url = url
        self.stream = stream
        self.maxlen = maxlen
        self.timeout = timeout
        self._stream = stream.encode()
        options = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
        try:  # the URL's own options win over these
            self._pool = redis.ConnectionPool.from_url(url, **options)
            self._apool_options = options
            redis.asyncio.ConnectionPool.from_url(url, **options)  # the same URL checked for the async face
        except ValueError as exc:
            raise ValueError(f"{self.shown}: {exc}") from None
        self._pid = os.getpid()
        self._apool: redis.asyncio.ConnectionPool | None = None
        self._apool_loop: asyncio.AbstractEventLoop | None = None
        self._outage = Outage(f"Redis Streams sink {self.shown} (stream {self.stream})")

    def __repr__(self) -> str:
        return f"RedisStreamSink({self.shown!r}, stream={self.stream!r})"

    @staticmethod
    def _check_exec(ids: Any, count: int) -> None:
        if not isinstance(ids, list) or len(ids) != count:
            raise ResponseError(f"EXEC answered {ids!r:.80}, not {count} entry IDs")
        for reply in ids:
            if isinstance(reply, ResponseError):
                raise reply

    # --- the sync face -----------------------------------------------------------------
    def _sync_pool(self) -> redis.ConnectionPool:
        if self._pid != os.getpid():  # a forked worker: connections of its own
            self._pool = self._pool.__class__.from_url(self.url, **self._apool_options)
            self._pid = os.getpid()
        return self._pool

    def _commands(self, batch: Batch) -> tuple[bytes, int]:
        return xadd_commands(batch, self._stream, self.maxlen)

    def __call__(self, batch: Batch) -> None:
        commands, count = self._commands(batch)
        if not count:
            return
        pool = self._sync_pool()
        try:
            connection: Any = pool.get_connection()
        except RedisError as exc:
            raise self._outage.failed(exc) from None
        try:
            connection.send_packed_command([_MULTI, commands, _EXEC])
            read = connection.read_response
            read()  # +OK
            for _ in range(count):
                read()  # +QUEUED (an error reply raises)
            self._check_exec(read(), count)
        except BaseException as exc:
            connection.disconnect()  # unread replies, or a broken socket: never reused
            pool.release(connection)
            if isinstance(exc, RedisError):
                raise self._outage.failed(exc) from None
            raise
        pool.release(connection)
        self._outage.stored()

    def check(self) -> None:
        """Prove Redis answers, the stream's key holds a stream or nothing (a
        ``TYPE``) and Redis is not at its ``maxmemory`` without eviction (an
        ``INFO memory``), where it refuses every ``XADD``; raise
        :class:`~ingest_mw.sinks.SinkUnavailable` if not."""
        client = redis.Redis(connection_pool=self._sync_pool())
        try:
            try:
                kind: Any = client.type(self._stream)
            except NoPermissionError:  # a user allowed only what storing needs: its PING, then
                client.ping()
                kind = "none"
            try:
                memory: Any = client.info("memory")
            except ResponseError:  # a user that may not INFO, a server that renamed it: not asked
                memory = {}
        except RedisError as exc:
            raise self._outage.error(exc) from None
        self._holds_a_stream(kind)
        self._has_memory(memory)

    def _holds_a_stream(self, kind: bytes | str) -> None:
        """``TYPE``'s answer for the stream's key, or the one line of a key of
        another type (every XADD to it would fail: WRONGTYPE)."""
        kind = kind.decode() if isinstance(kind, bytes) else kind
        if kind not in ("stream", "none"):
            raise SinkUnavailable(
                f"{self._outage.what}: its key holds a {kind}, not a stream:"
                " give the sink another stream= or delete that key"
            )

    def _has_memory(self, memory: dict[str, Any]) -> None:
        """``INFO memory``'s answer, or the one line of a Redis that refuses
        writes now: past its ``maxmemory`` (less what it does not count for
        eviction, as Redis reckons it) with the ``noeviction`` policy."""
        limit = int(memory.get("maxmemory") or 0)
        used = int(memory.get("used_memory") or 0) - int(memory.get("mem_not_counted_for_evict") or 0)
        if limit and used > limit and memory.get("maxmemory_policy") == "noeviction":
            raise StorageFull(
                f"{self._outage.what}: Redis is past its maxmemory ({rounded_size(used)} of"
                f" {rounded_size(limit)}, noeviction) and refuses every XADD: trim the stream (maxlen=)"
                " or raise maxmemory"
            )

    # --- the async face ----------------------------------------------------------------
    def _async_pool(self) -> redis.asyncio.ConnectionPool:
        loop = asyncio.get_running_loop()
        if self._apool is None or self._apool_loop is not loop:
            # No timeout per reply (asyncio's timeout machinery per reply doubled the
            # cost of a batch): one timeout around each batch's exchange instead.
            options = {**self._apool_options, "socket_timeout": None}
            self._apool = redis.asyncio.ConnectionPool.from_url(self.url, **options)
            self._apool_loop = loop
        return self._apool

    async def acall(self, batch: Batch) -> None:
        """Store ``batch`` from async code, on the event loop's own connections
        (the commands of a large batch made off the loop)."""
        commands, count = await made_off_the_loop_if_large(self._commands, batch)
        if not count:
            return
        pool = self._async_pool()
        connection: Any = None
        try:
            async with asyncio.timeout(self.timeout):  # connecting (its handshake included) and the replies
                connection = await pool.get_connection()  # type: ignore[no-untyped-call]  # redis-py's, untyped
                await connection.send_packed_command([_MULTI, commands, _EXEC])
                read = connection.read_response
                await read()
                for _ in range(count):
                    await read()
                self._check_exec(await read(), count)
        except BaseException as exc:
            if connection is not None:
                await connection.disconnect()
                await pool.release(connection)
            if isinstance(exc, RedisError | TimeoutError):
                raise self._outage.failed(exc) from None
            raise
        await pool.release(connection)
        self._outage.stored()

    async def acheck(self) -> None:
        """:meth:`check` from async code."""
        try:
            client: Any = redis.asyncio.Redis(connection_pool=self._async_pool())
            async with asyncio.timeout(self.timeout):
                try:
                    kind = await client.type(self._stream)
                except NoPermissionError:  # as in check()
                    await client.ping()
                    kind = "none"
                try:
                    memory = await client.info("memory")
                except ResponseError:  # as in check()
                    memory = {}
        except (RedisError, TimeoutError) as exc:
            raise self._outage.error(exc) from None
        self._holds_a_stream(kind)
        self._has_memory(memory)

    # --- closing -----------------------------------------------------------------------
    def close(self) -> None:
        """Close the sync face's connections (the async face's: :meth:`aclose`)."""
        if self._pid == os.getpid():
            self._pool.disconnect()

    async def aclose(self) -> None:
        """Close both faces' connections, from the event loop the async one runs on."""
        pool, self._apool = self._apool, None
        if pool is not None and self._apool_loop is asyncio.get_running_loop():
            await pool.disconnect()
        self.close()
