"""Limits both ends enforce: the manager refuses early, the agent refuses for good.

The manager checks them at the API edge so that an oversized request costs nothing
beyond its headers; the agent checks again, since it trusts no caller with its disk.
"""

from __future__ import annotations

from typing import Final

# -- session files (spec 4.9-4.11) ----------------------------------------------------------

#: spec 4.9: at most 20 files per upload, each smaller than 1 MiB.
MAX_UPLOAD_FILES: Final = 20
MAX_UPLOAD_FILE_BYTES: Final = 1024 * 1024 - 1
#: spec 4.11: at most 5 paths per download.
MAX_DOWNLOAD_FILES: Final = 5
#: Linux limits: a name of 255 bytes, a path of 4095.
MAX_NAME_BYTES: Final = 255
MAX_PATH_BYTES: Final = 4095
