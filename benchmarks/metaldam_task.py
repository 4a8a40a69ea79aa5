"""A second public domain for the view benchmark: MetalDAM's SEM micrographs labelled by
how much martensite/austenite their segmentation masks hold.

MetalDAM (ArcelorMittal and the DaSCI institute, https://github.com/ari-dasci/OD-MetalDAM;
a copy with images and masks in https://github.com/CamiloMartinezM/supervised-micrograph-segmentation,
commit 27e7450, `datasets/MetalDAM`) is 42 SEM micrographs of additively manufactured steel,
1024 x 703 and 1280 x 895 px once the information band is cut, each with a pixel mask of
matrix, austenite, martensite/austenite (M/A), precipitate and defect. It has no image-level
classes, so this script makes one that depends on the whole frame: the M/A area fraction
of the mask, cut at its tertiles into `ma-low`, `ma-mid` and `ma-high`. A view that misses
part of the frame misses part of what decides the class.

It writes gray PNGs (the information band cut, as the masks are) and a CSV
`path,label,group,ma_fraction` beside them, for `benchmarks/views.py --csv`. The images
are never committed; the MetalDAM licence is its authors'.

    python benchmarks/metaldam_task.py MetalDAM_FOLDER OUT_FOLDER
    python benchmarks/views.py --csv OUT_FOLDER/metaldam.csv --views tiles,frame
"""

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

MA_CLASS = 2  #: the mask value of martensite/austenite


def ma_fraction(mask):
    return float(np.mean(mask == MA_CLASS))


def write_task(metaldam, out):
    """Cut, write and label every micrograph that has a mask; returns the table."""
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for image_path in sorted((metaldam / "images").glob("*.jpg")):
        mask = np.asarray(Image.open(metaldam / "labels" / f"{image_path.stem}.png"))
        gray = np.asarray(Image.open(image_path).convert("L"))[: mask.shape[0]]
        Image.fromarray(gray).save(out / f"{image_path.stem}.png")
        rows.append({"path": f"{image_path.stem}.png", "group": image_path.stem,
                     "ma_fraction": ma_fraction(mask)})
    table = pd.DataFrame(rows)
    table["label"] = pd.qcut(table["ma_fraction"].rank(method="first"), 3,
                             labels=["ma-low", "ma-mid", "ma-high"]).astype(str)
    table[["path", "label", "group", "ma_fraction"]].to_csv(out / "metaldam.csv", index=False)
    return table


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("metaldam", type=Path, help="MetalDAM folder with images/ and labels/")
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    table = write_task(args.metaldam, args.out)
    print(table.groupby("label")["ma_fraction"].agg(["count", "min", "max"]).round(3).to_string())
    print(f"wrote {args.out / 'metaldam.csv'}")


if __name__ == "__main__":
    main()
