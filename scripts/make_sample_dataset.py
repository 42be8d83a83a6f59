"""Generate the bundled synthetic COCO instance-segmentation sample dataset.

    python scripts/make_sample_dataset.py OUT_DIR [--train 24] [--val 8] [--size 192] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from otxlite.data.sample_data import make_sample_dataset, summarize_sample_dataset  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, write the dataset and print a one-line summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="output folder (Datumaro/COCO layout)")
    parser.add_argument("--train", type=int, default=24, help="train images (default: 24)")
    parser.add_argument("--val", type=int, default=8, help="val images (default: 8)")
    parser.add_argument("--size", type=int, default=192, help="image side in pixels (default: 192)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    args = parser.parse_args(argv)
    try:
        out_dir = make_sample_dataset(args.out_dir, args.train, args.val, args.size, args.seed)
    except ValueError as err:
        parser.error(str(err))
    print(summarize_sample_dataset(out_dir))


if __name__ == "__main__":
    main()
