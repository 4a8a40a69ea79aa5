"""Download UHCSDB from its public record, verify it, and unpack it safely.

The record (NIST Materials Data Repository, handle 11256/940, CC BY 3.0 US)
holds `microstructures.sqlite` and `micrographs.zip`. Mirrors are tried in
order until one answers. No checksums are published, so we verify what we can
(zip CRCs, `PRAGMA integrity_check`, the expected tables, every image
decodes) and record the SHA-256 and source of each file in `manifest.json`, so
a later fetch notices if the files changed.

Downloads stream to `<name>.part` with a progress bar, resume from a partial
file with an HTTP Range request, and are renamed only when complete.
Archives are extracted member by member with checks against absolute paths,
`..`, links, and size and count caps.
"""

import datetime
import hashlib
import json
import os
import shutil
import sqlite3
import urllib.error
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

from microrep.data.images import IMAGE_SUFFIXES, read_image
from microrep.data.uhcsdb import load_uhcsdb_table
from microrep.errors import DataError, FetchError
from microrep.fileio import write_json

FILES = ("microstructures.sqlite", "micrographs.zip")
RECORD = "https://materialsdata.nist.gov/bitstream/handle/11256/940/"
SOURCES = (
    RECORD,
    "https://materialsdata.nist.gov/dspace/xmlui/bitstream/handle/11256/940/",
    "https://data.materialsdatafacility.org/legacy/mdr_item_1496_v1/",
    "https://web.archive.org/web/2020id_/" + RECORD,
    "https://web.archive.org/web/2018id_/" + RECORD,
)
MANIFEST = "manifest.json"
MAX_MEMBERS = 10_000
MAX_MEMBER_BYTES = 200 * 2**20
MAX_TOTAL_BYTES = 8 * 2**30
CHUNK = 1 << 16


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download(url, target, timeout=30.0, progress=True):
    """Stream `url` to `target`, resuming `target.part`; rename when complete."""
    target = Path(target)
    partial = target.with_name(target.name + ".part")
    have = partial.stat().st_size if partial.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "microrep"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and have:  # the part file is already whole
            os.replace(partial, target)
            return target
        raise FetchError(f"{url}: HTTP {error.code} {error.reason}") from None
    except (urllib.error.URLError, OSError) as error:
        raise FetchError(f"{url}: {getattr(error, 'reason', error)}") from None
    with response:
        resumed = response.status == 206
        length = response.headers.get("Content-Length")
        expected = int(length) + (have if resumed else 0) if length else None
        written = _stream(response, partial, resumed, have if resumed else 0, expected,
                          target.name, progress)
    if expected is not None and written != expected:
        raise FetchError(f"{url}: connection closed after {written} of {expected} bytes; "
                         "run the same command again to resume")
    os.replace(partial, target)
    return target


def _stream(response, partial, append, start, total, name, progress):
    from tqdm import tqdm  # text bars: no ipywidgets needed in a notebook

    written = start
    with open(partial, "ab" if append else "wb") as handle, \
            tqdm(total=total, initial=start, unit="B", unit_scale=True, desc=name,
                 disable=not progress) as bar:
        while True:
            try:
                block = response.read(CHUNK)
            except (OSError, ValueError):
                break  # treated as a short read below
            if not block:
                break
            handle.write(block)
            written += len(block)
            bar.update(len(block))
    return written


def fetch_file(name, dest, sources, timeout, progress=True):
    """Try each source for `name`; return (path, url). FetchError lists every failure."""
    failures = []
    for base in sources:
        url = base if base.endswith(name) else base.rstrip("/") + "/" + name
        try:
            path = download(url, Path(dest) / name, timeout, progress)
            check_kind(path, url)
            return path, url
        except FetchError as error:
            failures.append(str(error))
    raise FetchError(f"could not download {name} from any source:\n  " + "\n  ".join(failures))


#: How each file starts: a server that answers 200 with an error page is caught here,
#: and the next source is tried, instead of unpacking the page.
MAGIC = {".sqlite": b"SQLite format 3\x00", ".zip": b"PK\x03\x04"}


def check_kind(path, url):
    """FetchError (and the file removed) when `path` is not the kind of file its name says."""
    magic = MAGIC.get(Path(path).suffix)
    with open(path, "rb") as handle:
        head = handle.read(512)
    if magic is None or head.startswith(magic):
        return
    Path(path).unlink()
    text = head.lstrip().lower()
    kind = "an HTML page" if text.startswith((b"<!doctype", b"<html", b"<?xml", b"<")) else \
        f"{len(head)}+ bytes that are not a {Path(path).suffix[1:]} file"
    raise FetchError(f"{url}: the server answered with {kind} instead of {Path(path).name} "
                     "(an error or login page?)")


def check_sqlite(path):
    """PRAGMA integrity_check and the tables the loader needs."""
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            status = db.execute("PRAGMA integrity_check").fetchone()[0]
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError as error:
        raise FetchError(f"{path} is not a valid SQLite database: {error}") from None
    if status != "ok":
        raise FetchError(f"{path} failed its integrity check: {status}")
    missing = {"micrograph", "sample"} - tables
    if missing:
        raise FetchError(f"{path} lacks table(s) {', '.join(sorted(missing))}: not UHCSDB")


def safe_members(archive):
    """The regular-file members of a zip, refusing anything that could escape or explode."""
    members = archive.infolist()
    if len(members) > MAX_MEMBERS:
        raise FetchError(f"archive has {len(members)} members (limit {MAX_MEMBERS})")
    total = 0
    safe = []
    for member in members:
        path = PurePosixPath(member.filename.replace("\\", "/"))
        if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
            raise FetchError(f"archive member {member.filename!r} points outside the folder")
        mode = (member.external_attr >> 16) & 0o170000
        if mode == 0o120000:
            raise FetchError(f"archive member {member.filename!r} is a link; refusing")
        if member.is_dir():
            continue
        if member.file_size > MAX_MEMBER_BYTES:
            raise FetchError(f"archive member {member.filename!r} is too large ({member.file_size} bytes)")
        total += member.file_size
        if total > MAX_TOTAL_BYTES:
            raise FetchError("archive unpacks to more than the size limit")
        safe.append((member, path))
    return safe


def extract_zip(zip_path, dest):
    """Test CRCs, then unpack every image into `dest/micrographs/` (flat)."""
    try:
        with zipfile.ZipFile(zip_path) as archive:
            bad = archive.testzip()
            if bad is not None:
                raise FetchError(f"{zip_path}: member {bad} fails its CRC check; delete it and fetch again")
            members = safe_members(archive)
            staging = Path(dest) / ".micrographs.partial"
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
            for member, path in members:
                with archive.open(member) as source, open(staging / path.name, "wb") as out:
                    shutil.copyfileobj(source, out, CHUNK)
    except zipfile.BadZipFile as error:
        raise FetchError(f"{zip_path} is not a valid zip archive ({error}); delete it and fetch again") from None
    final = Path(dest) / "micrographs"
    if final.exists():
        shutil.rmtree(final)
    os.replace(staging, final)
    return final


def check_images(folder, progress=True):
    """Decode every image; return the number read. FetchError names the first bad one."""
    from tqdm import tqdm  # text bars: no ipywidgets needed in a notebook

    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    bad = []
    for path in tqdm(files, desc="checking images", disable=not progress):
        try:
            read_image(path)
        except DataError:
            bad.append(path.name)
    if bad:
        raise FetchError(f"{len(bad)} image(s) do not decode, first: {bad[0]}")
    return len(files)


def record_manifest(dest, entries):
    """Write manifest.json; return warnings for files whose SHA-256 changed since last time."""
    path = Path(dest) / MANIFEST
    previous = json.loads(path.read_text()) if path.is_file() else {}
    warnings = [f"{name} differs from the copy fetched on {previous['files'][name]['fetched']}"
                for name, entry in entries.items()
                if name in previous.get("files", {}) and previous["files"][name]["sha256"] != entry["sha256"]]
    write_json(path, {"dataset": "UHCSDB", "record": "NIST MDR handle 11256/940",
                      "licence": "CC BY 3.0 US", "files": entries})
    return warnings


def fetch_uhcsdb(config, progress=True, log=print):
    """Fetch (or copy), verify, unpack and record UHCSDB into `config.dest`.

    Returns a summary dict: files, image count, labelled micrographs found.
    """
    dest = Path(config.dest)
    dest.mkdir(parents=True, exist_ok=True)
    extra = [s.strip() for s in config.source.split(",") if s.strip()]
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    entries = {}
    if config.from_dir:
        entries = copy_from_dir(Path(config.from_dir), dest, now)
    else:
        for name in FILES:
            try:
                path, url = fetch_file(name, dest, [*extra, *SOURCES], config.timeout, progress)
            except FetchError as error:
                raise FetchError(
                    f"{error}\nDownload {', '.join(FILES)} by hand from the NIST record "
                    f"(handle 11256/940, {RECORD}) or a copy of it, then run: "
                    f"microrep fetch uhcsdb --from-dir FOLDER --dest {dest}") from None
            entries[name] = {"sha256": sha256_of(path), "bytes": path.stat().st_size,
                             "source": url, "fetched": now}
    check_sqlite(dest / FILES[0])
    if (dest / FILES[1]).is_file():
        log(f"unpacking {FILES[1]}")
        extract_zip(dest / FILES[1], dest)
    count = check_images(dest / "micrographs", progress) if config.verify_images else None
    warnings = record_manifest(dest, entries)

    table, missing = load_uhcsdb_table(dest)
    return {"dest": str(dest), "files": entries, "images": count,
            "labelled_found": len(table), "labelled_missing": missing, "warnings": warnings}


def copy_from_dir(source, dest, now):
    """Take hand-downloaded files: the sqlite, and the zip or an image folder."""
    if not (source / FILES[0]).is_file():
        raise FetchError(f"{source} has no {FILES[0]}")
    entries = {}
    for name in FILES:
        if (source / name).is_file():
            if (source / name).resolve() != (dest / name).resolve():
                shutil.copyfile(source / name, dest / (name + ".part"))
                os.replace(dest / (name + ".part"), dest / name)
            entries[name] = {"sha256": sha256_of(dest / name), "bytes": (dest / name).stat().st_size,
                             "source": f"file://{(source / name).resolve()}", "fetched": now}
    if FILES[1] not in entries:
        images = source / "micrographs"
        if not images.is_dir():
            raise FetchError(f"{source} has neither {FILES[1]} nor a micrographs/ folder")
        if images.resolve() != (dest / "micrographs").resolve():
            shutil.copytree(images, dest / "micrographs", dirs_exist_ok=True)
    return entries
