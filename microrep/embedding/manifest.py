"""The manifest of an archive: its images listed once, the row order every part follows.

    manifest.parquet   row_id, path, size, mtime, label, group and any other metadata
    manifest.json      rows, part size and count, the Parquet file's sha256, the source

Why a manifest: an archive of millions of files is listed (and stat-ed) once, by the
first process; every later process, array task or actor reads this table instead of
walking the tree again, so all of them agree on which image is row 17,408 even while
new files arrive. Parts are fixed-size, contiguous ranges of rows.
"""

import hashlib
import os
import time
from pathlib import Path

import numpy as np

from microrep.errors import DataError
from microrep.fileio import (raise_if_disk_full, read_checked, read_json, read_parquet_table,
                             write_parquet_table, write_sealed_json)

MANIFEST = "manifest.parquet"
MANIFEST_INFO = "manifest.json"
LISTING_ADVICE = ("it lists the archive's images: restore it, or make the archive again "
                  "(`microrep embed ... --overwrite`)")


def file_sha256(path, block=1 << 20):
    """sha256 of a file's bytes, read block by block."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def listed_table(table, root):
    """`table` with row_id, absolute path, size and mtime (from one stat per file; -1 if none)."""
    root = Path(root).absolute()  # the archive is read from anywhere: its paths must not be relative
    paths = [str(p if Path(p).is_absolute() else root / p) for p in table["path"].astype(str)]
    sizes, mtimes = [], []
    for path in paths:
        try:
            stat = os.stat(path)
            sizes.append(stat.st_size)
            mtimes.append(stat.st_mtime_ns)
        except OSError:
            sizes.append(-1)
            mtimes.append(-1)
    listed = table.reset_index(drop=True).assign(path=paths, size=np.array(sizes, np.int64),
                                                 mtime_ns=np.array(mtimes, np.int64))
    listed.insert(0, "row_id", np.arange(len(listed), dtype=np.int64))
    return listed


def publish_manifest(out, table, root, part_size, source):
    """List `table` into `out`'s manifest unless one is already there; return its info.

    The manifest is published with a hard link, which fails if another process
    published first: the first listing wins and every process uses it.
    """
    out = Path(out)
    if (out / MANIFEST_INFO).is_file():
        return read_json(out / MANIFEST_INFO)
    listed = listed_table(table, root)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{MANIFEST}.{os.getpid()}.tmp"
    try:
        write_parquet_table(listed, tmp, row_group_size=part_size)  # one row group per part
        digest = file_sha256(tmp)
        os.link(tmp, out / MANIFEST)
    except FileExistsError:
        pass  # another process listed first: use its manifest
    except OSError as error:
        raise_if_disk_full(error, out / MANIFEST)
        raise
    else:
        write_sealed_json(out / MANIFEST_INFO, {
            "rows": len(listed), "part_size": part_size, "parts": part_count(len(listed), part_size),
            "sha256": digest, "source": source})
    finally:
        tmp.unlink(missing_ok=True)
    return wait_for_info(out)


def wait_for_info(out, attempts=600):
    """manifest.json of `out`, which the publishing process writes just after the Parquet file."""
    for _ in range(attempts):
        if (Path(out) / MANIFEST_INFO).is_file():
            return read_json(Path(out) / MANIFEST_INFO)
        time.sleep(0.05)
    raise DataError(f"{out} holds {MANIFEST} without {MANIFEST_INFO}: a listing was interrupted; "
                    "delete both and run again")


def part_count(rows, part_size):
    return max(1, -(-rows // part_size))


def part_range(info, part):
    """Rows of part `part`: a contiguous range of the manifest."""
    start = part * info["part_size"]
    return range(start, min(start + info["part_size"], info["rows"]))


def manifest_info(out):
    """manifest.json of archive `out`: rows, part_size, parts, sha256, source."""
    out = Path(out)
    if not (out / MANIFEST_INFO).is_file() and not (out / "parts").is_dir():
        raise DataError(f"{out} holds no embeddings archive ({MANIFEST_INFO}); run `microrep embed` "
                        "to make one")
    return read_checked(out / MANIFEST_INFO, read_json, LISTING_ADVICE,
                        ("rows", "part_size", "parts", "sha256", "source"))


def read_manifest(out, rows=None):
    """(manifest table, info) of archive `out`; `rows` (a range) reads only those rows
    (the row groups that hold them, not the whole file)."""
    info = manifest_info(out)
    filters = None if rows is None else [("row_id", ">=", rows.start), ("row_id", "<", rows.stop)]
    table = read_checked(Path(out) / MANIFEST, lambda path: read_parquet_table(path, filters),
                         LISTING_ADVICE).reset_index(drop=True)
    expected = info["rows"] if rows is None else len(rows)
    if len(table) != expected:
        raise DataError(f"{Path(out) / MANIFEST} has {len(table)} rows where {MANIFEST_INFO} "
                        f"says {expected}; the manifest was changed after listing")
    return table, info
