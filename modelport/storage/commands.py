"""``modelport fetch`` and ``modelport storage-initializer``: thin wrappers the CLI calls.

Progress and errors go to stderr; ``fetch`` prints only the destination path on stdout.
"""

from __future__ import annotations

import sys
from pathlib import Path

from modelport.errors import ModelportError, StorageError
from modelport.settings import Settings
from modelport.storage import fetch
from modelport.storage.progress import make_reporter


def fetch_command(uri: str, dest: str, settings: Settings) -> int:
    """Copy the model at ``uri`` to ``dest``; print where it went."""
    fetch(uri, Path(dest), settings.storage, make_reporter(sys.stderr))
    print(Path(dest).absolute())
    return 0


def storage_initializer_command(pairs: list[str], settings: Settings) -> int:
    """KServe's storage-initializer contract: ``SRC DEST [SRC DEST ...]``, non-zero exit on any failure."""
    if len(pairs) % 2:
        raise StorageError(f"expected pairs of SRC DEST, got {len(pairs)} arguments")
    failed = 0
    for src, dest in zip(pairs[::2], pairs[1::2], strict=True):
        try:
            fetch(src, Path(dest), settings.storage, make_reporter(sys.stderr))
        except ModelportError as exc:
            print(f"modelport: error: {exc.message}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0
