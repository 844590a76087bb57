"""The bill's predicted wall time against the measured one, for real searches on this CPU.

    python benchmarks/bill_vs_measured.py                 # the quickstart and two smaller specs
    python benchmarks/bill_vs_measured.py --only small    # one spec (quickstart, small, fifo)

Each spec is priced by `xlt-search run SPEC --dry-run` (the bill's `time` line on the cpu row of
xlt_search/search/devices.yaml), then run through the CLI in a temporary folder with its own MLflow
store; the table gives both wall times, their ratio, and the checkpoint disk the bill predicted
against what the search's folder holds. The data is prepared first (`xlt-search prepare`), so the
bill reads the real token counts and the search's own preparation is a cache hit. The bill counts
every trial to its whole budget: a search whose ASHA cuts trials takes less.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml
from common import run_search

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "search_spaces" / "quickstart.yaml"


def specs() -> dict[str, dict]:
    """The quickstart, and two smaller searches over the same suite."""
    quickstart = yaml.safe_load(QUICKSTART.read_text())
    small = {
        **quickstart,
        "name": "bill-small",
        "mlflow": {"experiment": "bill-small"},
        "subsets": {"sampler": "stratified", "sizes": [1, 3], "per_size": 2, "baseline": True},
    }
    fifo = {
        **quickstart,
        "name": "bill-fifo",
        "mlflow": {"experiment": "bill-fifo"},
        "pool": quickstart["pool"][:4],
        "subsets": {"sampler": "grid", "sizes": [2], "baseline": False},
        "hyperparameters": {**quickstart["hyperparameters"], "per_device_batch_size": 64},
        "budget": {
            "intermediate_steps": 300,
            "target_steps": 200,
            "report_every_steps": 100,
            "probe_steps": 50,
            "scheduler": "fifo",
        },
    }
    return {"quickstart": quickstart, "small": small, "fifo": fifo}


def predicted(spec_path: Path) -> tuple[float, float]:
    """The bill's wall seconds and checkpoint bytes in all, from the dry run's lines."""
    run = [sys.executable, "-m", "xlt_search"]
    subprocess.run([*run, "prepare", str(spec_path)], check=True, stdout=subprocess.DEVNULL)
    out = subprocess.run(
        [*run, "run", str(spec_path), "--dry-run"], check=True, capture_output=True, text=True
    ).stdout
    time_line = next(line for line in out.splitlines() if line.startswith("  time "))
    parts = dict((unit, float(v)) for v, unit in re.findall(r"(\d+) (h|min|s)\b", time_line))
    seconds = parts.get("h", 0) * 3600 + parts.get("min", 0) * 60 + parts.get("s", 0)
    disk = re.search(r"([\d.]+) (kB|MB|GB) in all", out)
    scale = {"kB": 1e3, "MB": 1e6, "GB": 1e9}[disk.group(2)]
    return seconds, float(disk.group(1)) * scale


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=list(specs()), action="append")
    args = parser.parse_args()
    rows = []
    for name, spec in specs().items():
        if args.only and name not in args.only:
            continue
        with tempfile.TemporaryDirectory() as work:
            folder = Path(work)
            path = folder / "spec.yaml"
            path.write_text(yaml.safe_dump({**spec, "storage_path": str(folder / "runs")}))
            seconds, disk = predicted(path)
            _, measured, _ = run_search(spec, folder)
            kept = sum(f.stat().st_size for f in (folder / "runs").rglob("trial_state.pt"))
        rows.append((name, seconds, measured, disk, kept))
        print(f"{name}: predicted {seconds:.0f} s, measured {measured:.0f} s", flush=True)
    print(
        "| spec | predicted wall s | measured wall s | predicted / measured | "
        "checkpoints predicted MB | kept MB |"
    )
    print("|---|---|---|---|---|---|")
    for name, seconds, measured, disk, kept in rows:
        print(
            f"| {name} | {seconds:.0f} | {measured:.0f} | {seconds / measured:.2f} | "
            f"{disk / 1e6:.1f} | {kept / 1e6:.1f} |"
        )


if __name__ == "__main__":
    main()
