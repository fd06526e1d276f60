"""``wise-rl synth``: generate the ShapeWorld reasoning-segmentation dataset and save it with ``save_to_disk``.

    wise-rl synth --out data/shapeworld --n 20000 --seed 0 [--image-size 112] [--test-fraction 0.1] [--overwrite]

A non-empty ``--out`` needs ``--overwrite`` (as for ``build-sft`` and ``export``).

n_test = round(n × test_fraction), n_train = n − n_test. Prints the split sizes, the query families' counts,
the random-shape and centre-box baselines on the test split, and the wall time.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder (DatasetDict.save_to_disk)")
    parser.add_argument("--n", type=int, required=True, help="total number of scenes (train + test)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-size", type=int, default=112, help="square image side in px (= the model frame)")
    parser.add_argument("--test-fraction", type=float, default=0.1, help="share of --n held out as the test split")
    parser.add_argument("--num-proc", type=int, default=None, help="worker processes (default: 1)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")


def run(args: argparse.Namespace) -> int:
    from wise_rl.testbed.shapeworld import centre_box_baseline, generate_dataset, random_shape_baseline

    if args.n <= 0:
        raise SystemExit(f"wise-rl synth: --n must be positive, got {args.n}")
    if not 0.0 <= args.test_fraction < 1.0:
        raise SystemExit(f"wise-rl synth: --test-fraction must be in [0, 1), got {args.test_fraction}")
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not args.overwrite:
        raise FileExistsError(f"--out {out} is not empty; pass --overwrite to replace it")
    n_test = int(round(args.n * args.test_fraction))
    n_train = args.n - n_test
    start = time.perf_counter()
    dd = generate_dataset(
        n_train, n_test, seed=args.seed, image_size=args.image_size, out_dir=args.out, num_proc=args.num_proc
    )
    wall = time.perf_counter() - start
    print(f"ShapeWorld saved to {args.out} (image size {args.image_size}, seed {args.seed})")
    for split, ds in dd.items():
        counts = Counter(ds["family"])
        families = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        print(f"  {split}: {len(ds)} rows ({families})")
    if n_test:
        rnd = random_shape_baseline(dd["test"], seed=args.seed)
        ctr = centre_box_baseline(dd["test"])
        print(
            f"  test baselines: random shape acc@0.5 {rnd['acc@0.5']:.3f} mean IoU {rnd['mean_iou']:.3f}; "
            f"centre box acc@0.5 {ctr['acc@0.5']:.3f} mean IoU {ctr['mean_iou']:.3f}"
        )
    print(f"  wall time {wall:.1f} s ({args.n / max(wall, 1e-9):.0f} scenes/s incl. encoding and saving)")
    return 0
