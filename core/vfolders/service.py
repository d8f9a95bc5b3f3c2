"""What the ``/folders`` API and session mounts do, permission checks included.

Every operation first resolves the folder *as the requesting access key sees it*
(`VFolderService.get`): a folder it neither owns nor was granted, and a grant weaker
than the operation needs, both read as "no such folder" (spec 6.1), so existence is
never revealed.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterable, Sequence
from typing import Any

import trio

from crucible import errors
from crucible.api.multipart import Part
from crucible.config import ACCESS_KEY_RE, LimitsConfig
from crucible.db.pool import Database
from crucible.hookspecs.storage import (
    BY_FILESYSTEM,
    FileEntry,
    FileReader,
    FolderLimits,
    NotMountable,
    QuotaEnforcement,
    QuotaEnforcingHost,
    RelPath,
    StorageError,
    Usage,
)
from crucible.kernels.contract import WORK_DIR
from crucible.keypairs import Keypair
from crucible.periodic import repeat
from crucible.resource_policies import vfolder_limits
from crucible.usage import record_storage
from crucible.validation import bounded_list
from crucible.vfolders.hosts import StorageHost
from crucible.vfolders.paths import (
    check_folder_name,
    check_folder_ref,
    check_user_ids,
    parse_path,
)
from crucible.vfolders.problems import InvitationNotFound, VFolderInUse, storage_problem
from crucible.vfolders.repository import (
    OWNER_ONLY,
    PERMISSIONS,
    Access,
    Invitation,
    NameTaken,
    TooManyFolders,
    VFolder,
    VFolderRepository,
    permits,
)
from crucible.vfolders.uploads import new_entries, write_parts

log = logging.getLogger(__name__)

#: Where mounted folders appear in a session.
MOUNT_ROOT = WORK_DIR
#: Legacy servers said ``wd`` for read-write-delete (spec 6.1).
PERMISSION_SYNONYMS = {"wd": "rd"}


def normalize_permission(value: object, default: str = "rw") -> str:
    if value is None:
        return default
    if not isinstance(value, str):
        raise errors.InvalidAPIParameters("'perm' must be one of ro, rw, rd.")
    value = PERMISSION_SYNONYMS.get(value, value)
    if value not in PERMISSIONS:
        raise errors.InvalidAPIParameters("'perm' must be one of ro, rw, rd.")
    return value


def _parse_invitation_id(value: object) -> uuid.UUID:
    if not isinstance(value, str) or not value:
        raise errors.InvalidAPIParameters("'inv_id' is required.")
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvitationNotFound(f"No invitation {value[:80]!r}.") from None


def _limits(folder: VFolder) -> FolderLimits:
    return FolderLimits(max_size_bytes=folder.max_size, max_files=folder.max_files)


class VFolderService:
    def __init__(
        self,
        db: Database,
        hosts: dict[str, StorageHost],
        default_host: str,
        limits: LimitsConfig | None = None,
    ) -> None:
        self.repo = VFolderRepository(db)
        self.hosts = hosts
        self.default_host = default_host
        self.limits = limits or LimitsConfig()
        # Writes to one folder are serialised in this process so two uploads cannot both
        # pass the quota check with the same free space.
        self._write_locks: dict[str, trio.Lock] = {}

    def host_of(self, folder: VFolder) -> StorageHost:
        host = self.hosts.get(folder.host)
        if host is None:
            raise errors.InternalServerError(f"Storage host {folder.host!r} is not configured.")
        return host

    def _write_lock(self, folder_id: str) -> trio.Lock:
        return self._write_locks.setdefault(folder_id, trio.Lock())

    # -- folders ---------------------------------------------------------------------------

    async def accessible(self, keypair: Keypair) -> list[Access]:
        return await self.repo.accessible(keypair.access_key)

    def _pick_host(self, value: object) -> str:
        # The CLI sends [] or [HOST]; the SDK null or a string (spec 6.4).
        if isinstance(value, list):
            if len(value) > 1 or not all(isinstance(v, str) for v in value):
                raise errors.VFolderCreationFailed("'host' must name one storage host.")
            value = value[0] if value else None
        if value is None or value == "":
            if not self.default_host:
                raise errors.VFolderCreationFailed("No host given and no default host set.")
            value = self.default_host
        if not isinstance(value, str) or value not in self.hosts:
            raise errors.VFolderCreationFailed(f"Unknown storage host {str(value)[:80]!r}.")
        return value

    async def create(self, keypair: Keypair, name: object, host_value: object) -> VFolder:
        name = check_folder_name(name)
        host_name = self._pick_host(host_value)
        host = self.hosts[host_name]
        # The keypair's resource policy may cap how many folders it owns and how large
        # each may grow, below what the storage host allows.
        max_owned, policy_max_size = await vfolder_limits(self.repo.db, keypair.access_key)
        max_size: int = host.config.max_size_bytes
        if policy_max_size:
            max_size = min(max_size, policy_max_size)
        try:
            folder = await self.repo.create(
                keypair.access_key,
                name,
                host_name,
                max_files=host.config.max_files,
                max_size=max_size,
                max_owned=max_owned or None,
            )
        except NameTaken:
            raise errors.VFolderAlreadyExists(
                f"You already have a folder named {name!r}."
            ) from None
        except TooManyFolders as exc:
            # 412 like every other quota-exceeded, rather than the docs' 406: one problem
            # type keeps one status, so clients can branch on the type alone.
            raise errors.QuotaExceeded(
                f"Your resource policy allows {exc.args[0]} folders."
            ) from None
        made = False
        try:
            await host.backend.create_folder(folder.id)
            made = True
            if isinstance(host.backend, QuotaEnforcingHost):
                await host.backend.limit_folder(folder.id, _limits(folder))
        except BaseException:
            with trio.CancelScope(shield=True):
                if made:
                    await self._discard_storage(host, folder)
                async with self.repo.db.transaction() as conn:
                    await self.repo.delete_row(conn, folder.id)
            raise
        return folder

    async def _discard_storage(self, host: StorageHost, folder: VFolder) -> None:
        try:
            await host.backend.delete_folder(folder.id)
        except Exception:
            # The creation's own error is the one the client must see.
            log.exception("removing the storage of folder %s after a failed create", folder.id)

    async def enforcement(self, folder: VFolder) -> QuotaEnforcement:
        """What holds the folder's caps: the filesystem (sessions too) or the API only."""
        host = self.host_of(folder)
        if not isinstance(host.backend, QuotaEnforcingHost):
            return host.quota_enforcement
        try:
            return await host.backend.folder_enforcement(folder.id)
        except (StorageError, OSError) as exc:
            return QuotaEnforcement.api_only(f"the storage cannot tell ({exc})")

    async def enforce_quotas(self) -> int:
        """Hand every folder's caps to its host again (at start-up: quotas switched on
        since, or limits lost); returns how many folders are held by their filesystem."""
        try:
            folders = await self.repo.all_folders()
        except Exception:
            # Run in the background at start-up: the manager must serve regardless.
            log.exception("listing folders to apply their caps failed")
            return 0
        held = 0
        for folder in folders:
            host = self.hosts.get(folder.host)
            if host is None or not isinstance(host.backend, QuotaEnforcingHost):
                continue
            try:
                enforcement = await host.backend.limit_folder(folder.id, _limits(folder))
            except (StorageError, OSError) as exc:
                # One folder whose storage is gone must not stop the others.
                log.warning("folder %s: its caps could not be applied: %s", folder.id, exc)
                continue
            held += BY_FILESYSTEM in (enforcement.size, enforcement.files)
        return held

    async def get(self, keypair: Keypair, name: str, need: str) -> Access:
        check_folder_ref(name)
        access = await self.repo.by_name(keypair.access_key, name)
        if access is None:
            raise errors.VFolderNotFound(f"No folder {name!r}.")
        allowed = access.is_owner if need == OWNER_ONLY else permits(access.permission, need)
        if not allowed:
            raise errors.VFolderNotFound(f"No folder {name!r}.")
        return access

    async def delete(self, keypair: Keypair, name: str) -> None:
        access = await self.get(keypair, name, OWNER_ONLY)
        folder = access.folder
        host = self.host_of(folder)
        async with self.repo.db.transaction() as conn:
            mounted_by = await self.repo.lock_for_delete(conn, folder.id)
            if mounted_by:
                raise VFolderInUse(
                    f"Folder {name!r} is mounted by live sessions ({', '.join(mounted_by)}); "
                    "terminate them first.",
                    data={"sessions": mounted_by},
                )
            await self.repo.delete_row(conn, folder.id)
            # Inside the transaction: if the storage refuses, the folder stays listed.
            await host.backend.delete_folder(folder.id)

    async def record_storage_usage(self) -> int:
        """Note every owner's total folder size in today's usage statistics; returns how
        many owners were recorded."""
        totals: dict[str, int] = {}
        for folder in await self.repo.all_folders():
            try:
                used = await self.usage(folder)
            except StorageError:
                continue  # a host that is down must not stop the others' accounting
            owner = folder.owner_access_key
            totals[owner] = totals.get(owner, 0) + used.size_bytes
        for owner, total in totals.items():
            await record_storage(self.repo.db, owner, total)
        return len(totals)

    async def run_usage_recorder(
        self, interval: float, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        await repeat(
            self.record_storage_usage,
            interval,
            log=log,
            failure="recording folder storage usage failed",
            at_start=True,
            task_status=task_status,
        )

    async def usage(self, folder: VFolder) -> Usage:
        return await self.host_of(folder).backend.usage(folder.id)

    # -- files -----------------------------------------------------------------------------

    async def list_files(self, access: Access, raw_path: object) -> list[FileEntry]:
        path = parse_path("." if raw_path is None else raw_path)
        try:
            return await self.host_of(access.folder).backend.list_files(access.folder.id, path)
        except StorageError as exc:
            raise storage_problem(exc) from exc

    async def upload(self, access: Access, parts: AsyncIterable[Part]) -> list[str]:
        folder = access.folder
        backend = self.host_of(folder).backend
        async with self._write_lock(folder.id):
            try:
                return await write_parts(
                    backend, folder, parts, max_files=self.limits.max_folder_files
                )
            except StorageError as exc:
                raise storage_problem(exc) from exc

    async def mkdir(self, access: Access, raw_path: object) -> None:
        if raw_path is None:
            raise errors.InvalidAPIParameters("'path' is required.")
        path = parse_path(raw_path, allow_root=False)
        folder = access.folder
        backend = self.host_of(folder).backend
        async with self._write_lock(folder.id):
            usage = await backend.usage(folder.id)
            if usage.file_count + await new_entries(backend, folder, path) > folder.max_files:
                raise errors.QuotaExceeded(
                    f"The folder may hold at most {folder.max_files} files and directories."
                )
            try:
                await backend.mkdir(folder.id, path)
            except StorageError as exc:
                raise storage_problem(exc) from exc

    def _file_list(self, raw_files: object) -> list[RelPath]:
        files = bounded_list(
            raw_files, "files", max_items=self.limits.max_folder_files, limit_key="max_folder_files"
        )
        return [parse_path(f, key="files", allow_root=False) for f in files]

    async def download_readers(
        self, access: Access, raw_files: object
    ) -> list[tuple[str, FileReader]]:
        """``(file name, reader)`` of each file to download; the caller closes them."""
        paths = self._file_list(raw_files)
        backend = self.host_of(access.folder).backend
        opened: list[tuple[str, FileReader]] = []
        try:
            for path in paths:
                opened.append((path[-1], await backend.open_file(access.folder.id, path)))
        except BaseException as exc:
            with trio.CancelScope(shield=True):
                for _, reader in opened:
                    await reader.aclose()
            if isinstance(exc, StorageError):
                raise storage_problem(exc) from exc
            raise
        return opened

    async def delete_files(self, access: Access, raw_files: object, recursive: bool) -> None:
        paths = self._file_list(raw_files)
        folder = access.folder
        async with self._write_lock(folder.id):
            try:
                await self.host_of(folder).backend.delete_files(
                    folder.id, paths, recursive=recursive
                )
            except StorageError as exc:
                raise storage_problem(exc) from exc

    # -- sharing ---------------------------------------------------------------------------

    async def invite(
        self, keypair: Keypair, name: str, perm: object, user_ids: object
    ) -> list[str]:
        permission = normalize_permission(perm)
        invitees = check_user_ids(user_ids, self.limits.max_invitees)
        access = await self.get(keypair, name, OWNER_ONLY)
        return await self.repo.invite(access.folder.id, keypair.user_id, invitees, permission)

    async def invitations(self, keypair: Keypair) -> list[Invitation]:
        return await self.repo.pending_for(keypair.user_id)

    async def accept(self, keypair: Keypair, inv_id: object, inv_ak: object) -> str:
        invitation_id = _parse_invitation_id(inv_id)
        if not isinstance(inv_ak, str) or not ACCESS_KEY_RE.fullmatch(inv_ak):
            raise errors.InvalidAPIParameters("'inv_ak' must be an access key.")
        if inv_ak != keypair.access_key and await self.repo.user_id(inv_ak) != keypair.user_id:
            raise errors.InvalidAPIParameters("'inv_ak' is not one of your access keys.")
        try:
            name = await self.repo.accept(invitation_id, keypair.user_id, inv_ak)
        except LookupError:
            raise InvitationNotFound(f"No pending invitation {inv_id!r}.") from None
        except NameTaken as exc:
            raise errors.VFolderAlreadyExists(
                f"You already have a folder named {exc.args[0]!r}."
            ) from None
        return f"Access key {inv_ak} now has access to folder {name!r}."

    async def reject(self, keypair: Keypair, inv_id: object) -> str:
        invitation_id = _parse_invitation_id(inv_id)
        if not await self.repo.reject(invitation_id, keypair.user_id):
            raise InvitationNotFound(f"No pending invitation {inv_id!r}.")
        return "The invitation is rejected."

    # -- sessions --------------------------------------------------------------------------

    async def resolve_mounts(
        self, keypair: Keypair, requested: Sequence[tuple[str, str]]
    ) -> list[dict[str, Any]]:
        """``config.mounts`` (spec 4.2), as `parse_mounts` checked them, → what the
        kernel row and the agent need.

        Unknown folders (and folders without a grant) are `VFolderNotFound`, raised
        before anything is created.
        """
        mounts: list[dict[str, Any]] = []
        for name, alias in requested:
            access = await self.get(keypair, name, "ro")
            target = f"{MOUNT_ROOT}/{alias}"
            try:
                spec = self.host_of(access.folder).backend.mount_spec(
                    access.folder.id, read_only=access.permission == "ro"
                )
            except NotMountable as exc:
                raise errors.InvalidAPIParameters(
                    f"Folder {name!r} cannot be mounted: {exc}"
                ) from exc
            mounts.append(
                {
                    "id": access.folder.id,
                    "name": name,
                    "host": access.folder.host,
                    "source": spec.host_path,
                    "target": target,
                    "read_only": spec.read_only,
                }
            )
        return mounts
