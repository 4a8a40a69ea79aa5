"""Atomic file writing, used by every stage that writes output.

A file appears under its final name only once it is complete, so an
interrupted run never leaves a half-written checkpoint, table or figure
where a later run (or a user) would take it for a whole one.
"""

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from microrep.errors import DataError, DiskFullError, OutputExistsError


def _current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: Files get the permissions an ordinary open() would give them, not mkstemp's 0600.
FILE_MODE = 0o666 & ~_current_umask()


@contextlib.contextmanager
def atomic_path(final_path):
    """Yield a temporary path beside `final_path`; rename it into place on success.

    The temporary name keeps the suffix of the final one, because some writers
    (Keras, matplotlib) choose the format from it.
    """
    tmp_path = temporary_beside(final_path)
    try:
        yield tmp_path
        replace_into(tmp_path, final_path)
    except OSError as error:  # a writer's own ENOSPC says so in one line too
        tmp_path.unlink(missing_ok=True)
        raise_if_disk_full(error, final_path)
        raise
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def temporary_beside(final_path):
    """A new empty temporary file beside `final_path` (its suffix kept), for a writer that
    outlives one `with` block (a part filled batch by batch); `replace_into` commits it."""
    final_path = Path(final_path)
    final_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{final_path.stem}.", suffix=f".tmp{final_path.suffix}",
        dir=final_path.parent)
    os.close(fd)
    return Path(tmp_name)


def replace_into(tmp_path, final_path):
    """Rename a finished temporary file into place (one line if the disk is full)."""
    try:
        if tmp_path.is_file():
            os.chmod(tmp_path, FILE_MODE)
        os.replace(tmp_path, final_path)
    except OSError as error:
        raise_if_disk_full(error, final_path)
        raise


def raise_if_disk_full(error, final_path):
    """A DiskFullError (one line for the user) if `error` says the disk or quota is full."""
    if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        raise DiskFullError(f"no space left to write {final_path}; free some disk space and "
                            "run again (earlier outputs are intact)") from error


def stale_temporaries(folder, final_name=None):
    """Files under `atomic_path`'s temporary names in `folder`: of `final_name`, or of any file.

    Such a file is only there when a writer was killed before renaming it into place.
    """
    folder = Path(folder)
    if final_name is None:
        found = folder.glob(".*.tmp*")
    else:
        final_name = Path(final_name)
        found = folder.glob(f".{final_name.stem}.*.tmp{final_name.suffix}")
    return [path for path in found if path.is_file()]


def write_text(path, text):
    """Write `text` to `path` atomically."""
    with atomic_path(path) as tmp:
        # surrogateescape: file names that are not UTF-8 (Linux allows any bytes) are
        # written back as the bytes they are, so the paths in a table still open
        tmp.write_text(text, encoding="utf-8", errors="surrogateescape")


def write_json(path, data):
    """Write `data` as indented JSON to `path` atomically."""
    write_text(path, json.dumps(data, indent=2, sort_keys=True, default=_json_default) + "\n")


CHECKSUM = "checksum"


def record_checksum(record):
    """sha256 (16 hex digits) of a JSON record without its own checksum entry."""
    body = {key: value for key, value in record.items() if key != CHECKSUM}
    text = json.dumps(body, sort_keys=True, default=_json_default)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def write_sealed_json(path, record):
    """write_json with the record's own checksum in it, so `read_checked` finds a record
    whose bytes changed but still parse (a flipped digit in a count or a checksum)."""
    write_json(path, {**record, CHECKSUM: record_checksum(record)})


def read_json(path):
    """The JSON document in `path` (a file this package wrote)."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def first_line(error):
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:160]


def read_checked(path, read, advice, keys=()):
    """`read(path)`, or one DataError naming `path` as missing or damaged and saying what to
    do (`advice`): a damaged archive file is the user's to mend, never an internal error.
    `keys`: a JSON record must be a mapping holding them."""
    import pyarrow

    path = Path(path)
    try:
        value = read(path)
    except FileNotFoundError:
        raise DataError(f"{path} is missing; {advice}") from None
    except (ValueError, EOFError, OSError, pyarrow.ArrowException) as error:
        raise DataError(f"{path} is damaged ({first_line(error)}); {advice}") from None
    if keys and not (isinstance(value, dict) and all(key in value for key in keys)):
        raise DataError(f"{path} is damaged (not the record microrep wrote); {advice}")
    if isinstance(value, dict) and CHECKSUM in value and value[CHECKSUM] != record_checksum(value):
        raise DataError(f"{path} is damaged (it differs from the checksum written in it); {advice}")
    return value


def _utf8(value):
    try:
        value.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def write_parquet_table(table, path, row_group_size=None):
    """Parquet via pyarrow. Text columns holding names that are not UTF-8 (Linux allows
    any bytes in file names) are stored as the raw bytes, and decoded back on reading."""
    import pandas as pd

    table = table.copy()
    for column in table.columns:
        if table[column].dtype.kind in "OT" or str(table[column].dtype) == "str":
            values = [None if v is None or v != v else str(v) for v in table[column]]
            if all(v is None or _utf8(v) for v in values):
                table[column] = pd.array(values, dtype=object)
            else:
                table[column] = pd.array([None if v is None else os.fsencode(v) for v in values],
                                         dtype=object)
    try:
        table.to_parquet(path, index=False, row_group_size=row_group_size)
    except OSError as error:  # pyarrow names the errno only in its message
        found = re.search(r"\[errno (\d+)\]", str(error))
        if error.errno is None and found:
            raise OSError(int(found.group(1)), os.strerror(int(found.group(1))), str(path)) from None
        raise


def read_parquet_table(path, filters=None):
    """A table `write_parquet_table` wrote, with byte columns (non-UTF-8 names) decoded back."""
    import pandas as pd

    table = pd.read_parquet(path, filters=filters)
    for column in table.columns:
        if len(table) and table[column].dtype == object and isinstance(table[column].iloc[0], bytes):
            table[column] = [None if v is None else os.fsdecode(v) for v in table[column]]
    return table


def _json_default(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def replace_dir(tmp_dir, final_dir):
    """Move a finished directory into place, replacing an older one."""
    final_dir = Path(final_dir)
    if final_dir.exists():
        shutil.rmtree(final_dir)
    os.replace(tmp_dir, final_dir)


def refuse_earlier_output(path, what, overwrite):
    """OutputExistsError if `path` (an earlier run's result) exists and --overwrite was not given.

    Why: a second evaluation or embedding into the same --out would silently replace
    the first one's results, which a user may still be comparing against.
    """
    if Path(path).exists() and not overwrite:
        raise OutputExistsError(f"{Path(path).parent} already holds {what} ({Path(path).name}); "
                                "pass --overwrite to replace it, or choose another --out")


def python_string_tables():
    """Make pandas keep text columns as Python strings, even where pyarrow is installed.

    Why: pandas 3 stores text in pyarrow arrays when pyarrow is present (it is, for
    Parquet manifests and Ray); those cannot hold file names that are not UTF-8 (Linux
    allows any bytes, and we keep them as surrogate escapes so the files still open).
    """
    import pandas as pd

    try:
        pd.set_option("mode.string_storage", "python")
    except (KeyError, ValueError, pd.errors.OptionError):  # an older pandas: already Python strings
        pass
