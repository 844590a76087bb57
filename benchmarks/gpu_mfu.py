"""Training throughput and MFU of an XLM-R-base-shaped encoder on one GPU, and trials packed on it.

    python benchmarks/gpu_mfu.py                           # on a CUDA machine: the whole table
    python benchmarks/gpu_mfu.py --device cpu --tiny       # a smoke run of every code path

The encoder is made from an `XLMRobertaConfig` of XLM-R base's shape (12 layers, 768 wide, 12 heads,
3072 feed-forward, a 250,002-token vocabulary; no weights are downloaded) with SDPA attention, wrapped
in the project's `MultiTaskModel` with a 3-way classification head (XNLI's), and trained with the
pipeline's own optimizer (`trial.make_optimizer`: fused AdamW, warmup and decay) and step
(`trial.train_step`: clipping, scheduler), the encoder under bf16 autocast as the pipeline
runs it on a GPU (`precision: auto`: `MultiTaskModel`'s `autocast_dtype`), on full batches of random
tokens of `--seq-length` (every token real). Measured: tokens/s after `--warmup-steps`, and MFU =
FLOPs / (seconds x peak), with FLOPs per step = 6 N T + 12 L S d T (N the parameters without the
embeddings, T the tokens of the step, L layers, S the sequence length, d the width: the attention
scores and their weighting, forward and backward), with and without `torch.compile`.

Packing: 1, 2 and 4 trials on one GPU as Ray tasks asking for `num_gpus` 1.0, 0.5 and 0.25, each
capping its CUDA memory to its fraction as the trainable does. The trials wait for each other after
their warmup steps, so that they are timed over the same window, and the aggregate tokens/s is
every trial's tokens over the time from the first one's start to the last one's end, against one
trial alone; the table gives each trial's peak memory against its share.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass
from typing import Any

# Dense bf16 peaks, by a part of the device's name; the first that matches counts.
PEAK_TFLOPS = {"H100 PCIe": 756.0, "H100": 989.0, "H200": 989.0, "A100": 312.0, "L4": 121.0}


def build(device: str, tiny: bool) -> Any:
    """The base-shaped (or, with `tiny`, a 2-layer 64-wide) encoder in a MultiTaskModel."""
    import torch
    from transformers import AutoModel, XLMRobertaConfig

    from xlt_search.trial import MultiTaskModel

    shape = (
        dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128)
        if tiny
        else dict(
            hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072
        )
    )
    config = XLMRobertaConfig(vocab_size=250_002, max_position_embeddings=514, **shape)
    torch.manual_seed(0)
    encoder = AutoModel.from_config(config, attn_implementation="sdpa")
    return MultiTaskModel(encoder, {"xnli": ("classification", 3)}, torch.bfloat16).to(device)


def non_embedding_parameters(model: Any) -> int:
    """N of 6 N T: without the embeddings (looked up, not multiplied) and the pooler (it runs on one
    token a sequence, and its output is not used)."""
    return sum(
        p.numel()
        for name, p in model.named_parameters()
        if "embeddings" not in name and "pooler" not in name
    )


@dataclass(frozen=True)
class Settings:
    device: str
    tiny: bool
    batch_size: int
    seq_length: int
    steps: int
    warmup_steps: int


def train(
    run: Settings, compiled: bool, memory_fraction: float = 1.0, barrier: Any = None
) -> dict[str, float]:
    """Train `run.steps` optimizer steps, timing those after the warmup (from when every trial
    waiting on `barrier`, if given, has warmed up); returns tokens/s, FLOPs/s, peak and share of
    the GPU's memory (GiB), the tokens timed and the wall-clock start and end of the timing."""
    import torch

    from xlt_search.trial import make_optimizer, train_step

    device, batch_size, seq_length = run.device, run.batch_size, run.seq_length
    steps, warmup_steps = run.steps, run.warmup_steps

    if device == "cuda" and memory_fraction < 1.0:
        torch.cuda.set_per_process_memory_fraction(memory_fraction)
    model = build(device, run.tiny)
    if compiled:
        model.encoder = torch.compile(model.encoder)
    optimizer, scheduler = make_optimizer(model, 5e-5, 0.01, 0.1, steps)
    generator = torch.Generator().manual_seed(0)
    vocab = model.encoder.config.vocab_size
    batch = {
        "input_ids": torch.randint(5, vocab, (batch_size, seq_length), generator=generator),
        "attention_mask": torch.ones(batch_size, seq_length, dtype=torch.long),
        "labels": torch.randint(0, 3, (batch_size,), generator=generator),
    }
    batch = {key: value.to(device) for key, value in batch.items()}

    def synchronize() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    for _ in range(warmup_steps):
        train_step(model, "xnli", batch, optimizer, scheduler)
    synchronize()
    if barrier is not None:
        import ray

        ray.get(barrier.wait.remote())
    started_at, started = time.time(), time.perf_counter()
    for _ in range(steps - warmup_steps):
        train_step(model, "xnli", batch, optimizer, scheduler)
    synchronize()
    seconds = time.perf_counter() - started
    tokens = (steps - warmup_steps) * batch_size * seq_length
    config = model.encoder.config if not compiled else model.encoder._orig_mod.config
    flops = tokens * (
        6 * non_embedding_parameters(model)
        + 12 * config.num_hidden_layers * seq_length * config.hidden_size
    )
    cuda = device == "cuda"
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
    memory = torch.cuda.get_device_properties(0).total_memory / 2**30 if cuda else float("nan")
    return {
        "tokens_per_s": tokens / seconds,
        "flops_per_s": flops / seconds,
        "peak_gib": peak,
        "share_gib": memory_fraction * memory,
        "tokens": tokens,
        "started": started_at,
        "ended": started_at + seconds,
    }


def peak_flops(device: str, override: float | None) -> float | None:
    """The device's dense bf16 peak in FLOP/s (from its name, or `override` TFLOP/s)."""
    if override is not None:
        return override * 1e12
    if device != "cuda":
        return None
    import torch

    name = torch.cuda.get_device_name()
    return next((tf * 1e12 for key, tf in PEAK_TFLOPS.items() if key in name), None)


class Barrier:
    """Ray actor: `wait` returns once `parties` callers have called it."""

    def __init__(self, parties: int) -> None:
        self.parties, self.arrived, self.everyone = parties, 0, asyncio.Event()

    async def wait(self) -> None:
        self.arrived += 1
        if self.arrived == self.parties:
            self.everyone.set()
        await self.everyone.wait()


def packed(run: Settings, trials: int) -> list[dict[str, float]]:
    """`trials` copies of `train` at once, each a Ray task with 1/trials of the GPU."""
    import ray

    share = 1.0 / trials
    barrier = ray.remote(num_cpus=0)(Barrier).remote(trials)
    remote = ray.remote(num_gpus=share if run.device == "cuda" else 0, num_cpus=0)(train)
    return ray.get([remote.remote(run, False, share, barrier) for _ in range(trials)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="a 2-layer encoder: a smoke run")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seq-length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup-steps", type=int, default=10)
    parser.add_argument("--peak-tflops", type=float, help="default: from the GPU's name")
    parser.add_argument("--packing", type=int, nargs="*", default=[1, 2, 4])
    args = parser.parse_args()
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            parser.error("no CUDA device here: use --device cpu --tiny for a smoke run")
        print(f"device: {torch.cuda.get_device_name()}")
    peak = peak_flops(args.device, args.peak_tflops)
    run = Settings(
        args.device, args.tiny, args.batch_size, args.seq_length, args.steps, args.warmup_steps
    )

    print("single trial, batch", args.batch_size, "x", args.seq_length, "tokens")
    print(f"{'torch.compile':>13}  {'tokens/s':>10}  {'TFLOP/s':>8}  {'MFU':>6}  {'peak GiB':>8}")
    for compiled in (False, True):
        found = train(run, compiled)
        mfu = f"{found['flops_per_s'] / peak:.1%}" if peak else "n/a"
        print(
            f"{'yes' if compiled else 'no':>13}  {found['tokens_per_s']:>10.0f}  "
            f"{found['flops_per_s'] / 1e12:>8.2f}  {mfu:>6}  {found['peak_gib']:>8.2f}"
        )

    import ray

    ray.init(log_to_driver=False, configure_logging=False)
    print("packed trials (Ray tasks with fractional GPUs, no torch.compile)")
    print(
        f"{'trials':>6}  {'share':>5}  {'aggregate tokens/s':>18}  {'x one':>6}  "
        f"{'share GiB':>9}  {'peak GiB each':>13}"
    )
    alone = None
    for trials in args.packing:
        results = packed(run, trials)
        window = max(r["ended"] for r in results) - min(r["started"] for r in results)
        total = sum(r["tokens"] for r in results) / window
        alone = alone or total
        peaks = ", ".join(f"{r['peak_gib']:.1f}" for r in results)
        print(
            f"{trials:>6}  {1 / trials:>5.2f}  {total:>18.0f}  {total / alone:>6.2f}  "
            f"{results[0]['share_gib']:>9.1f}  {peaks:>13}"
        )


if __name__ == "__main__":
    main()
