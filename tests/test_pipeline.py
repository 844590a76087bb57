"""One trial end to end: the report schedule, golden determinism, exact resume, divergence.

The toy world's tiny trials check the mechanics; the synthetic suite's trials check that the pipeline
learns what the world plants (see the end of the file).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch
from conftest import ToyWorld

from xlt_search.data import PreparedData, SplitRequest, eval_batches, prepare_data
from xlt_search.errors import TrialDiverged
from xlt_search.trial import (
    STATE_FILE,
    MultiTaskModel,
    TargetConfig,
    TrialConfig,
    evaluate,
    load_encoder,
    required_splits,
    run_trial,
)

TOY_LANGS = ("en", "ta", "tb")
TOY_TARGETS = (TargetConfig("toy_nli", TOY_LANGS), TargetConfig("toy_copa_via_choice", TOY_LANGS))
TOY_POOL = ("toy_choice4", "toy_nli", "toy_qa", "toy_tags")  # every kind


@pytest.fixture(scope="module")
def toy_data(toy_world: ToyWorld, tmp_path_factory: pytest.TempPathFactory) -> PreparedData:
    targets = (*TOY_TARGETS, TargetConfig("toy_qa", TOY_LANGS))
    return prepare_data(
        required_splits(TOY_POOL, targets, registry=toy_world.tasks),
        str(toy_world.encoder),
        max_seq_length=32,
        max_train_examples=None,
        cache_dir=tmp_path_factory.mktemp("prepared"),
        seed=0,
        registry=toy_world.tasks,
        languages=toy_world.languages,
    )


def toy_config(world: ToyWorld, **changes: object) -> TrialConfig:
    config = TrialConfig(
        model=str(world.encoder),
        tasks=TOY_POOL,
        targets=TOY_TARGETS,
        intermediate_steps=12,
        target_steps=8,
        report_every_steps=6,
        probe_steps=3,
        learning_rate=1e-3,
        per_device_batch_size=8,
    )
    return dataclasses.replace(config, **changes)


class Recorder:
    """A reporter that keeps every report and, when given a folder, every checkpoint."""

    def __init__(self, folder: Path | None = None) -> None:
        self.reports: list[dict[str, float]] = []
        self.folder = folder

    def __call__(self, metrics: dict[str, float], save_state) -> None:  # noqa: ANN001
        self.reports.append(metrics)
        if self.folder is not None:
            save_state(self.folder / str(len(self.reports) - 1))


def run(config: TrialConfig, data: PreparedData, **kw: object) -> Recorder:
    recorder = Recorder(kw.pop("folder", None))  # type: ignore[arg-type]
    final = run_trial(config, data, recorder, **kw)  # type: ignore[arg-type]
    assert final == recorder.reports[-1]
    return recorder


@pytest.fixture(scope="module")
def reference(toy_world: ToyWorld, toy_data: PreparedData, tmp_path_factory) -> Recorder:  # noqa: ANN001
    """The uninterrupted toy trial, with a checkpoint at every report."""
    return run(toy_config(toy_world), toy_data, folder=tmp_path_factory.mktemp("checkpoints"))


def test_required_splits_cover_subset_targets_and_their_training_data(toy_world: ToyWorld) -> None:
    requests = required_splits(("toy_tags",), TOY_TARGETS, registry=toy_world.tasks)
    assert requests == [
        SplitRequest("toy_tags", "train", "en"),
        SplitRequest("toy_nli", "train", "en"),
        *[SplitRequest("toy_nli", "validation", lang) for lang in TOY_LANGS],
        SplitRequest("toy_choice4", "train", "en"),
        SplitRequest("toy_copa", "train", "en"),
        *[SplitRequest("toy_copa_via_choice", "validation", lang) for lang in TOY_LANGS],
    ]


def test_reports_follow_the_budget_axis(reference: Recorder) -> None:
    reports = reference.reports
    # probes at 6 and 12 (the intermediate phase), then the targets in lockstep: 12 + 2 x 8 = 28
    assert [r["budget_steps"] for r in reports] == [6, 12, 18, 24, 28]
    assert [r["phase"] for r in reports] == [0, 0, 1, 1, 1]
    assert [r["final"] for r in reports] == [0, 0, 0, 0, 1]
    last = reports[-1]
    for target in ("toy_nli", "toy_copa_via_choice"):
        for lang in TOY_LANGS:
            assert 0 <= last[f"lang.{target}.{lang}"] <= 1
        transfer = [last[f"lang.{target}.{lang}"] for lang in ("ta", "tb")]
        assert last[f"score.{target}"] == pytest.approx(sum(transfer) / 2)
    assert last["score"] == pytest.approx(
        (last["score.toy_nli"] + last["score.toy_copa_via_choice"]) / 2
    )
    assert last["family.toy-close"] == pytest.approx(
        (last["lang.toy_nli.ta"] + last["lang.toy_copa_via_choice.ta"]) / 2
    )
    assert "family.english" not in last
    assert all(math.isfinite(r["loss"]) and r["loss"] > 0 for r in reports)


# The toy trial's training losses at its five reports; a change here is a change in the numerics.
GOLDEN_LOSSES = [1.38664, 1.57642, 1.42385, 1.11416, 0.8773]


def test_losses_match_the_golden_values(reference: Recorder) -> None:
    assert [r["loss"] for r in reference.reports] == pytest.approx(GOLDEN_LOSSES, rel=1e-3)


def test_same_seed_same_trial_other_seed_other_trial(
    toy_world: ToyWorld, toy_data: PreparedData, reference: Recorder
) -> None:
    assert run(toy_config(toy_world), toy_data).reports == reference.reports
    other = run(toy_config(toy_world, seed=1), toy_data).reports
    assert [r["loss"] for r in other] != [r["loss"] for r in reference.reports]


@pytest.mark.parametrize(
    "checkpoint", [0, 1, 2, 3], ids=["mid-intermediate", "end-intermediate", "mid-target", "late"]
)
def test_resumed_trial_equals_uninterrupted(
    toy_world: ToyWorld, toy_data: PreparedData, reference: Recorder, checkpoint: int
) -> None:
    folder = reference.folder / str(checkpoint)
    assert (folder / STATE_FILE).is_file()
    resumed = run(toy_config(toy_world), toy_data, resume_from=folder)
    assert resumed.reports == reference.reports[checkpoint + 1 :]


def test_resuming_a_finished_trial_returns_its_final_metrics(
    toy_world: ToyWorld, toy_data: PreparedData, reference: Recorder
) -> None:
    recorder = Recorder()
    final = run_trial(toy_config(toy_world), toy_data, recorder, resume_from=reference.folder / "4")
    assert final == reference.reports[-1] and recorder.reports == []


def test_target_checkpoints_keep_the_intermediate_encoder(
    toy_world: ToyWorld, toy_data: PreparedData, reference: Recorder, tmp_path: Path
) -> None:
    # Report 1 ends the intermediate phase (step 12): its encoder is in every later checkpoint,
    # those of a trial resumed in the target phase included.
    def state(index: int, folder: Path = reference.folder) -> dict:
        return torch.load(folder / str(index) / STATE_FILE, weights_only=True)

    prefix = "encoder."
    left = {k[len(prefix) :]: v for k, v in state(1)["model"].items() if k.startswith(prefix)}
    run(toy_config(toy_world), toy_data, resume_from=reference.folder / "2", folder=tmp_path)
    for kept in [state(i)["intermediate_encoder"] for i in (2, 3, 4)] + [
        state(1, tmp_path)["intermediate_encoder"]  # the resumed trial's last report
    ]:
        assert kept.keys() == left.keys()
        assert all(torch.equal(kept[key], left[key]) for key in left)
    trained = state(4)["models"]["toy_nli"]  # the fine-tune moved on from it
    key = "embeddings.word_embeddings.weight"
    assert not torch.equal(trained[prefix + key], left[key])


def test_a_checkpoint_of_other_settings_is_refused(
    toy_world: ToyWorld, toy_data: PreparedData, reference: Recorder
) -> None:
    with pytest.raises(ValueError, match="other settings.*learning_rate"):
        run_trial(
            toy_config(toy_world, learning_rate=2e-3),
            toy_data,
            Recorder(),
            resume_from=reference.folder / "1",
        )


def test_probes_never_change_the_training(
    toy_world: ToyWorld, toy_data: PreparedData, reference: Recorder
) -> None:
    # Other report points and probe lengths: other probes, same intermediate and target training.
    other = run(toy_config(toy_world, report_every_steps=4, probe_steps=5), toy_data).reports
    final, expected = other[-1], reference.reports[-1]
    assert {k: v for k, v in final.items() if k.startswith("lang.")} == {
        k: v for k, v in expected.items() if k.startswith("lang.")
    }


def test_no_subset_means_no_intermediate_phase(toy_world: ToyWorld, toy_data: PreparedData) -> None:
    reports = run(toy_config(toy_world, tasks=()), toy_data).reports
    assert [r["budget_steps"] for r in reports] == [6, 12, 16]
    assert {r["phase"] for r in reports} == {1}


def test_a_nan_loss_raises_trial_diverged(toy_world: ToyWorld, toy_data: PreparedData) -> None:
    with pytest.raises(TrialDiverged, match="nan|inf"):
        run_trial(toy_config(toy_world, learning_rate=1e30), toy_data, Recorder())


def test_bf16_autocasts_the_encoder_only_and_trains_like_fp32(
    toy_world: ToyWorld, toy_data: PreparedData, reference: Recorder
) -> None:
    assert toy_config(toy_world).autocast_dtype is None  # auto, on the CPU: fp32
    config = toy_config(toy_world, precision="bf16")
    assert config.autocast_dtype is torch.bfloat16

    heads = {"toy_nli": ("classification", 3)}
    model = MultiTaskModel(load_encoder(config.model), heads, config.autocast_dtype)
    seen = set()  # the dtypes the encoder's matrix multiplications give
    for module in model.encoder.modules():
        if isinstance(module, torch.nn.Linear):
            module.register_forward_hook(lambda m, a, out: seen.add(out.dtype))
    batch = eval_batches(toy_data.load("toy_nli", "validation", "en"), "classification", 1, 8)[0]
    loss, logits = model("toy_nli", batch)
    loss.backward()
    assert seen == {torch.bfloat16}
    assert loss.dtype == logits.dtype == torch.float32
    assert all(p.dtype == p.grad.dtype == torch.float32 for p in model.heads.parameters())

    # The same trial in bf16: other numerics, the same course.
    losses = [r["loss"] for r in run(config, toy_data).reports]
    assert losses != [r["loss"] for r in reference.reports]
    assert losses == pytest.approx([r["loss"] for r in reference.reports], rel=0.05)


def test_span_targets_and_tagging_heads_evaluate(
    toy_world: ToyWorld, toy_data: PreparedData
) -> None:
    config = toy_config(
        toy_world, tasks=("toy_tags",), targets=(TargetConfig("toy_qa", TOY_LANGS),)
    )
    last = run(config, toy_data).reports[-1]
    assert all(0 <= last[f"lang.toy_qa.{lang}"] <= 1 for lang in TOY_LANGS)
    # toy_qa scores by F1; exact match is reported beside it, and is never above F1
    for lang in TOY_LANGS:
        assert 0 <= last[f"lang.toy_qa.{lang}.exact_match"] <= last[f"lang.toy_qa.{lang}"]
    assert not any(key.endswith(".f1") for key in last)

    task = toy_world.tasks["toy_tags"]
    model = MultiTaskModel(load_encoder(str(toy_world.encoder)), {"toy_tags": ("tagging", 3)})
    batches = eval_batches(toy_data.load("toy_tags", "train", "en"), "tagging", 1, 64)
    assert 0 <= evaluate(model, "toy_tags", task, batches)[task.metric] <= 1


# The synthetic suite: the pipeline learns what the world plants.

# The quickstart budget; one report, the final one (no probes: only the final scores are checked).
SUITE_BUDGET = {"intermediate_steps": 400, "target_steps": 400, "report_every_steps": 1200}


@pytest.fixture(scope="module")
def suite_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, float]]:
    """Final metrics of a helpful-only and a conflicting-only trial at the quickstart budget."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XLT_SEARCH_CACHE", str(tmp_path_factory.mktemp("xlt_cache")))
        from xlt_search.synthetic import RELATEDNESS, SYNTHETIC_MODEL, resolve_model
        from xlt_search.tasks import REGISTRY
        from xlt_search.tasks.synthetic import DEFAULT_POOL

        targets = tuple(TargetConfig(key, REGISTRY[key].languages) for key in sorted(RELATEDNESS))

        def planted(relation: str, never: str) -> tuple[str, ...]:
            """The pool tasks that are `relation` for some target and `never` for none."""
            relations = {key: {RELATEDNESS[t.task][key] for t in targets} for key in DEFAULT_POOL}
            return tuple(
                key
                for key in sorted(DEFAULT_POOL)
                if relation in relations[key] and never not in relations[key]
            )

        subsets = {
            "helpful": planted("helpful", never="conflicting"),
            "conflicting": planted("conflicting", never="helpful"),
        }
        assert subsets["helpful"] and subsets["conflicting"]
        model = resolve_model(SYNTHETIC_MODEL)
        data = prepare_data(
            required_splits(subsets["helpful"] + subsets["conflicting"], targets),
            model,
            max_seq_length=32,
            max_train_examples=None,
            cache_dir=tmp_path_factory.mktemp("suite_prepared"),
            seed=0,
        )
        return {
            name: run_trial(
                TrialConfig(model, tasks, targets, probe_steps=0, **SUITE_BUDGET),
                data,
                lambda metrics, save_state: None,
            )
            for name, tasks in subsets.items()
        }


def _chance(target: str) -> float:
    from xlt_search.tasks import REGISTRY

    return 1 / REGISTRY[target].num_labels


def _suite_targets() -> list[str]:
    from xlt_search.synthetic import RELATEDNESS

    return sorted(RELATEDNESS)


def test_suite_english_accuracy_is_well_above_chance(suite_runs: dict) -> None:
    final = suite_runs["helpful"]
    for target in _suite_targets():
        assert final[f"lang.{target}.en"] > _chance(target) + 0.15, (target, final)


def test_suite_zero_shot_is_above_chance_and_close_beats_far(suite_runs: dict) -> None:
    from xlt_search.tasks import LANGUAGES

    final = suite_runs["helpful"]
    for target in _suite_targets():
        assert final[f"score.{target}"] > _chance(target) + 0.03, (target, final)
        by_family: dict[str, list[float]] = {}
        for key, value in final.items():
            if key.startswith(f"lang.{target}.") and not key.endswith(".en"):
                by_family.setdefault(LANGUAGES[key.rsplit(".", 1)[1]].family, []).append(value)
        close, far = (
            sum(v) / len(v) for v in (by_family["synthetic-close"], by_family["synthetic-far"])
        )
        assert close > far, (target, by_family)
    assert final["family.synthetic-close"] > final["family.synthetic-far"]


def test_suite_helpful_subset_beats_conflicting_subset(suite_runs: dict) -> None:
    helpful, conflicting = suite_runs["helpful"]["score"], suite_runs["conflicting"]["score"]
    assert helpful > conflicting + 0.02, (helpful, conflicting)


@pytest.mark.parametrize("kind", ["rs_rp", "adversarial"])
def test_robust_training_changes_the_trial_repeats_from_its_seed_and_resumes_exactly(
    toy_world: ToyWorld, toy_data: PreparedData, reference: Recorder, tmp_path: Path, kind: str
) -> None:
    config = toy_config(toy_world, robust_training=kind, robust_epsilon=0.5, robust_phases="all")
    robust = run(config, toy_data, folder=tmp_path)
    assert all(math.isfinite(r["loss"]) for r in robust.reports)
    # Both phases train otherwise than plain training does: the losses differ from the first report.
    assert [r["loss"] for r in robust.reports][0] != reference.reports[0]["loss"]
    assert [r["loss"] for r in robust.reports][-1] != reference.reports[-1]["loss"]
    assert run(config, toy_data).reports == robust.reports
    resumed = run(config, toy_data, resume_from=tmp_path / "2")  # mid-target
    assert resumed.reports == robust.reports[3:]
