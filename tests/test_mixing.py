"""Mixed-language instances: the row alignment's rules on parallel copies with planted
misalignments, the cells' parts, their preparation and a trial's matrix, and the gap's reading
on matrices with a known answer."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import datasets
import pandas as pd
import pytest
from conftest import ToyWorld

from xlt_search.analysis.mixed import gaps
from xlt_search.data import DataError, prepare_data
from xlt_search.data.mixing import align, describe, mixed_cell
from xlt_search.names import mixed_metric
from xlt_search.tasks.base import Task
from xlt_search.trial import TargetConfig, TrialConfig, required_splits, run_trial

PAIR = Task(
    "pair", "classification", (), {"text_a": "a", "text_b": "b", "label": "y"}, 2, "accuracy"
)
CHOICE = Task(
    "choice", "multiple_choice", (), {"context": "c", "choices": "o", "label": "y"}, 2, "accuracy"
)
SPAN = Task("span", "span", (), {"context": "c", "question": "q", "answers": "s"}, 2, "f1")


def parallel(languages: tuple[str, ...], rows: int = 6) -> dict[str, datasets.Dataset]:
    """Pair-classification rows that are translations of each other, canonical columns."""
    return {
        lang: datasets.Dataset.from_list(
            [
                {"text_a": f"{lang}-a{i}", "text_b": f"{lang}-b{i}", "label": i % 2, "id": f"r{i}"}
                for i in range(rows)
            ]
        )
        for lang in languages
    }


def with_row(split: datasets.Dataset, index: int, **changes: object) -> datasets.Dataset:
    rows = split.to_list()
    rows[index] = {**rows[index], **changes}
    return datasets.Dataset.from_list(rows)


def test_a_changed_label_drops_its_instance_from_every_cell_and_is_counted() -> None:
    splits = parallel(("en", "de", "zh"))
    splits["de"] = with_row(splits["de"], 2, label=1 - splits["de"][2]["label"])
    alignment = align(PAIR, splits)
    counts = alignment.counts()
    assert counts["by"] == "position" and counts["kept"] == 5 and counts["label"] == 1
    assert counts["missing"] == {"en": 0, "de": 0, "zh": 0}
    assert "5 instances aligned by position" in describe("pair", counts)
    assert "1 with labels that differ" in describe("pair", counts)
    cell = mixed_cell(PAIR, splits, alignment, "en", "zh")
    assert cell["text_a"] == [f"en-a{i}" for i in (0, 1, 3, 4, 5)]  # text_a from l1
    assert cell["text_b"] == [f"zh-b{i}" for i in (0, 1, 3, 4, 5)]  # text_b from l2
    assert cell["label"] == [i % 2 for i in (0, 1, 3, 4, 5)]
    diagonal = mixed_cell(PAIR, splits, alignment, "de", "de")  # the same instances
    assert diagonal["text_b"] == [f"de-b{i}" for i in (0, 1, 3, 4, 5)]


def test_a_missing_row_is_dropped_by_id_and_refused_by_position() -> None:
    splits = parallel(("en", "de"))
    rows = splits["de"].to_list()
    del rows[4]
    splits["de"] = datasets.Dataset.from_list(rows[::-1])  # reordered too: ids, not positions
    with pytest.raises(DataError) as refused:
        align(PAIR, splits)
    line = str(refused.value)
    assert "\n" not in line
    assert "different counts (en 6, de 5)" in line and "tasks.pair.columns.id" in line
    keyed = dataclasses.replace(PAIR, columns={**PAIR.columns, "id": "id"})
    alignment = align(keyed, splits)
    counts = alignment.counts()
    assert counts["by"] == "id" and counts["kept"] == 5
    assert counts["missing"] == {"en": 1, "de": 0} and counts["label"] == 0
    cell = mixed_cell(keyed, splits, alignment, "en", "de")
    assert cell["text_b"] == [f"de-b{i}" for i in (0, 1, 2, 3, 5)]  # matched by id
    assert "en 1 without a partner" in describe("pair", counts)


def test_choices_and_questions_come_from_the_second_language_answers_from_the_first() -> None:
    choice = {
        lang: datasets.Dataset.from_list(
            [
                {"context": f"{lang}-c{i}", "choices": [f"{lang}-x{i}", f"{lang}-y{i}"], "label": 1}
                for i in range(3)
            ]
        )
        for lang in ("en", "et")
    }
    choice["et"] = with_row(choice["et"], 0, choices=["only one"])  # a choice missing
    alignment = align(CHOICE, choice)
    assert alignment.counts()["label"] == 1
    cell = mixed_cell(CHOICE, choice, alignment, "en", "et")
    assert cell["context"] == ["en-c1", "en-c2"] and cell["choices"][0] == ["et-x1", "et-y1"]
    span = {
        lang: datasets.Dataset.from_list(
            [
                {
                    "context": f"{lang} ctx {i}",
                    "question": f"{lang} q{i}",
                    "answers": {"text": [f"ctx {i}"], "answer_start": [len(lang) + 1]},
                }
                for i in range(3)
            ]
        )
        for lang in ("en", "de")
    }
    cell = mixed_cell(SPAN, span, align(SPAN, span), "de", "en")
    assert cell["context"] == [f"de ctx {i}" for i in range(3)]
    assert cell["question"] == [f"en q{i}" for i in range(3)]
    assert cell["answers"][0] == {"text": ["ctx 0"], "answer_start": [3]}  # the context's


def test_a_trial_reports_every_cell_once_from_cells_prepared_once(
    toy_world: ToyWorld, tmp_path: Path
) -> None:
    languages = ("en", "ta", "tb")
    target = TargetConfig("toy_nli", languages, mixed_languages=languages)
    requests = required_splits((), (target,), registry=toy_world.tasks)
    lines: list[str] = []

    def prepare() -> object:
        return prepare_data(
            requests,
            str(toy_world.encoder),
            32,
            None,
            tmp_path,
            0,
            registry=toy_world.tasks,
            languages=toy_world.languages,
            progress=lines.append,
        )

    data = prepare()
    assert len(data.mixed) == 9 and not set(data.mixed) & set(data.splits)
    counts = data.alignments["toy_nli"]
    # Equal counts, aligned by position; the toy's rows are no translations: labels disagree.
    assert counts["by"] == "position" and counts["label"] > 0
    assert counts["kept"] + counts["label"] == counts["examples"]["en"]
    assert sum("mixed 9 cells of toy_nli" in line for line in lines) == 1
    lines.clear()
    assert prepare().mixed == data.mixed and not any("mixed" in line for line in lines)

    config = TrialConfig(str(toy_world.encoder), (), (target,), 0, 10, 5, 2, num_threads=1)
    reports: list[dict[str, float]] = []
    final = run_trial(config, data, lambda metrics, save: reports.append(metrics))
    assert all(not any(k.startswith("mixed.") for k in r) for r in reports[:-1])
    cells = {
        f"{a}-{b}": final[mixed_metric("toy_nli", f"{a}-{b}")] for a in languages for b in languages
    }
    assert all(0.0 <= value <= 1.0 for value in cells.values())
    diagonal = sum(cells[f"{a}-{a}"] for a in languages) / 3
    off = sum(v for k, v in cells.items() if k.split("-")[0] != k.split("-")[1]) / 6
    assert final[mixed_metric("toy_nli", "diagonal")] == pytest.approx(diagonal)
    assert final[mixed_metric("toy_nli", "gap")] == pytest.approx(diagonal - off)
    # The alignment diagnostic: English against each other mixed language, at the final report
    assert all(not any(k.startswith("align.") for k in r) for r in reports[:-1])
    aligned = {k for k in final if k.startswith("align.")}
    assert aligned == {"align.ta", "align.tb", "align.ta.before", "align.tb.before"}
    assert all(0.0 <= final[k] <= 1.0 for k in aligned)


FAMILIES = {"en": "english", "c1": "close", "c2": "close", "f1": "far", "f2": "far"}


def grid(cell: object) -> pd.DataFrame:
    codes = list(FAMILIES)
    return pd.DataFrame([[cell(a, b) for b in codes] for a in codes], index=codes, columns=codes)


def test_the_gap_finds_a_planted_same_language_advantage_of_the_far_family() -> None:
    ease = {"en": 0.8, "c1": 0.7, "c2": 0.7, "f1": 0.5, "f2": 0.5}

    def cell(a: str, b: str) -> float:  # parts read independently, plus a far mix's cost
        far_mix = a != b and "far" in (FAMILIES[a], FAMILIES[b])
        return (ease[a] + ease[b]) / 2 - (0.15 if far_mix else 0.0)

    found = {row["group"]: row for row in gaps(grid(cell), FAMILIES, examples=2000)}
    assert found["with far"]["gap"] > 0.1 and found["with far"]["verdict"] == "same language better"
    assert found["with far"]["gap"] > found["without far"]["gap"]
    assert found["all"]["ci_low"] > 0


def test_parts_read_independently_leave_no_gap_and_the_report_cannot_tell() -> None:
    ease = {"en": 0.8, "c1": 0.7, "c2": 0.65, "f1": 0.5, "f2": 0.45}
    found = gaps(grid(lambda a, b: (ease[a] + ease[b]) / 2), FAMILIES, examples=400)
    overall = next(row for row in found if row["group"] == "all")
    assert math.isclose(overall["gap"], 0.0, abs_tol=1e-12)  # additive: the gap cancels it
    assert overall["ci_low"] < 0 < overall["ci_high"] and overall["verdict"] == "cannot tell"
