"""Version 5: the archive's cursors.

``archive_cursors`` holds, per archived stream (``decisions``, ``journal``), the last row id
that reached the object store (``archived_to``) and the batch being written, if any
(``pending_from``..``pending_to``): written before the upload, so a batch retried after a
crash is the same rows under the same key, and overwrites instead of duplicating. Nothing
existing changes: an archive starts from the first row.
"""

from __future__ import annotations

_TABLE = """
    CREATE TABLE archive_cursors (
        stream TEXT PRIMARY KEY,
        archived_to {ref} NOT NULL,
        pending_from {ref},
        pending_to {ref}
    )
"""
SCRIPTS = {
    "sqlite": _TABLE.format(ref="INTEGER"),
    "postgres": _TABLE.format(ref="BIGINT"),
}
