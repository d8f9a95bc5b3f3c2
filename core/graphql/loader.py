"""Batched data loading for a synchronous GraphQL execution on the trio loop.

graphql-core gathers awaitable resolvers with asyncio, which cannot run inside trio's
loop, and resolvers that block would stall every other request. So resolvers here are
plain functions that only *read* a cache. A miss records what is wanted and returns an
empty placeholder; after a pass, `Loader.fetch_pending` runs one SQL statement per kind
of data for every key the pass missed, and the query executes again. Each pass reaches
one level deeper into the data, so a query costs (levels + 1) cheap in-memory passes and
one statement per kind and level, whatever the number of rows: N+1 cannot happen.

Mutations ride the same mechanism: their resolvers miss on the first pass, the fetch
phase performs them exactly once (in document order), and later passes read the result.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping, Sequence
from typing import Any

from crucible.db.pool import Database

#: A fetcher answers many keys at once: ``fetch(loader, params, keys) -> {key: value}``.
Fetcher = Callable[["Loader", tuple[Any, ...], list[Any]], Awaitable[Mapping[Any, Any]]]
#: A mutation: ``perform(loader, arguments) -> result``.
Mutation = Callable[["Loader", dict[str, Any]], Awaitable[Any]]


class Loader:
    """The per-request cache resolvers read, and the batches that fill it."""

    def __init__(
        self,
        db: Database,
        fetchers: Mapping[str, tuple[Fetcher, Any]],
        mutations: Mapping[str, Mutation] | None = None,
    ) -> None:
        self.db = db
        self._fetchers = fetchers
        self._mutations = mutations or {}
        self._cache: dict[tuple[str, tuple[Any, ...], Any], Any] = {}
        self._pending: dict[tuple[str, tuple[Any, ...]], list[Any]] = {}
        self._mutation_results: dict[str, Any] = {}
        self._pending_mutations: dict[str, tuple[str, dict[str, Any]]] = {}
        #: SQL statements this request ran (tests and the bench check it stays constant).
        self.statements = 0
        #: The request's `GraphQLContext` (mutations need the services it carries).
        self.context: Any = None

    # -- the synchronous side (resolvers) -------------------------------------------------

    def load(self, kind: str, key: Hashable, params: tuple[Any, ...] = ()) -> Any:
        """The cached value, or the kind's placeholder after noting the miss."""
        try:
            return self._cache[(kind, params, key)]
        except KeyError:
            keys = self._pending.setdefault((kind, params), [])
            if key not in keys:
                keys.append(key)
            return _placeholder(self._fetchers[kind][1])

    def mutate(self, response_key: str, name: str, arguments: dict[str, Any]) -> Any:
        """The mutation's result, or None until the fetch phase has performed it."""
        if response_key in self._mutation_results:
            return self._mutation_results[response_key]
        self._pending_mutations.setdefault(response_key, (name, arguments))
        return None

    @property
    def has_pending(self) -> bool:
        return bool(self._pending or self._pending_mutations)

    # -- the asynchronous side (between passes) -------------------------------------------

    async def fetch_pending(self) -> None:
        mutations, self._pending_mutations = self._pending_mutations, {}
        for response_key, (name, arguments) in mutations.items():
            self._mutation_results[response_key] = await self._mutations[name](self, arguments)
        pending, self._pending = self._pending, {}
        for (kind, params), keys in pending.items():
            fetcher, empty = self._fetchers[kind]
            found = await fetcher(self, params, keys)
            for key in keys:
                self._cache[(kind, params, key)] = found.get(key, _placeholder(empty))

    def prime(self, kind: str, key: Hashable, value: Any, params: tuple[Any, ...] = ()) -> None:
        """Store a value obtained some other way (e.g. rows a mutation returned)."""
        self._cache[(kind, params, key)] = value

    # -- a counting `crucible.db.pool.Executor`: fetchers hand the loader to the query
    # functions, so every statement they run is counted.

    async def execute(self, query: str, *args: Any) -> str:
        self.statements += 1
        return await self.db.execute(query, *args)

    async def executemany(self, query: str, args: Iterable[Sequence[Any]]) -> None:
        self.statements += 1
        await self.db.executemany(query, args)

    async def fetch(self, query: str, *args: Any) -> list[Any]:
        self.statements += 1
        return await self.db.fetch(query, *args)

    async def fetchrow(self, query: str, *args: Any) -> Any:
        self.statements += 1
        return await self.db.fetchrow(query, *args)

    async def fetchval(self, query: str, *args: Any) -> Any:
        self.statements += 1
        return await self.db.fetchval(query, *args)


def _placeholder(empty: Any) -> Any:
    # Lists and dicts are copied so that nobody can change the shared empty value.
    if isinstance(empty, (list, dict)):
        return type(empty)()
    return empty


def freeze(value: Any) -> Hashable:
    """A hashable stand-in for resolver arguments (lists and input objects included)."""
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, default=str)
    return value  # type: ignore[no-any-return]


def group(rows: Iterable[Any], key: Callable[[Any], Any]) -> dict[Any, list[Any]]:
    grouped: dict[Any, list[Any]] = {}
    for row in rows:
        grouped.setdefault(key(row), []).append(row)
    return grouped
