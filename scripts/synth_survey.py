"""Write a synthetic drone survey of N photos with GPS EXIF (the synthetic city), for measuring `mgs sfm` on
captures larger than brighton_beach.

    python scripts/synth_survey.py OUT --photos 300 [--size 1600 1200] [--upscale 4000 3000] [--workers 2]

``--upscale`` resizes each rendered photo (bicubic) so that decoding and the image pyramid cost what a
camera's full-size photo costs; the detail stays that of the rendered size.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from momentum_gs.data.synthetic.survey import write_survey


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--photos", type=int, default=100)
    parser.add_argument("--size", type=int, nargs=2, default=[1600, 1200], metavar=("W", "H"))
    parser.add_argument("--upscale", type=int, nargs=2, default=None, metavar=("W", "H"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    start = time.perf_counter()
    write_survey(args.out, args.photos, *args.size, upscale=tuple(args.upscale) if args.upscale else None,
                 workers=args.workers, seed=args.seed)
    print(f"{args.photos} photos in {args.out} ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
