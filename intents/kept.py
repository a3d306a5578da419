"""Tables the normaliser keeps between starts (var/cache): written whole or not at all."""
from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)


def keep(path: Path, data: bytes, others: str) -> None:
    """Write ``data`` to ``path`` atomically and remove the tables ``others`` (a glob in the same folder) names
    besides it: those of another dictionary file. Best effort: a folder that cannot be written is skipped."""
    directory = path.parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".kept-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        for old in directory.glob(others):
            if old != path:
                old.unlink(missing_ok=True)
    except OSError:
        log.debug("%s not written", path, exc_info=True)
