"""`crucible up --state-dir state`, a path relative to where it is started (issue 10,
item 10: it used to exit with ``storage.hosts.local: path must be absolute``)."""

from __future__ import annotations

import stat
from pathlib import Path

from ._support import (
    reference_client_env,
    run_reference,
    running_crucible_up,
    scratch_state,
    stop_and_check,
)


def test_up_on_a_relative_state_dir() -> None:
    with (
        scratch_state("crucible-relative-") as (state_dir, log_path),
        running_crucible_up(Path(state_dir.name), log_path, cwd=state_dir.parent) as server,
    ):
        assert server.state_dir == state_dir
        # Everything lands under <cwd>/state: the client file, the folders, the database.
        client_env = state_dir / "client.env"
        assert stat.S_IMODE(client_env.stat().st_mode) == 0o600
        assert f"BACKEND_SECRET_KEY={server.secret_key}" in client_env.read_text()
        assert (state_dir / "vfolders").is_dir()
        ran = run_reference(
            ["backend.ai", "run", "--rm", "python", "-c", "print(6*7)"],
            reference_client_env(server),
        )
        assert ran.returncode == 0, ran.stdout + ran.stderr
        assert "42" in ran.stdout.splitlines()
        stop_and_check(server.process, state_dir, log_path)
        assert "Traceback" not in log_path.read_text()
