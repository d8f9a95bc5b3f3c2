"""The official client's `vfolder` commands against a live `crucible up` (spec 11, 12-23),
ending with a second user's session reading a file the first user shared."""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path

import pytest

from ._support import RunningCrucible, add_keypair, cli


@pytest.fixture(scope="module")
def second_user(crucible_server: RunningCrucible) -> dict[str, str]:
    return add_keypair(crucible_server, f"vf-{secrets.token_hex(3)}@test")


def test_vfolder_round_trip_and_sharing(
    crucible_server: RunningCrucible, second_user: dict[str, str], tmp_path: Path
) -> None:
    server = crucible_server
    name = "cf" + secrets.token_hex(4)
    created = cli(server, "vfolder", "create", name)
    assert created.returncode == 0, created.stderr
    assert name in created.stdout + created.stderr
    listed = cli(server, "vfolder", "list")
    assert listed.returncode == 0 and name in listed.stdout, listed.stdout + listed.stderr
    info = cli(server, "vfolder", "info", name)
    assert info.returncode == 0, info.stderr
    assert "Number of files: 0" in info.stdout or "0" in info.stdout

    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    payload = os.urandom(256 * 1024) + b"\r\n--not-a-boundary\r\n" + os.urandom(1024)
    (src / "data.bin").write_bytes(payload)
    (src / "sub" / "note 1.txt").write_text("a note")
    uploaded = cli(server, "vfolder", "upload", name, "data.bin", "sub/note 1.txt", cwd=src)
    assert uploaded.returncode == 0, uploaded.stdout + uploaded.stderr
    ls = cli(server, "vfolder", "ls", name)
    assert ls.returncode == 0 and "data.bin" in ls.stdout and "sub" in ls.stdout, ls.stdout
    ls_sub = cli(server, "vfolder", "ls", name, "sub")
    assert "note 1.txt" in ls_sub.stdout, ls_sub.stdout
    made = cli(server, "vfolder", "mkdir", name, "made/deeper")
    assert made.returncode == 0, made.stderr
    assert "made" in cli(server, "vfolder", "ls", name).stdout

    dest = tmp_path / "dest"
    dest.mkdir()
    got = cli(server, "vfolder", "download", name, "data.bin", "sub/note 1.txt", cwd=dest)
    assert got.returncode == 0, got.stdout + got.stderr
    assert (dest / "data.bin").read_bytes() == payload
    assert (dest / "note 1.txt").read_text() == "a note"

    removed = cli(server, "vfolder", "rm", "-r", name, "sub", "made", stdin_text="y\n")
    assert removed.returncode == 0, removed.stderr
    after = cli(server, "vfolder", "ls", name).stdout
    assert "sub" not in after and "made" not in after and "data.bin" in after

    # Share with the second user, who accepts interactively and mounts it.
    invited = cli(server, "vfolder", "invite", name, second_user["user_id"], "-p", "ro")
    assert invited.returncode == 0, invited.stderr
    assert second_user["user_id"] in invited.stdout
    keys = {"access_key": second_user["access_key"], "secret_key": second_user["secret_key"]}
    invitations = cli(server, "vfolder", "invitations", keys=keys, stdin_text="1\na\n")
    assert invitations.returncode == 0, invitations.stdout + invitations.stderr
    assert "read-only" in invitations.stdout
    theirs = cli(server, "vfolder", "list", keys=keys)
    assert name in theirs.stdout, theirs.stdout
    digest = hashlib.sha256(payload).hexdigest()
    code = (
        "import hashlib; "
        f"print(hashlib.sha256(open('/home/work/{name}/data.bin', 'rb').read()).hexdigest())"
    )
    ran = cli(server, "run", "--rm", "-m", name, "python", "-c", code, keys=keys)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert digest in ran.stdout.split()

    # The second user cannot delete the owner's folder; the owner can.
    assert cli(server, "vfolder", "delete", name, keys=keys).returncode != 0
    deleted = cli(server, "vfolder", "delete", name)
    assert deleted.returncode == 0, deleted.stderr
    assert name not in cli(server, "vfolder", "list").stdout


def test_invitation_reject_and_errors(
    crucible_server: RunningCrucible, second_user: dict[str, str]
) -> None:
    server = crucible_server
    name = "cr" + secrets.token_hex(4)
    assert cli(server, "vfolder", "create", name, "local").returncode == 0
    again = cli(server, "vfolder", "create", name)
    assert again.returncode != 0 and "already exists" in again.stdout + again.stderr
    keys = {"access_key": second_user["access_key"], "secret_key": second_user["secret_key"]}
    assert cli(server, "vfolder", "invite", name, second_user["user_id"]).returncode == 0
    rejected = cli(server, "vfolder", "invitations", keys=keys, stdin_text="1\nr\n")
    assert rejected.returncode == 0, rejected.stdout + rejected.stderr
    assert "rejected" in rejected.stdout
    assert name not in cli(server, "vfolder", "list", keys=keys).stdout
    missing = cli(server, "vfolder", "info", "no-such-folder")
    assert missing.returncode != 0 and "No such virtual folder" in missing.stdout + missing.stderr
    assert cli(server, "vfolder", "delete", name).returncode == 0
