"""The official client's admin CLI (spec 11, items 5 and 24-32) against `crucible up`.

Every table the CLI prints is checked against what the API holds, fetched with the SDK's
own `Admin.query` (so that the comparison goes through the same signing and decoding).
"""

from __future__ import annotations

import json
import secrets
from typing import Any

import pytest

from ._support import RunningCrucible, add_keypair, cli, reference_client_env, run_reference

pytestmark = pytest.mark.compat

QUERY_SCRIPT = """
import json, sys
from ai.backend.client.session import Session
with Session() as session:
    print(json.dumps(session.Admin.query(sys.argv[1], json.loads(sys.argv[2]))))
"""


def api(server: RunningCrucible, query: str, variables: Any = None, **env: str) -> Any:
    result = run_reference(
        ["python", "-c", QUERY_SCRIPT, query, json.dumps(variables or {})],
        reference_client_env(server, **env),
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def rows(output: str) -> list[list[str]]:
    """The body rows of a tabulate table (after the dashed rule), split on 2+ spaces."""
    lines = output.strip().splitlines()
    rule = next(i for i, line in enumerate(lines) if set(line.replace(" ", "")) == {"-"})
    return [[cell for cell in line.split("  ") if cell.strip()] for line in lines[rule + 1 :]]


@pytest.fixture(scope="module")
def user(crucible_server: RunningCrucible) -> dict[str, str]:
    """A plain keypair made with `admin keypairs add USER -c 2 -r 100`."""
    user_id = f"compat-{secrets.token_hex(3)}@test"
    return add_keypair(crucible_server, user_id, "-c", "2", "-r", "100")


def _cell(text: str) -> str:
    """A value as tabulate shows it: numeric-looking text is printed as a number."""
    try:
        return f"{float(text):g}"
    except ValueError:
        return text.strip()


def as_user(user: dict[str, str]) -> dict[str, str]:
    return {"access_key": user["access_key"], "secret_key": user["secret_key"]}


def test_admin_keypair(crucible_server: RunningCrucible) -> None:
    result = cli(crucible_server, "admin", "keypair")
    assert result.returncode == 0, result.stderr
    table = dict((row[0].strip(), row[-1].strip()) for row in rows(result.stdout))
    assert table["Access Key"] == crucible_server.access_key
    assert table["Secret Key"] == crucible_server.secret_key
    assert table["Admin?"] == "True" and table["Active?"] == "True"
    held = api(crucible_server, "{ keypair { user_id rate_limit concurrency_limit } }")
    assert table["User ID"] == held["keypair"]["user_id"]
    assert table["Rate Limit"] == str(held["keypair"]["rate_limit"])


def test_admin_keypairs_and_add(crucible_server: RunningCrucible, user: dict[str, str]) -> None:
    listing = cli(crucible_server, "admin", "keypairs")
    assert listing.returncode == 0, listing.stderr
    printed = {row[1].strip() for row in rows(listing.stdout)}
    held = api(crucible_server, "{ keypairs { access_key } }")
    assert printed == {kp["access_key"] for kp in held["keypairs"]}
    assert user["access_key"] in printed
    mine = cli(crucible_server, "admin", "keypairs", "-u", user["user_id"])
    assert mine.returncode == 0, mine.stderr
    (row,) = rows(mine.stdout)
    assert row[0].strip() == user["user_id"] and row[1].strip() == user["access_key"]
    assert [cell.strip() for cell in row[-2:]] == ["100", "2"]  # rate and concurrency limits
    # A numeric user id travels as Int! (spec 7.4 trap), both ways.
    numeric = str(secrets.randbelow(10**6) + 10**6)
    assert cli(crucible_server, "admin", "keypairs", "add", numeric).returncode == 0
    found = cli(crucible_server, "admin", "keypairs", "-u", numeric)
    assert found.returncode == 0, found.stderr
    assert rows(found.stdout)[0][0].strip() == numeric


def test_new_key_works_and_its_limits_hold(
    crucible_server: RunningCrucible, user: dict[str, str]
) -> None:
    env = as_user(user)
    empty = cli(crucible_server, "ps", keys=env)
    assert empty.returncode == 0, empty.stderr
    assert "There are no compute sessions currently running." in empty.stdout
    tokens = [f"adm{secrets.token_hex(4)}" for _ in range(3)]
    try:
        for token in tokens[:2]:
            started = cli(crucible_server, "start", "-t", token, "python", keys=env)
            assert started.returncode == 0, started.stderr
        third = cli(crucible_server, "start", "-t", tokens[2], "python", keys=env)
        assert third.returncode != 0 and "412" in third.stderr  # concurrency limit 2
        ids = cli(crucible_server, "ps", "--id-only", keys=env)
        assert ids.returncode == 0, ids.stderr
        assert sorted(ids.stdout.split()) == sorted(tokens[:2])
        table = cli(crucible_server, "ps", keys=env)
        printed = {row[0].strip(): row for row in rows(table.stdout)}
        assert set(printed) == set(tokens[:2])
        held = api(
            crucible_server,
            "query($status:String) { compute_sessions(status:$status) { sess_id lang status } }",
            {"status": "RUNNING"},
            **env,
        )["compute_sessions"]
        for session in held:
            assert session["lang"] in printed[session["sess_id"]][1]
            assert "RUNNING" in " ".join(printed[session["sess_id"]])
        # The admin's own listing does not show them; --access-key does.
        own = cli(crucible_server, "admin", "sessions")
        assert not set(tokens) & set(own.stdout.split())
        theirs = cli(crucible_server, "admin", "sessions", "--access-key", user["access_key"])
        assert theirs.returncode == 0, theirs.stderr
        assert {row[0].strip() for row in rows(theirs.stdout)} == set(tokens[:2])
        detail = cli(crucible_server, "admin", "session", tokens[0], keys=env)
        assert detail.returncode == 0, detail.stderr
        assert "Session detail:" in detail.stdout
        assert f"Session ID: {tokens[0]}" in detail.stdout
        assert "Status: RUNNING" in detail.stdout
        # The user's key cannot address another key: a clear 400, not a traceback.
        refused = cli(
            crucible_server,
            "admin",
            "sessions",
            "--access-key",
            crucible_server.access_key,
            keys=env,
        )
        assert refused.returncode != 0 and "400" in refused.stderr
    finally:
        for token in tokens:
            cli(crucible_server, "terminate", token, keys=env)
    everything = cli(crucible_server, "ps", keys=env)
    assert "There are no compute sessions currently running." in everything.stdout
    history = cli(
        crucible_server, "admin", "sessions", "--status", "ALL", "--access-key", user["access_key"]
    )
    ended = {row[0].strip() for row in rows(history.stdout)}
    assert set(tokens[:2]) <= ended


def test_admin_session_unknown(crucible_server: RunningCrucible) -> None:
    result = cli(crucible_server, "admin", "session", "no-such-session")
    assert result.returncode == 0, result.stderr
    assert "There is no such running compute session." in result.stdout


def test_admin_agents_agent_images(crucible_server: RunningCrucible) -> None:
    held = api(crucible_server, '{ agents(status: "ALIVE") { id } images { name tag } }')
    agents = cli(crucible_server, "admin", "agents")
    assert agents.returncode == 0, agents.stderr
    assert {row[0].strip() for row in rows(agents.stdout)} == {a["id"] for a in held["agents"]}
    agent_id = held["agents"][0]["id"]
    one = cli(crucible_server, "admin", "agent", "-i", agent_id)
    assert one.returncode == 0, one.stderr
    table = dict((row[0].strip(), row[-1].strip()) for row in rows(one.stdout))
    assert table["ID"] == agent_id and table["Status"] == "ALIVE"
    images = cli(crucible_server, "admin", "images")
    assert images.returncode == 0, images.stderr
    printed = {(row[0].strip(), _cell(row[1])) for row in rows(images.stdout)}
    assert printed == {(i["name"], _cell(i["tag"])) for i in held["images"]}


def test_admin_vfolders(crucible_server: RunningCrucible, user: dict[str, str]) -> None:
    result = cli(crucible_server, "admin", "vfolders")
    assert result.returncode == 0, result.stderr
    assert "Name" in result.stdout and "Max Size" in result.stdout
    with_key = cli(crucible_server, "admin", "vfolders", "--access-key", user["access_key"])
    assert with_key.returncode == 0, with_key.stderr
