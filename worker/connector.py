"""The connection pool: execute and fetch, nothing else.

JSON columns (json and jsonb) are encoded and decoded here, once, so every
layer above sees Python values. Failing to connect raises
:class:`DatabaseUnavailable` with the DSN's password masked.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Literal, Self
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from workerfleet.worker import retry

APPLICATION_NAME = "workerfleet"
COMMAND_TIMEOUT_SECONDS = 60.0
CONNECT_TIMEOUT_SECONDS = 10.0
REDACTED = "***"

# What asyncpg and the OS raise when the server cannot be reached or refuses us.
CONNECT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InvalidAuthorizationSpecificationError,
    asyncpg.InvalidPasswordError,
    asyncpg.InvalidCatalogNameError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.InterfaceError,
)


class DatabaseUnavailable(ConnectionError):
    """The database could not be reached; the message never contains the password."""


# What "the database is unreachable right now" looks like once connected: worth
# retrying after a pause. Anything else is a bug and is reported as one.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    # asyncpg lost track of the exchange because the server went away mid-statement
    # ("cannot switch to state ...; another operation is in progress").
    asyncpg.InternalClientError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.TooManyConnectionsError,
    DatabaseUnavailable,
)
# The server rolled a statement back to break a conflict with another transaction
# (SQLSTATE class 40: deadlock, serialization failure): transient by definition,
# so the statement is retried at once.
CONFLICT_ERRORS: tuple[type[BaseException], ...] = (asyncpg.TransactionRollbackError,)
# After these a connection's protocol state is in doubt: it is closed rather than
# handed out again, and the next call gets a fresh one.
BROKEN_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
)

ErrorKind = Literal["conflict", "unreachable", "unexpected"]


def classify_error(exc: BaseException) -> ErrorKind:
    """How a failed database call should be retried.

    ``conflict``: at once (the server broke a deadlock or a serialization
    conflict); ``unreachable``: after a backoff, the database is away;
    ``unexpected``: after a backoff too, but worth an error in the log.
    """
    if isinstance(exc, CONFLICT_ERRORS):
        return "conflict"
    if isinstance(exc, TRANSIENT_ERRORS):
        return "unreachable"
    return "unexpected"


ERROR_MAX_CHARS = 10_000
RECONNECT_INITIAL_SECONDS = 0.25
RECONNECT_MAX_SECONDS = 10.0


def reconnect_backoff() -> retry.Backoff:
    """Delays between attempts to reach the database again: 0.25 s, 0.5 s, ... up to 10 s."""
    return retry.Backoff(RECONNECT_INITIAL_SECONDS, RECONNECT_MAX_SECONDS)


def describe_error(exc: BaseException) -> str:
    """``Type: message`` of an error, bounded (for logs and a job's last_error)."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text[:ERROR_MAX_CHARS]


class InvalidDsn(ValueError):
    """The DSN itself is malformed (no attempt to connect was made)."""


def redact_dsn(dsn: str) -> str:
    """``dsn`` with any password replaced by ``***`` (URL form and key=value form)."""
    if "://" not in dsn:
        return " ".join(
            f"password={REDACTED}" if part.lower().startswith("password=") else part
            for part in dsn.split()
        )
    parts = urlsplit(dsn)
    netloc = parts.netloc
    if "@" in netloc:
        credentials, host = netloc.rsplit("@", 1)
        if ":" in credentials:
            credentials = credentials.split(":", 1)[0] + ":" + REDACTED
        netloc = f"{credentials}@{host}"
    query = "&".join(
        f"password={REDACTED}" if item.lower().startswith("password=") else item
        for item in parts.query.split("&")
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


async def _reset_on_release(connection: asyncpg.Connection) -> None:
    """What asyncpg runs when a connection goes back to the pool.

    Its default sends a reset statement (UNLISTEN, advisory unlock, RESET ALL) on
    every release, a second round trip that halves the rate of one-statement
    calls such as enqueue, claim and complete. Pool connections here carry no
    session state: LISTEN has a connection of its own, advisory locks are
    transaction-scoped and nothing SETs session settings. Only a transaction
    left open (a caller cancelled mid-way) needs undoing.
    """
    if connection.is_in_transaction():
        await connection.execute("ROLLBACK")


async def _init_connection(connection: asyncpg.Connection) -> None:
    for type_name in ("json", "jsonb"):
        await connection.set_type_codec(
            type_name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )


async def connect(dsn: str) -> asyncpg.Connection:
    """One connection outside the pool (LISTEN, migrations), with the same codecs."""
    try:
        connection = await asyncpg.connect(
            dsn,
            timeout=CONNECT_TIMEOUT_SECONDS,
            command_timeout=COMMAND_TIMEOUT_SECONDS,
            server_settings={"application_name": APPLICATION_NAME},
        )
    except asyncpg.ClientConfigurationError as error:
        raise InvalidDsn(f"{error} (DSN {redact_dsn(dsn)})") from error
    except CONNECT_ERRORS as error:
        raise DatabaseUnavailable(_unavailable_message(dsn, error)) from error
    await _init_connection(connection)
    return connection


def _unavailable_message(dsn: str, error: BaseException) -> str:
    detail = str(error).replace(dsn, redact_dsn(dsn)) or type(error).__name__
    return f"cannot connect to PostgreSQL at {redact_dsn(dsn)}: {detail}"


async def _close_quietly(connection: asyncpg.Connection) -> None:
    """Close gracefully (after any cancel request in flight); terminate if that fails."""
    try:
        await connection.close(timeout=CONNECT_TIMEOUT_SECONDS)
    except Exception:
        connection.terminate()


class _ClosedIfBroken:
    """Closes the connection when the block raised an error that leaves it in doubt;
    the pool then opens a fresh one for the next caller."""

    __slots__ = ("connection",)

    def __init__(self, connection: asyncpg.Connection) -> None:
        self.connection = connection

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, error: BaseException | None, trace: object) -> None:
        if isinstance(error, BROKEN_CONNECTION_ERRORS):
            self.connection.terminate()


class Connector:
    """An asyncpg pool, plus one connection of its own for calls made one at a
    time; use :meth:`open`, not the constructor.

    The pool's acquire and release cost about as much client CPU as a short
    statement itself (some 35 us, and an extra turn of the event loop): a
    caller that finds the own connection free uses it instead, so a process
    enqueueing or claiming one call after another never pays it. Concurrent
    calls take pool connections as before. The own connection is opened on
    first use and replaced after any error that leaves its state in doubt
    (a cancelled call included).
    """

    def __init__(self, dsn: str, pool: asyncpg.Pool) -> None:
        self.dsn = dsn
        self.pool = pool
        self._own: asyncpg.Connection | None = None
        self._own_busy = False
        self._closed = False
        self._retiring: set[asyncio.Future[None]] = set()

    @classmethod
    async def open(cls, dsn: str, min_size: int = 1, max_size: int = 10) -> Self:
        try:
            pool = await asyncpg.create_pool(
                dsn,
                min_size=min_size,
                max_size=max_size,
                timeout=CONNECT_TIMEOUT_SECONDS,
                command_timeout=COMMAND_TIMEOUT_SECONDS,
                server_settings={"application_name": APPLICATION_NAME},
                init=_init_connection,
                reset=_reset_on_release,
            )
        except asyncpg.ClientConfigurationError as error:
            raise InvalidDsn(f"{error} (DSN {redact_dsn(dsn)})") from error
        except CONNECT_ERRORS as error:
            raise DatabaseUnavailable(_unavailable_message(dsn, error)) from error
        return cls(dsn, pool)

    @property
    def safe_dsn(self) -> str:
        return redact_dsn(self.dsn)

    async def execute(self, query: str, *args: Any) -> str:
        return str(await self._call(lambda connection: connection.execute(query, *args)))

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        return list(await self._call(lambda connection: connection.fetch(query, *args)))

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        record: asyncpg.Record | None = await self._call(
            lambda connection: connection.fetchrow(query, *args)
        )
        return record

    async def fetchval(self, query: str, *args: Any) -> Any:
        return await self._call(lambda connection: connection.fetchval(query, *args))

    async def _call(self, call: Callable[[asyncpg.Connection], Awaitable[Any]]) -> Any:
        own = await self._take_own()
        if own is None:
            async with self.pool.acquire() as connection:
                with _ClosedIfBroken(connection):
                    return await call(connection)
        try:
            return await call(own)
        except BROKEN_CONNECTION_ERRORS:
            self._drop_own()
            raise
        except BaseException as error:
            # A server error leaves the connection ready for the next statement. A
            # call cancelled or timed out mid-statement leaves it busy until the
            # server has cancelled that statement: closed gracefully, in the
            # background, which lets asyncpg's cancel request go out first.
            if not isinstance(error, asyncpg.PostgresError):
                self._retire_own()
            raise
        finally:
            self._own_busy = False
            if self._closed:
                self._retire_own()

    async def _take_own(self) -> asyncpg.Connection | None:
        """The own connection, marked busy; None when another call has it."""
        if self._own_busy or self._closed:
            return None
        self._own_busy = True
        try:
            if self._own is None or self._own.is_closed():
                self._own = await connect(self.dsn)
        except BaseException:
            self._own_busy = False
            raise
        return self._own

    def _drop_own(self) -> None:
        if self._own is not None:
            self._own.terminate()
            self._own = None

    def _retire_own(self) -> None:
        own, self._own = self._own, None
        if own is not None:
            closing = asyncio.ensure_future(_close_quietly(own))
            self._retiring.add(closing)
            closing.add_done_callback(self._retiring.discard)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection inside a transaction, for statements that must
        see and commit together: committed when the block ends, rolled back if
        it raises."""
        async with self.pool.acquire() as connection:
            with _ClosedIfBroken(connection):
                async with connection.transaction():
                    yield connection

    async def close(self) -> None:
        self._closed = True
        if not self._own_busy:  # else the call using it retires it when it ends
            self._retire_own()
        await self.pool.close()
        if self._retiring:
            await asyncio.wait(set(self._retiring))

    async def __aenter__(self) -> Connector:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
