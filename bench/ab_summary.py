"""Summarises an A/B directory of `taskq bench` JSON reports (see bench/ab.sh).

For every figure both sides reported: the median over the rounds of each side, and
the ratio B / A of those medians (for rates, above 1 means B is faster).
"""

import json
import statistics
import sys
from pathlib import Path


def figures(directory: Path, side: str) -> dict[tuple[str, str], list[float]]:
    values: dict[tuple[str, str], list[float]] = {}
    for path in sorted(directory.glob(f"{side}-*.json")):
        for figure in json.loads(path.read_text())["figures"]:
            values.setdefault((figure["scenario"], figure["name"]), []).extend(figure["runs"])
    return values


def main() -> None:
    directory = Path(sys.argv[1])
    a, b = figures(directory, "a"), figures(directory, "b")
    print(f"{'scenario':<8} {'figure':<58} {'A median':>10} {'B median':>10} {'B/A':>6}")
    for key in sorted(a.keys() & b.keys()):
        median_a, median_b = statistics.median(a[key]), statistics.median(b[key])
        ratio = median_b / median_a if median_a else float("nan")
        print(f"{key[0]:<8} {key[1]:<58} {median_a:>10.1f} {median_b:>10.1f} {ratio:>6.3f}")
        print(f"{'':<8} {'  runs A: ' + ', '.join(f'{v:.0f}' for v in a[key]):<58}")
        print(f"{'':<8} {'  runs B: ' + ', '.join(f'{v:.0f}' for v in b[key]):<58}")


if __name__ == "__main__":
    main()
