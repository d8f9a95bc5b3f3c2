"""Session files: upload into, list and download from a kernel's ``/home/work`` (spec 4.9-4.11).

The agent runs as root on the host and reaches ``/home/work`` directly, as the host
directory ``<kernel_dir>/work``. User code owns that tree and can plant symbolic links in
it at any moment, including between a check and a use. So no path is ever resolved by
the kernel's path walk: every operation starts from a file descriptor of the work root
and walks one component at a time with ``O_NOFOLLOW`` relative to the previous
directory's descriptor. A symbolic link anywhere on a path is refused, never followed;
no ``realpath`` result is ever opened. Whatever the agent creates is handed to the
kernel user (uid/gid 1000) through its descriptor.

Uploads come in several calls (the manager streams a request's parts through): the
content is staged in unnamed temporary files outside the work tree, and only a commit
that finds every target path acceptable writes anything, so a refused upload leaves
``/home/work`` untouched.

Errors are `FileOpError` with a `kind` the manager maps to a status: ``invalid-path``
and ``too-large`` (400), ``file-not-found`` (404); listings and downloads answer 404 for
``invalid-path`` too (spec 4.10/4.11).

The agent calls that reach this module, one per step of an upload or a download, and
their replies, are in `crucible.protocol.file_calls`; `FileService.call` runs them.

Modules: `paths` (checking a client's path, walking to it without following a link),
`uploads` (staging and committing), `downloads` (listings and archives), `service`
(one kernel's operations, `KernelFiles`, and every kernel's, `FileService`).
"""

