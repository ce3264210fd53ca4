"""Download FGVC-Aircraft 2013b, only when a user asks for it (and is online).

``download_fgvc_aircraft(dest)`` streams the official archive to a temporary file beside
``dest``, extracts it into a temporary directory, and renames the result into place, so an
interrupted download never leaves a half-extracted tree that looks complete.
Run as ``python -m visae.data.sources.fgvc_download DEST``.
"""

from __future__ import annotations

import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from visae.errors import VisaeError
from visae.progress import make_progress

URL = "https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/archives/fgvc-aircraft-2013b.tar.gz"
ROOT_NAME = "fgvc-aircraft-2013b"
CHUNK = 1 << 20


def download_fgvc_aircraft(dest: str | Path, url: str = URL) -> Path:
    """Fetch and extract the archive under ``dest``; returns ``dest/fgvc-aircraft-2013b``."""
    dest = Path(dest).expanduser()
    target = dest / ROOT_NAME
    if (target / "data" / "variants.txt").is_file():
        return target
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".fgvc-", suffix=".tmp", dir=dest) as tmp:
        archive = Path(tmp) / "archive.tar.gz"
        _stream(url, archive)
        with tarfile.open(archive) as tar:
            tar.extractall(Path(tmp) / "x", filter="data")
        extracted = Path(tmp) / "x" / ROOT_NAME
        if not (extracted / "data" / "variants.txt").is_file():
            raise VisaeError(f"the archive from {url} holds no {ROOT_NAME}/data/variants.txt", "check the URL")
        if target.exists():
            shutil.rmtree(target)  # a partial tree from an older, non-atomic copy
        extracted.rename(target)
    return target


def _stream(url: str, out: Path) -> None:
    try:
        with urllib.request.urlopen(url, timeout=60) as r, open(out, "wb") as f, make_progress() as p:
            total = int(r.headers.get("Content-Length") or 0) or None
            task = p.add_task("downloading FGVC-Aircraft", total=total, info="")
            while chunk := r.read(CHUNK):
                f.write(chunk)
                p.advance(task, len(chunk))
    except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
        raise VisaeError(
            f"could not download {url} ({getattr(e, 'reason', e)})",
            "check the connection, or fetch the archive by hand and extract it under the destination",
        ) from None


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m visae.data.sources.fgvc_download DEST")
    try:
        print(download_fgvc_aircraft(sys.argv[1]))
    except VisaeError as e:
        sys.exit(f"error: {e}")
