"""Two cheap priors for the guided sampler, measured against the exhaustive table before either is
built into it: does a task's affinity to the targets, from one short run, rank the pool's tasks as
their exact Shapley values on the table do?

- gradient: the cosine between the encoder's gradient of a pool task's loss and of a target's
  English loss, at the pretrained weights (fresh heads), over `--batches` batches each;
- lookahead (TAG, Fifty et al. 2021): after `--warmup-steps` of joint training (AdamW) on every
  pool task and the targets, half of the steps on the targets, `--lookahead-steps` of SGD at
  `--lookahead-lr` on one pool task; its affinity to a target is the relative drop of the
  target's English loss on `--eval-batches` fixed batches (dropout off).

Each prior is printed per task and target, and its Spearman correlation with the table's exact
Shapley values per target and averaged over the targets, for each `--seeds` seed (the heads'
initialization and the batches) and for the affinities averaged over the seeds. The spec is the
table's (the quickstart by default), its pool the table's; its data is prepared as a search would.

    python benchmarks/task_priors.py benchmarks/tables/exhaustive_9_seed0.csv \
        benchmarks/tables/exhaustive_9_seed1.csv --seeds 3
"""

from __future__ import annotations

import argparse
import copy
import itertools
import time
from pathlib import Path

import numpy as np
import torch
from replay import Table
from scipy.stats import spearmanr

from xlt_search.data import BatchStream
from xlt_search.search import prepare_search_data, trial_config
from xlt_search.spec import load_spec
from xlt_search.trial import MultiTaskModel, load_encoder

ROOT = Path(__file__).resolve().parents[1]
BATCH_SIZE = 32


def build(
    spec, model: str, data, seed: int
) -> tuple[MultiTaskModel, dict[str, BatchStream], list[str]]:
    """The encoder with a fresh head per pool task and target, each task's English batches, and
    the targets' keys."""
    config = trial_config(spec, model, {"tasks": "", "seed": seed})
    torch.manual_seed(seed)
    encoder = load_encoder(config.model, torch.device("cpu"))
    targets = [target.task for target in config.targets]
    tasks = {key: data.task(key) for key in (*spec.pool, *targets)}
    heads = {key: (task.kind, task.num_labels) for key, task in tasks.items()}
    multi = MultiTaskModel(encoder, heads, config.autocast_dtype, data.pooling)
    streams = {
        key: BatchStream(
            data.load(key, "train", "en"), task.kind, data.pad_token_id, BATCH_SIZE, seed=seed
        )
        for key, task in tasks.items()
    }
    return multi.train(), streams, targets


def gradient_prior(
    spec, model_path: str, data, seed: int, batches: int
) -> dict[str, dict[str, float]]:
    """Pool task -> target -> the cosine of their loss gradients on the encoder's weights (the
    embeddings and the pooler, which some heads never reach, left out)."""
    model, streams, targets = build(spec, model_path, data, seed)
    shared = [
        p
        for n, p in model.encoder.named_parameters()
        if "embeddings" not in n and "pooler" not in n
    ]
    gradient = {}
    for key in (*spec.pool, *targets):
        model.zero_grad()
        for _ in range(batches):
            loss, _ = model(key, streams[key].next())
            (loss / batches).backward()
        gradient[key] = torch.cat(
            [(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in shared]
        )
    return {
        key: {t: float(torch.cosine_similarity(gradient[key], gradient[t], dim=0)) for t in targets}
        for key in spec.pool
    }


def lookahead_prior(
    spec,
    model_path: str,
    data,
    seed: int,
    warmup_steps: int,
    lookahead_steps: int,
    lr: float,
    eval_batches: int,
) -> dict[str, dict[str, float]]:
    """Pool task -> target -> the target's relative drop in loss after a few SGD steps on the task,
    from a jointly warmed-up encoder."""
    model, streams, targets = build(spec, model_path, data, seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    pool = itertools.cycle(spec.pool)
    for step in range(warmup_steps):
        key = targets[step // 2 % len(targets)] if step % 2 == 0 else next(pool)
        loss, _ = model(key, streams[key].next())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    fixed = {t: [streams[t].next() for _ in range(eval_batches)] for t in targets}
    model.eval()

    def target_loss() -> dict[str, float]:
        with torch.no_grad():
            return {t: float(np.mean([float(model(t, b)[0]) for b in fixed[t]])) for t in targets}

    before, warm = target_loss(), copy.deepcopy(model.state_dict())
    found = {}
    for key in spec.pool:
        model.load_state_dict(warm)
        sgd = torch.optim.SGD(model.encoder.parameters(), lr=lr)
        for _ in range(lookahead_steps):
            loss, _ = model(key, streams[key].next())
            loss.backward()
            sgd.step()
            sgd.zero_grad()
        after = target_loss()
        found[key] = {t: 1.0 - after[t] / before[t] for t in targets}
    return found


def agreement(prior: dict[str, dict[str, float]], shapley: dict[str, float]) -> list[float]:
    """Spearman with the Shapley values of each target's affinities, then of their mean."""
    pool = list(shapley)
    targets = list(next(iter(prior.values())))
    columns = [[prior[k][t] for k in pool] for t in targets]
    columns.append(list(np.mean(columns, axis=0)))
    return [float(spearmanr(c, [shapley[k] for k in pool])[0]) for c in columns]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("table", nargs="+", type=Path, help="exhaustive_table.py's CSV(s)")
    parser.add_argument("--spec", type=Path, default=ROOT / "search_spaces" / "quickstart.yaml")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--batches", type=int, default=8, help="per task, for the gradients")
    parser.add_argument("--warmup-steps", type=int, default=400)
    parser.add_argument("--lookahead-steps", type=int, default=10)
    parser.add_argument("--lookahead-lr", type=float, default=0.002)
    parser.add_argument("--eval-batches", type=int, default=16)
    args = parser.parse_args()

    table = Table.read(args.table)
    pool = ",".join(table.pool)
    spec = load_spec(args.spec, [f"pool=[{pool}]"])
    model_path, data = prepare_search_data(spec)
    torch.set_num_threads(1)
    print(
        "table's exact Shapley values: "
        + ", ".join(
            f"{k} {v:+.4f}" for k, v in sorted(table.shapley.items(), key=lambda kv: -kv[1])
        )
    )
    measures = {
        "gradient": lambda seed: gradient_prior(spec, model_path, data, seed, args.batches),
        "lookahead": lambda seed: lookahead_prior(
            spec,
            model_path,
            data,
            seed,
            args.warmup_steps,
            args.lookahead_steps,
            args.lookahead_lr,
            args.eval_batches,
        ),
    }
    for name, measure in measures.items():
        started, priors = time.perf_counter(), []
        for seed in range(args.seeds):
            priors.append(measure(seed))
            rho = agreement(priors[-1], table.shapley)
            print(f"{name}  |  seed {seed}  |  Spearman " + " / ".join(f"{r:+.2f}" for r in rho))
        targets = list(priors[0][table.pool[0]])
        mean = {
            k: {t: float(np.mean([p[k][t] for p in priors])) for t in targets} for k in table.pool
        }
        for key in table.pool:
            print(f"{name}  |  {key}  |  " + "  ".join(f"{t} {mean[key][t]:+.4f}" for t in targets))
        rho = agreement(mean, table.shapley)
        print(
            f"{name}  |  mean of {args.seeds} seeds  |  Spearman per target ({', '.join(targets)})"
            f" and over targets: "
            + " / ".join(f"{r:+.2f}" for r in rho)
            + f"  |  {(time.perf_counter() - started) / args.seeds:.1f} s a seed"
        )


if __name__ == "__main__":
    main()
