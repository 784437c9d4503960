#!/usr/bin/env python
"""Converts the embryoid-body RNA time course (JKOnet*'s preprocessed form) to an AnnData .h5ad file.

Input: a directory with ``data.npy`` (``[n, 5]``, the first 5 standardised PCs of TrajectoryNet's
eb_velocity_v5.npz; Moon et al. 2019) and ``sample_labels.npy`` (``[n]``, integer labels 0..4), e.g. the shared
copy ``/work/shared/real-data/eb_rna_pca5`` (its README gives the days of the labels: 0-3, 6-9, 12-15, 18-21,
24-27). Output: an .h5ad (anndata >= 0.8 reads it; written by :func:`jkonetstar.data.write_energy_h5ad`, no
anndata needed) with

- ``.obs["day"]``: an ordered categorical, ``day0-3 < day6-9 < day12-15 < day18-21 < day24-27`` (the time order);
- ``.obsm["X_pca"]``: the points, float64 as in data.npy;
- ``.uns``: ``source`` (the input directory) and ``description``; no ``.X`` (the genes are not in this form).

Cells keep the row order of data.npy. Reading it back with
``jkonetstar.data.load_population(out, time_key="day", representation="X_pca")`` gives the population that
``load_population(directory)`` gives (same points, snapshots 0..4; plus the day names as ``time_names``).
In a workflow config::

    datasets:
      eb:
        path: data/eb_rna_pca5.h5ad
        time_key: day
        representation: X_pca
        solvers: [jkonet-star-time-potential]

Usage (from the repository root, with the project's environment)::

    python scripts/eb_to_h5ad.py /work/shared/real-data/eb_rna_pca5 data/eb_rna_pca5.h5ad
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # a checkout without pip install -e

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from jkonetstar.data import write_energy_h5ad  # noqa: E402

DAYS = ("day0-3", "day6-9", "day12-15", "day18-21", "day24-27")
"""The collection days of sample labels 0..4 (Moon et al. 2019; the data's README), in time order."""


def convert(source, out) -> Path:
    """Writes ``out`` (.h5ad) from the directory ``source`` (data.npy, sample_labels.npy); returns ``out``.

    Raises:
        ValueError: naming the file, for missing arrays, mismatched shapes or labels outside 0..4.
    """
    source, out = Path(source), Path(out)
    data_file, labels_file = source / "data.npy", source / "sample_labels.npy"
    if not (data_file.is_file() and labels_file.is_file()):
        raise ValueError(f"{source}: expected a directory with data.npy and sample_labels.npy")
    x = np.load(data_file, allow_pickle=False)
    labels = np.load(labels_file, allow_pickle=False)
    if x.ndim != 2 or labels.shape != (len(x),):
        raise ValueError(f"{source}: data.npy {x.shape} and sample_labels.npy {labels.shape} are not [n, d] and [n]")
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() >= len(DAYS):
        raise ValueError(f"{labels_file}: labels must be integers 0..{len(DAYS) - 1} (days {', '.join(DAYS)}), "
                         f"got {np.unique(labels).tolist()}")
    day = pd.Categorical.from_codes(labels, categories=list(DAYS), ordered=True)
    write_energy_h5ad(out, obs={"day": day}, obsm={"X_pca": x}, uns={
        "source": str(source),
        "description": "embryoid body (Moon et al. 2019), first 5 standardised PCs of TrajectoryNet's "
                       "eb_velocity_v5.npz (JKOnet* preprocessing); obs day: collection days",
    })
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="directory with data.npy and sample_labels.npy")
    parser.add_argument("out", type=Path, help="the .h5ad file to write")
    args = parser.parse_args(argv)
    try:
        print(convert(args.source, args.out))
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
