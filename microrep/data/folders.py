"""Users' own micrographs: a folder with one sub-folder per class, or a CSV list.

Both give the same table as every other source (`path`, `label`, `group`), so
training, embedding and evaluation treat them like UHCSDB.
"""

from pathlib import Path

import pandas as pd

from microrep.data.images import IMAGE_SUFFIXES
from microrep.errors import DataError


def image_files(folder):
    """Image files below `folder` (any depth), sorted; hidden files left out."""
    return sorted(p for p in Path(folder).rglob("*")
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))


def class_folder_table(root):
    """One row per image under `root/<class>/...`; each image is its own group."""
    root = Path(root).resolve()
    if not root.is_dir():
        raise DataError(f"image folder not found: {root}")
    rows, empty = [], []
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = image_files(class_dir)
        if not files:
            empty.append(class_dir.name)
        rows += [{"path": str(f), "label": class_dir.name, "group": str(f.relative_to(root))}
                 for f in files]
    if empty:
        raise DataError(f"class folder(s) without images in {root}: {', '.join(empty)} "
                        f"(images must end in {', '.join(IMAGE_SUFFIXES)})")
    if not rows:
        raise DataError(f"{root} has no class sub-folders with images; expected "
                        f"{root}/<class name>/<image files>")
    return pd.DataFrame(rows)


def archive_table(root):
    """Every image below `root`, at any depth, for embedding: an archive needs no labels.

    A plain folder, a tree by date or microscope, or class sub-folders all work; an
    image in a sub-folder is labelled with the sub-folder's name (so class folders keep
    their classes), one directly in `root` is unlabelled. Each image is its own group.
    """
    root = Path(root).resolve()
    if not root.is_dir():
        raise DataError(f"image folder not found: {root}")
    files = image_files(root)
    if not files:
        raise DataError(f"{root} holds no images (at any depth; images must end in "
                        f"{', '.join(IMAGE_SUFFIXES)})")
    rows = []
    for path in files:
        relative = path.relative_to(root)
        rows.append({"path": str(path), "label": relative.parts[0] if len(relative.parts) > 1 else "",
                     "group": str(relative)})
    return pd.DataFrame(rows)


def csv_separator(csv_path):
    """',' unless the header line is clearly separated by ';' or tabs (spreadsheet exports)."""
    with open(csv_path, encoding="utf-8-sig", errors="replace") as handle:
        header = handle.readline()
    counts = {sep: header.count(sep) for sep in (",", ";", "\t")}
    best = max(counts, key=counts.get)
    return best if counts[best] > 0 else ","


def csv_table(csv_path, require_labels=True):
    """Rows of a CSV with columns path,label[,group]; paths relative to the CSV.

    Without `require_labels` (embedding), the label column may be absent or blank.
    """
    csv_path = Path(csv_path)
    try:
        # utf-8-sig: spreadsheet programs start UTF-8 CSVs with a byte-order mark; the
        # separator (',' ';' tab) is sniffed, as European spreadsheets write ';'
        table = pd.read_csv(csv_path, dtype={"label": str, "group": str},
                            sep=csv_separator(csv_path), encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"CSV file not found: {csv_path}") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise DataError(f"cannot read CSV {csv_path}: {str(error).splitlines()[0]}") from None
    if not require_labels and "label" not in table.columns:
        table["label"] = ""
    missing = [c for c in ("path", "label") if c not in table.columns]
    if missing:
        raise DataError(f"{csv_path} lacks column(s) {', '.join(missing)}; found "
                        f"{', '.join(map(str, table.columns))}; expected path,label[,group]")
    blank = table["path"].isna() | (table["label"].isna() if require_labels else False)
    if blank.any():
        raise DataError(f"{csv_path}: rows {', '.join(str(i + 2) for i in table.index[blank][:5])} "
                        "have an empty path or label")
    base = csv_path.resolve().parent
    table["path"] = [str(p if Path(p).is_absolute() else base / p) for p in table["path"]]
    folders = [p for p in table["path"] if Path(p).is_dir()]
    if folders:
        raise DataError(f"{csv_path}: {len(folders)} listed path(s) are folders, not images, "
                        f"first: {folders[0]}")
    absent = [p for p in table["path"] if not Path(p).is_file()]
    if absent:
        raise DataError(f"{csv_path}: {len(absent)} listed image(s) not found, first: {absent[0]}")
    if "group" not in table.columns:
        table["group"] = table["path"]
    table["group"] = table["group"].fillna(table["path"]).astype(str)
    table["label"] = table["label"].fillna("")
    return table
