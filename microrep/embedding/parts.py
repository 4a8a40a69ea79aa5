"""Parts of an embedded archive: the unit every process, array task and actor writes.

    parts/part-000012.npy        float32 (rows of the part, embedding_dim); zeros for bad rows
    parts/part-000012.parquet    the part's manifest rows with status (ok / bad) and reason
    parts/part-000012.done.json  written last: rows, counts, the .npy's sha256, and the
                                 identity (model, settings, manifest) it was embedded with

A part is done when its done file exists and names this archive's identity; anything
else (no done file, a kill half-way, another model) is redone or refused. Readers take
the parts as memory maps, one at a time, so no archive is ever concatenated in memory.
"""

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd

from microrep.embedding.manifest import file_sha256, manifest_info, part_range, read_manifest
from microrep.errors import DataError
from microrep.fileio import (atomic_path, read_checked, read_json, read_parquet_table, write_sealed_json,
                             replace_into, stale_temporaries, temporary_beside,
                             write_parquet_table)

PARTS = "parts"
PROVENANCE = "embed.json"  # the archive's settings, model and identity
IDENTITY_KEYS = ("model", "settings", "manifest")
DONE_KEYS = ("rows", "ok", "bad", "sha256")

#: Part states other than "done" and "missing"; embed recomputes DAMAGED parts and refuses
#: parts of ANOTHER model or manifest (parts never mix).
DAMAGED, ANOTHER = "damaged", "another"


def part_stem(out, part):
    return Path(out) / PARTS / f"part-{part:06d}"


def part_files(out, part):
    """(embeddings .npy, table .parquet, done .json) of part `part`."""
    stem = part_stem(out, part)
    return stem.with_suffix(".npy"), stem.with_suffix(".parquet"), stem.with_suffix(".done.json")


def digest_of(value):
    """sha256 (16 hex digits) of a JSON-able value or of bytes."""
    data = value if isinstance(value, bytes) else json.dumps(value, sort_keys=True).encode()
    return hashlib.sha256(data).hexdigest()[:16]


def weights_digest(model):
    """A model's identity: the sha256 of every weight's bytes, in order."""
    digest = hashlib.sha256()
    for weight in model.weights:
        digest.update(np.ascontiguousarray(np.asarray(weight)).tobytes())
    return digest.hexdigest()[:16]


class PartWriter:
    """Fills one part's embeddings in place (a memory map under a temporary name), then
    `finish` writes its table and, last, its done file. A kill before `finish` leaves
    no done file, so the part is redone; a done file means every file is complete."""

    def __init__(self, out, part, rows, dim):
        self.out, self.part, self.rows = Path(out), part, rows
        self.npy, self.table, self.done = part_files(out, part)
        for stale in stale_temporaries(self.npy.parent, self.npy.name):
            stale.unlink(missing_ok=True)  # left by a writer of this part that was killed
        self.tmp = temporary_beside(self.npy)
        self.array = np.lib.format.open_memmap(self.tmp, mode="w+", dtype=np.float32,
                                               shape=(len(rows), dim))

    def put(self, start, vectors):
        """Embeddings of the part's rows start .. start + len(vectors)."""
        self.array[start:start + len(vectors)] = vectors

    def finish(self, table, bad, identity):
        """Rename the embeddings into place, write the table (status, reason) and the done file."""
        status = np.array(["ok"] * len(table), dtype=object)
        reasons = np.array([""] * len(table), dtype=object)
        for row, reason in bad.items():
            status[row], reasons[row] = "bad", reason
            self.array[row] = 0.0
        self.array.flush()
        del self.array
        replace_into(self.tmp, self.npy)
        with atomic_path(self.table) as tmp:
            write_parquet_table(table.reset_index(drop=True).assign(status=status, reason=reasons), tmp)
        record = {"part": self.part, "rows": len(self.rows), "ok": len(table) - len(bad),
                  "bad": len(bad), "sha256": file_sha256(self.npy),
                  "bytes": self.npy.stat().st_size,
                  "table_sha256": file_sha256(self.table), **identity}
        write_sealed_json(self.done, record)
        return {**record, "bad_images": [f"{Path(table['path'].iloc[row]).name} ({reason})"
                                         for row, reason in sorted(bad.items())[:5]]}

    def abandon(self):
        del self.array
        self.tmp.unlink(missing_ok=True)


def part_state(out, part, identity, verify=False):
    """'done', 'missing', or (state, why) text for part `part` of archive `out`:
    'damaged: why' (embed recomputes it) or 'another: why' (embed refuses it)."""
    return part_check(out, part, identity, verify)[0]


def part_check(out, part, identity, verify=False):
    """(state as `part_state` says it, the part's done record or None), its done file read once.

    `verify` also checks the part's files against the checksums its done file recorded,
    so a part whose bytes changed after it was written is found (and recomputed by embed).
    """
    npy, table, done = part_files(out, part)
    if not done.is_file():
        return "missing", None
    try:
        record = read_checked(done, read_json, "", DONE_KEYS)
    except DataError:
        return f"{DAMAGED}: its done file {done.name} is damaged", None
    other = [key for key in IDENTITY_KEYS if record.get(key) != identity.get(key)]
    if other:
        return f"{ANOTHER}: embedded with another {' and '.join(other)}", record
    gone = [path.name for path in (npy, table) if not path.is_file()]
    if gone:
        return f"{DAMAGED}: {' and '.join(gone)} named by its done file is gone", record
    if "bytes" in record and npy.stat().st_size != record["bytes"]:
        return f"{DAMAGED}: {npy.name} is not the size its done file recorded", record
    if verify:
        if file_sha256(npy) != record["sha256"]:
            return f"{DAMAGED}: {npy.name} differs from the checksum in its done file", record
        if "table_sha256" in record and file_sha256(table) != record["table_sha256"]:
            return f"{DAMAGED}: {table.name} differs from the checksum in its done file", record
    return "done", record


@dataclasses.dataclass
class Status:
    """What `microrep status` reports: each part's state and the bad images of done parts."""

    parts: int
    rows: int
    states: dict
    bad_rows: int

    @property
    def done(self):
        return [p for p, s in self.states.items() if s == "done"]

    @property
    def missing(self):
        return [p for p, s in self.states.items() if s == "missing"]

    @property
    def inconsistent(self):
        return {p: s for p, s in self.states.items() if s not in ("done", "missing")}

    @property
    def damaged(self):
        return {p: s for p, s in self.states.items() if s.startswith(DAMAGED)}

    @property
    def complete(self):
        return len(self.done) == self.parts


def provenance(out):
    """embed.json of archive `out`: the settings, model and identity it was embedded with."""
    return read_checked(Path(out) / PROVENANCE, read_json,
                        "it records which model and settings made the archive: restore it, or "
                        "make the archive again (`microrep embed ... --overwrite`)", IDENTITY_KEYS)


def archive_identity(out):
    """The identity embed.json records for archive `out` (model, settings, manifest)."""
    info = provenance(out)
    return {key: info.get(key) for key in IDENTITY_KEYS}


def archive_status(out, verify=False):
    """The Status of every part of archive `out`."""
    info = manifest_info(out)
    identity = archive_identity(out)
    states, bad = {}, 0
    for part in range(info["parts"]):
        states[part], record = part_check(out, part, identity, verify)
        if states[part] == "done":
            bad += record["bad"]
    return Status(info["parts"], info["rows"], states, bad)


def is_parts_archive(folder):
    return (Path(folder) / PARTS).is_dir()


def redo_advice(folder):
    """What mends a damaged part: the command that wrote the archive, run again."""
    try:
        writer = read_json(Path(folder) / PROVENANCE).get("written_by", "embed")
    except (OSError, ValueError, AttributeError):
        writer = "embed"
    if writer == "embed":
        return "run the same `microrep embed` again on this folder: it computes just those parts"
    return f"run `microrep {writer}` again to write it (this archive is its output)"


class PartsArchive:
    """The done parts of an archive, each memory-mapped, with their tables.

    `table` holds every usable row (status ok) with its `part` and `row` in it;
    `parts()` yields (part, embeddings memory map, its usable rows) one part at a time.
    """

    def __init__(self, folder, verify="auto"):
        self.folder = Path(folder)
        if verify == "auto":  # every byte checked where that is cheap; sizes above
            verify = archive_bytes(self.folder) <= VERIFY_UP_TO
        if verify:
            verify_manifest(self.folder)
        status = archive_status(self.folder, verify)
        refuse_incomplete(self.folder, status)
        self.numbers = status.done
        self.identity = archive_identity(self.folder)
        tables, advice = [], redo_advice(self.folder)
        for part in self.numbers:
            table = read_checked(part_files(self.folder, part)[1], read_parquet_table, advice)
            tables.append(table.assign(part=part, row=np.arange(len(table))))
        full = pd.concat(tables, ignore_index=True)
        self.table = full[full["status"] == "ok"].reset_index(drop=True)
        self.bad = full[full["status"] != "ok"].reset_index(drop=True)
        self.dim = int(np.load(part_files(self.folder, self.numbers[0])[0], mmap_mode="r").shape[1])
        # usable rows of each part, found once (table is in part order): not a scan per part
        parts = self.table["part"].to_numpy()
        self._rows = dict(zip(self.numbers, np.split(self.table["row"].to_numpy(),
                                                     np.searchsorted(parts, self.numbers[1:]))))

    def __len__(self):
        return len(self.table)

    @property
    def shape(self):
        return (len(self), self.dim)

    def __getitem__(self, rows):
        """The vectors of some usable rows (positions in `table`), in the order asked, read
        part by part from the memory maps: the archive stands where one matrix would."""
        rows = np.asarray(rows, dtype=np.int64)
        unique = np.unique(rows)
        chosen = np.zeros(len(self), bool)
        chosen[unique] = True
        pieces, offset = [np.zeros((0, self.dim), np.float32)], 0
        for _, embeddings, part_rows in self.parts():
            mask = chosen[offset:offset + len(part_rows)]
            if mask.any():
                pieces.append(np.asarray(embeddings[part_rows[mask]], np.float32))
            offset += len(part_rows)
        return np.concatenate(pieces)[np.searchsorted(unique, rows)]

    def parts(self):
        for part in self.numbers:
            yield part, np.load(part_files(self.folder, part)[0], mmap_mode="r"), self._rows[part]

    def vectors(self):
        """Every usable embedding in one array: for analyses that need the matrix (SVMs, PCA)."""
        return self[np.arange(len(self))]


#: Archives up to this many bytes of parts are checked byte for byte (sha256) whenever they
#: are opened (about a second); larger ones are checked by size, and in full by
#: `microrep status --verify` and by `embed` before it resumes.
VERIFY_UP_TO = 2 << 30


def archive_bytes(folder):
    return sum(path.stat().st_size for path in (Path(folder) / PARTS).glob("part-*.npy"))


def verify_manifest(folder):
    """DataError unless manifest.parquet is the file manifest.json's checksum names: readers
    take rows from the parts, so a lost or changed manifest would otherwise pass unseen."""
    from microrep.embedding.manifest import LISTING_ADVICE as advice, MANIFEST

    info = manifest_info(folder)
    path = Path(folder) / MANIFEST
    digest = read_checked(path, file_sha256, advice)
    if digest != info["sha256"]:
        raise DataError(f"{path} is damaged (it differs from the checksum in manifest.json); {advice}")


def refuse_incomplete(folder, status):
    """One line naming the first damaged part's file, or the parts not done yet."""
    if status.complete:
        return
    if status.damaged:
        part, why = next(iter(status.damaged.items()))
        raise DataError(f"{folder}: part {part} is damaged ({why[len(DAMAGED) + 2:]}, "
                        f"{part_stem(folder, part).relative_to(folder)}.*); {redo_advice(folder)}"
                        + (f" ({len(status.damaged)} parts are damaged)" if len(status.damaged) > 1 else ""))
    if not status.missing:  # every part not done was embedded with another model or manifest
        part, why = next(iter(status.inconsistent.items()))
        raise DataError(f"{folder}: part {part} {why[len(ANOTHER) + 2:]} than embed.json records; "
                        "parts never mix: embed the archive again with --overwrite")
    first = part_files(folder, status.missing[0])[2].relative_to(folder)
    raise DataError(f"{folder}: {len(status.done)} of {status.parts} parts are done "
                    f"({describe_incomplete(status)}; no {first}); {redo_advice(folder)}, "
                    f"or `microrep status {folder}` to see which")


def describe_incomplete(status):
    from microrep.config.fields import ranges_text

    words = []
    if status.missing:
        words.append(f"missing: {ranges_text(status.missing)}")
    if status.inconsistent:
        words.append(f"inconsistent: {ranges_text(list(status.inconsistent))}")
    return "; ".join(words)


def part_manifest(out, part):
    """(rows, manifest rows, manifest info) of part `part`."""
    info = manifest_info(out)
    rows = part_range(info, part)
    table, _ = read_manifest(out, rows=rows)
    return rows, table, info
