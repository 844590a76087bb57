"""The devices a search's bill prices it on: the table in `devices.yaml` beside this module.

The CPU row is measured (benchmarks/device_rates.py); a GPU row is its datasheet's peak times an
MFU the table assumes and states. No Ray, no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from xlt_search.errors import UserError

DEVICES_FILE = Path(__file__).with_name("devices.yaml")
CPU = "cpu"


@dataclass(frozen=True)
class Device:
    """A row of the device table: what a trial's steps, evaluations and FLOPs cost on it."""

    name: str
    source: str  # measured or assumed
    described: str  # where the row comes from, as the bill prints it
    flops_per_s: float  # per trial on a CPU core; the whole device's, shared, on a GPU
    step_overhead_s: float
    eval_batch_overhead_s: float
    trial_overhead_s: float
    search_overhead_s: float
    memory_gb: float | None = None  # a GPU's; None: the machine's memory, not checked

    @property
    def shared(self) -> bool:
        """Whether trials packed on the device share its FLOP rate (a GPU)."""
        return self.memory_gb is not None


def load_devices(precision: str = "auto", path: Path = DEVICES_FILE) -> dict[str, Device]:
    """The device table; a GPU's rate is its bf16 peak times the MFU, its fp32 peak under fp32."""
    table = yaml.safe_load(path.read_text())
    cpu, gpu = table[CPU], table["gpu"]
    overheads = {k: float(cpu[k]) for k in ("trial_overhead_s", "search_overhead_s")}
    found = {
        CPU: Device(
            CPU,
            cpu["source"],
            f"{CPU}, {cpu['source']} {cpu['date']} by `{cpu['command']}`",
            *(float(cpu[k]) for k in ("flops_per_s", "step_overhead_s", "eval_batch_overhead_s")),
            **overheads,
        )
    }
    for name, row in table["gpus"].items():
        peak = row["peak_fp32_tflops" if precision == "fp32" else "peak_bf16_tflops"]
        found[name] = Device(
            name,
            gpu["source"],
            f"{row['note']}, {gpu['source']}: {peak:g} TFLOP/s peak x MFU {gpu['mfu']:.0%}",
            peak * 1e12 * gpu["mfu"],
            gpu["step_overhead_s"],
            gpu["eval_batch_overhead_s"],
            **overheads,
            memory_gb=row["memory_gb"],
        )
    return found


def get_device(name: str, precision: str = "auto") -> Device:
    """The device `--on` names (any case), or one line naming the known ones."""
    found = load_devices(precision)
    by_case = {key.lower(): device for key, device in found.items()}
    if name.lower() not in by_case:
        raise UserError(f"--on {name}: unknown device; known: {', '.join(found)}")
    return by_case[name.lower()]
