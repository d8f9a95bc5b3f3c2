"""Generated request bodies (issue 9): whatever JSON a client sends to create, execute,
the folder endpoints or GraphQL — any value of any type where a field belongs, NULs,
lone surrogates, huge numbers, deep nesting — the answer is below 500 with a problem
document, and the manager keeps answering ``GET /``.

pytest-trio hands one fixture value to every Hypothesis example, so each example builds
its own manager (`open_standalone_harness`) and sends it a batch of bodies.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import trio
from hypothesis import example, given, settings
from hypothesis import strategies as st

from testlib.server import Harness, make_config, open_standalone_harness

TIMEOUT = 60
EXAMPLES = settings(max_examples=5)

# -- values ------------------------------------------------------------------------------------

#: Every code point, lone surrogates and NUL included.
any_text = st.text(st.characters(exclude_categories=()), max_size=40)
tricky_text = st.sampled_from(
    ["", "\x00", "a\x00b", "\ud800", "\udfff", "*", ".", "..", "/etc/passwd", "a" * 70,
     "x" * 300_000, "python", "nosuchsession", "A=B", "ro", "rd", "😀", "\n"]
)
texts = st.one_of(any_text, tricky_text)
#: Texts a client can put in a URL path: httpx refuses a URL over 64 KiB before sending,
#: so the 300,000-character one would only test the client.
path_texts = st.one_of(any_text, tricky_text.filter(lambda text: len(text) < 10_000))
numbers = st.one_of(
    st.integers(),
    st.sampled_from([10**400, -(2**63) - 1, 2**63, 2**31, -1, 0]),
    st.floats(allow_nan=True, allow_infinity=True),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, texts)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(texts, children, max_size=4)
    ),
    max_leaves=12,
)


def body_with(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """Objects with any of `fields` (each a plausible or an arbitrary value), sometimes
    with stray keys, sometimes not an object at all."""
    return st.one_of(
        st.fixed_dictionaries(
            {}, optional={k: st.one_of(v, json_values) for k, v in fields.items()}
        ),
        json_values,
    )


def encoded(value: Any) -> st.SearchStrategy[bytes]:
    return st.just(json.dumps(value).encode())


#: Bodies that are not JSON documents the parser likes.
raw_oddities = st.one_of(
    st.integers(1, 5000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(1, 3000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
    st.integers(4000, 6000).map(lambda n: b'{"code": ' + b"7" * n + b"}"),
    st.binary(max_size=64),
)


def bodies(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[list[bytes]]:
    one = st.one_of(strategy.flatmap(encoded), raw_oddities)
    return st.lists(one, min_size=1, max_size=8)


environ = st.dictionaries(texts, st.one_of(texts, json_values), max_size=4)
create_bodies = body_with(
    {
        "lang": st.sampled_from(["python", "python:3", "cobol"]) | texts,
        "clientSessionToken": st.sampled_from(["abcd", "t0123456"]) | texts,
        "tag": texts,
        "config": body_with(
            {
                "environ": environ,
                "mounts": st.lists(texts, max_size=7),
                "instanceCores": numbers | texts,
                "instanceMemory": numbers | texts,
            }
        ),
    }
)
execute_bodies = body_with(
    {
        "mode": st.sampled_from(["query", "batch", "continue", "input", "complete", "x"]),
        "code": texts,
        "runId": texts,
        "options": body_with(
            {k: texts | numbers for k in ("clean", "build", "exec", "row", "col", "line", "post")}
        ),
    }
)
folder_bodies = body_with(
    {
        "name": texts,
        "host": texts,
        "path": texts,
        "files": st.lists(texts, max_size=6),
        "recursive": st.booleans(),
        "perm": st.sampled_from(["ro", "rw", "rd", "wd"]) | texts,
        "user_ids": st.lists(texts, max_size=6),
        "inv_id": texts,
        "inv_ak": texts,
    }
)
GRAPHQL_QUERIES = [
    "query($a: String) { keypairs(user_id: $a) { access_key } }",
    "query($a: String) { keypair(access_key: $a) { user_id } }",
    "query($a: String!) { compute_workers(sess_id: $a) { sess_id } }",
    "query($a: String) { usage(start_date: $a) { access_key } }",
    "mutation($a: String!, $p: KeyPairInput!) { create_keypair(user_id: $a, props: $p) { ok } }",
    "mutation($a: String!, $p: ResourcePolicyInput!) "
    "{ modify_resource_policy(name: $a, props: $p) { ok } }",
]
graphql_bodies = body_with(
    {
        "query": st.sampled_from(GRAPHQL_QUERIES) | texts,
        "variables": st.fixed_dictionaries({}, optional={"a": json_values, "p": json_values}),
        "operationName": texts,
    }
)

# -- the property ------------------------------------------------------------------------------


def check_answer(response: httpx.Response, what: str) -> None:
    assert response.status_code < 500, (what, response.status_code, response.text[:500])
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith("application/problem+json"), what
        problem = response.json()
        assert problem["type"] and problem["title"] and problem["detail"], problem
        assert "Traceback" not in response.text


async def send_all(
    pg_dsn: str,
    tmp_path: Path,
    calls: list[tuple[str, str, bytes]],
    prepare: Callable[[Harness], Any] | None = None,
) -> None:
    config = make_config(pg_dsn, tmp_path / "state")
    with trio.fail_after(TIMEOUT):
        async with open_standalone_harness(config) as manager:
            if prepare is not None:
                await prepare(manager)
            for method, path, raw in calls:
                client = manager.as_admin() if path == "/admin/graphql" else manager.client
                response = await client.request(
                    method, path, content=raw, content_type="application/json"
                )
                check_answer(response, f"{method} {path} {raw[:200]!r}")
                assert (await manager.client.get("/")).status_code == 200


@EXAMPLES
@given(batch=bodies(create_bodies))
async def test_create_bodies(pg_dsn: str, tmp_path: Path, batch: list[bytes]) -> None:
    await send_all(pg_dsn, tmp_path, [("POST", "/kernel/create", raw) for raw in batch])


@EXAMPLES
@given(batch=bodies(execute_bodies), token=st.one_of(st.just("nosuchsession"), path_texts))
async def test_execute_bodies(
    pg_dsn: str, tmp_path: Path, batch: list[bytes], token: str
) -> None:
    # Any token, percent-encoded as a client would put it in the URL.
    path = "/kernel/" + quote(token.encode("utf-8", "surrogatepass"), safe="")
    calls = [("POST", path or "/kernel/x", raw) for raw in batch]
    calls += [("POST", path + "/complete", raw) for raw in batch[:2]]
    await send_all(pg_dsn, tmp_path, calls)


async def _make_folder(manager: Harness) -> None:
    response = await manager.client.post("/folders", json={"name": "data"})
    assert response.status_code == 201, response.text


@EXAMPLES
@given(batch=bodies(folder_bodies))
async def test_folder_bodies(pg_dsn: str, tmp_path: Path, batch: list[bytes]) -> None:
    routes = [
        ("POST", "/folders"),
        ("POST", "/folders/data/invite"),
        ("DELETE", "/folders/data/delete_files"),
        ("GET", "/folders/data/download"),
        ("GET", "/folders/data/files"),
        ("POST", "/folders/data/mkdir"),
        ("POST", "/folders/invitations/accept"),
    ]
    calls = [(method, path, raw) for raw in batch for method, path in routes]
    await send_all(pg_dsn, tmp_path, calls, prepare=_make_folder)


@EXAMPLES
@given(batch=bodies(graphql_bodies))
async def test_graphql_bodies(pg_dsn: str, tmp_path: Path, batch: list[bytes]) -> None:
    await send_all(pg_dsn, tmp_path, [("POST", "/admin/graphql", raw) for raw in batch])


@EXAMPLES
@given(names=st.lists(texts, min_size=1, max_size=6))
@example(names=["\ud800", "a\x00b"])
async def test_folder_upload_filenames(pg_dsn: str, tmp_path: Path, names: list[str]) -> None:
    # Each name as the client writes it (percent-encoded), and as an RFC 5987 extended
    # value in a charset the server must not take (unicode_escape decodes \x00, \ud800).
    dispositions = []
    for name in names:
        dispositions.append(f"filename*=unicode_escape''{quote(name.encode('unicode_escape'))}")
        dispositions.append(f'filename="{quote(name.encode("utf-8", "surrogatepass"), safe="")}"')
    boundary = "b0undary"
    config = make_config(pg_dsn, tmp_path / "state")
    with trio.fail_after(TIMEOUT):
        async with open_standalone_harness(config) as manager:
            await _make_folder(manager)
            for disposition in dispositions:
                body = (
                    f"--{boundary}\r\nContent-Disposition: form-data; name=\"src\"; "
                    f"{disposition}\r\n\r\nx\r\n--{boundary}--\r\n"
                ).encode()
                response = await manager.client.post(
                    "/folders/data/upload",
                    content=body,
                    content_type=f"multipart/form-data; boundary={boundary}",
                )
                check_answer(response, f"upload {disposition!r}")
            assert (await manager.client.get("/")).status_code == 200
