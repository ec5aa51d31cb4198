"""Write the bundled sample application list (reproducible from its seed).

python scripts/make_sample.py --n 300 --seed 2021 --out data/sample-2021-1.xlsx
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hnte import synthetic
from hnte.config.city import load_city


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--seed", type=int, default=2021)
    parser.add_argument("--out", type=Path, default=Path("data/sample-2021-1.xlsx"))
    args = parser.parse_args()
    city = load_city()
    shares = [synthetic.DistrictShare(d.code, d.name, d.weight) for d in city.districts]
    apps = synthetic.applications(
        args.n, seed=args.seed, districts=shares, year=city.city.year, fakes=4
    )
    writer = synthetic.write_csv if args.out.suffix == ".csv" else synthetic.write_xlsx
    writer(args.out, apps)
    print(f"wrote {len(apps)} applications to {args.out}")


if __name__ == "__main__":
    main()
