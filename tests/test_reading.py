"""Reading the quickstart search: its report recovers the synthetic suite's planted relatedness,
the notebook runs against it headless, and the MLflow UI lists its trials in a real browser."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import FinishedSearch
from processes import MlflowServer

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "reading_a_search.ipynb"


def report_folder(search: FinishedSearch) -> Path:
    (folder,) = (search.work / "xlt_runs").glob("quickstart-*/report")
    return folder


def test_contributions_recover_the_planted_relatedness(quickstart_search: FinishedSearch) -> None:
    table = pd.read_csv(report_folder(quickstart_search) / "contributions.csv")
    assert set(table["planted"]) == {"helpful", "neutral", "conflicting"}
    # the report's ranking (by Shapley value): a helpful task first, the conflicting one last
    assert table["planted"].iloc[0] == "helpful" and table["planted"].iloc[-1] == "conflicting"
    for estimator in ("effect", "shapley"):
        ranked = table.sort_values(estimator, ascending=False)["planted"].tolist()
        assert ranked[0] == "helpful" and "conflicting" in ranked[-2:], (estimator, ranked)
        means = table.groupby("planted")[estimator].mean()
        assert means["helpful"] > means["neutral"] > means["conflicting"], (estimator, means)
    # one seed and 26 trials tell few tasks apart from zero: those the report does tell apart
    # are planted, with the planted sign, and no neutral task is among them
    told = table[table["distinguishable"].str.startswith(("yes", "from zero"))]
    assert len(told), table[["task", "effect", "effect_low", "effect_high"]]
    for _, row in told.iterrows():
        sign = {"helpful": 1, "conflicting": -1}.get(row["planted"], 0)
        assert sign * row["effect"] > 0, row


def test_curves_have_intervals_per_target_and_family_and_a_baseline(
    quickstart_search: FinishedSearch,
) -> None:
    folder = report_folder(quickstart_search)
    table = pd.read_csv(folder / "scaling_curve.csv")
    assert set(table["curve"]) == {
        "score",
        "score.syn_nli",
        "score.syn_copa",
        "family.synthetic-close",
        "family.synthetic-far",
    }
    for _, curve in table.groupby("curve"):
        assert curve["n_tasks"].tolist() == list(range(0, 10))
        baseline = curve.iloc[0]
        assert baseline["completed"] == 1 and baseline["gain"] == 0.0
        assert curve["early_stopped"].sum() > 0
        sized = curve[curve["completed"] >= 2]
        assert len(sized) and (sized["ci_low"] <= sized["mean"]).all()
        assert (sized["mean"] <= sized["ci_high"]).all()
    average = table[table["curve"] == "score"]
    # the intermediate tasks help on average: completed subsets beat plain fine-tuning
    assert (average.loc[average["n_tasks"] > 0, "gain"].dropna() > 0).mean() > 0.5
    summary = (folder / "summary.md").read_text()
    assert "| 0 (baseline) | 1 | 1 | 0 |" in summary
    gains = pd.read_csv(folder / "gains.csv")
    assert len(gains) == 9 * 2 * 5  # tasks x targets x languages (English among them)
    close = gains[gains["family"] == "synthetic-close"]
    assert set(close["language"]) == {"xc1", "xc2"}
    assert (folder / "gains_heatmap.png").read_bytes()[:4] == b"\x89PNG"


def test_the_report_measures_agreement_across_the_two_targets_and_says_one_seed_cannot(
    quickstart_search: FinishedSearch,
) -> None:
    folder = report_folder(quickstart_search)
    (pair,) = pd.read_csv(folder / "target_agreement.csv").to_dict("records")
    assert {pair["target_a"], pair["target_b"]} == {"syn_nli", "syn_copa"}
    assert pair["tau_low"] <= pair["tau"] <= pair["tau_high"]
    assert pair["configurations"] >= 10  # the completed configurations, the baseline among them
    summary = (folder / "summary.md").read_text()
    assert "Not measured: every configuration ran with one seed" in summary
    tasks = pd.read_csv(folder / "task_targets.csv")
    assert len(tasks) == 9 * 2 and tasks["class"].notna().all()
    assert (folder / "rank_agreement.png").read_bytes()[:4] == b"\x89PNG"


def test_the_notebook_runs_headless_against_the_search(quickstart_search: FinishedSearch) -> None:
    import nbclient
    import nbformat

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    (parameters,) = [c for c in notebook.cells if "EXPERIMENT =" in c.source]
    parameters.source = (
        f'EXPERIMENT = "quickstart"\nTRACKING_URI = "{quickstart_search.uri}"\nRUN_ID = None'
    )
    client = nbclient.NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(quickstart_search.work)}},
    )
    client.execute()
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "\n".join(
        o.get("text", "") + str(o.get("data", {}).get("text/plain", "")) for o in outputs
    )
    assert "26 trials of spec 'quickstart'" in text
    assert "syn_stance" in text and "conflicting" in text
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 3  # the curves, the contributions, the heatmap


CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="needs Debian's chromium and chromium-driver (.ci/run installs them)",
)
def test_the_mlflow_ui_lists_the_trials_with_their_params(
    quickstart_search: FinishedSearch, tmp_path: Path
) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    server = MlflowServer(quickstart_search.work)
    server.start()
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1600,1000",
    ):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        import mlflow

        experiment = mlflow.MlflowClient(server.uri).get_experiment_by_name("quickstart")
        page = f"{server.uri}/#/experiments/{experiment.experiment_id}/runs"

        def body_once(text: str) -> str:
            """The page's text once it shows `text` (the UI fills in as its requests return)."""
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                body = browser.find_element(By.TAG_NAME, "body").text
                if text in body:
                    return body
                time.sleep(0.5)
            raise AssertionError(f"the page never showed {text!r}: {body[-2000:]}")

        browser.get(page)
        body_once("27 matching runs")  # the search and its 26 trials
        # filtered on the subset size, as the README shows: the three trials of size 3 (with
        # their search, which the table nests them under), then the search's row opened
        browser.get(page + "?searchFilter=params.n_tasks%20%3D%20%223%22")
        body_once("4 matching runs")
        browser.find_element(
            By.CSS_SELECTOR, "button[data-component-id$='runnamecellrenderer.tsx_46']"
        ).click()
        body_once("k3-")
        links = browser.find_elements(By.CSS_SELECTOR, "a[href*='/runs/']")
        trials = [link for link in links if link.text.startswith("k")]
        assert len(trials) == 3 and all(link.text.startswith("k3-") for link in trials)
        browser.save_screenshot(str(tmp_path / "runs.png"))
        # a trial's own page lists its params: the subset, its size, one flag per pool task
        chosen = trials[0].text.removeprefix("k3-").split("+")
        browser.get(trials[0].get_attribute("href"))
        lines = body_once("use.syn_stance").splitlines()
        assert "n_tasks" in lines and "tasks" in lines
        flags = [line for line in lines if line.startswith("use.syn_")]
        assert len(flags) == 9 and {f"use.{task}" for task in chosen} <= set(flags)
    finally:
        browser.quit()
        server.stop()
