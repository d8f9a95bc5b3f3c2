"""Resource policies cap folders; folder sizes reach the usage statistics."""

from __future__ import annotations

from testlib.server import Harness

from .folder_api import create, upload


async def _set_policy(manager: Harness, **caps: int) -> None:
    assignments = ", ".join(f"{column} = {value}" for column, value in caps.items())
    await manager.db.execute(f"UPDATE resource_policies SET {assignments} WHERE name = 'default'")


async def test_folder_count_cap(manager: Harness) -> None:
    await _set_policy(manager, max_vfolder_count=2)
    for name in ("one", "two"):
        assert (await create(manager.client, name)).status_code == 201
    refused = await create(manager.client, "three")
    assert refused.status_code == 412
    assert refused.json()["type"].endswith("/quota-exceeded")
    listed = (await manager.client.get("/folders")).json()
    assert sorted(f["name"] for f in listed) == ["one", "two"]


async def test_folder_size_cap_follows_the_policy(manager: Harness) -> None:
    await _set_policy(manager, max_vfolder_size_bytes=64 * 1024)
    assert (await create(manager.client, "small")).status_code == 201
    assert (await upload(manager.client, "small", {"a.bin": b"x" * 32 * 1024})).status_code == 201
    refused = await upload(manager.client, "small", {"b.bin": b"x" * 48 * 1024})
    assert refused.status_code == 412
    names = (await manager.client.get("/folders/small/files", json={"path": "."})).json()
    assert "b.bin" not in names["files"]


async def test_storage_reaches_usage_statistics(manager: Harness) -> None:
    assert (await create(manager.client, "data")).status_code == 201
    assert (await upload(manager.client, "data", {"f.bin": b"y" * 10_000})).status_code == 201
    assert await manager.server.components.vfolders.record_storage_usage() == 1
    stored = await manager.db.fetchval(
        "SELECT storage_bytes FROM usage_daily WHERE access_key = $1 AND day = current_date",
        manager.user.access_key,
    )
    assert stored >= 10_000
