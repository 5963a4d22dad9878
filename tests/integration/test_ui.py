"""The MLflow UI of a finished study, in a real headless Chromium (Debian's, driven by Playwright):
the parent run, its child runs, and a child run's val_acc chart, as a person browsing would see them.
A screenshot is left in results/test-artifacts/mlflow-ui.png."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.paths import ROOT

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = ROOT / "results" / "test-artifacts"
TIMEOUT_MS = 90_000  # a cold UI bundle on a busy 2-core machine takes tens of seconds


@pytest.fixture
def page():
    if not Path(CHROMIUM).exists():
        pytest.skip("Chromium is not installed (run: bash tools/system_deps.sh)")
    # Playwright is a test extra (make test installs it): skipped only where someone ran pytest bare
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (make test)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.set_default_timeout(TIMEOUT_MS)
            yield page
        finally:
            browser.close()


def test_mlflow_ui_shows_the_study_its_child_runs_and_a_metric_chart(server_smoke_study, page):
    from mlflow.tracking import MlflowClient

    from tests.integration.helpers import study_runs

    client = MlflowClient(server_smoke_study.tracking_uri)
    parent, children = study_runs(client, server_smoke_study.parent_run_id)
    parent_name = parent.data.tags["mlflow.runName"]
    child_names = sorted(c.data.tags["mlflow.runName"] for c in children)  # "f=0.8 seed=0 [<trial>-r0]"
    chosen = next(name for name in child_names if name.startswith("f=0.2 seed=0"))  # runs 1500 steps
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    try:
        page.goto(f"{server_smoke_study.tracking_uri}/#/experiments/{parent.info.experiment_id}/runs")
        parent_row = page.get_by_role("row").filter(has_text=parent_name).first
        parent_row.wait_for()
        # child runs are folded under their parent: the row's one button unfolds them
        parent_row.get_by_role("button").first.click()
        for name in child_names:
            page.get_by_role("link", name=name).first.wait_for()
        page.screenshot(path=SCREENSHOTS / "mlflow-ui-runs.png")

        page.get_by_role("link", name=chosen).first.click()
        page.get_by_role("heading", name=chosen).first.wait_for()
        page.get_by_role("tab", name="Model metrics").first.click()
        # a trial logs dozens of metrics in sections; the search box narrows the charts to one
        page.get_by_placeholder("Search metric charts").fill("val_acc")
        # the chart card of val_acc: its title, a plotly plot with a drawn line, its legend
        legend = page.get_by_text(f"{chosen} (val_acc)").first
        legend.wait_for()
        card = page.locator("div").filter(has=page.get_by_text("val_acc", exact=True)).filter(has=legend).last
        line = card.locator(".js-plotly-plot .scatterlayer path.js-line").first
        line.wait_for()
        assert len(line.get_attribute("d") or "") > 20  # a polyline through the evaluations, not empty
        ticks = card.locator(".js-plotly-plot .xtick text").all_text_contents()
        assert "1000" in ticks or "1k" in ticks, ticks  # the step axis reaches the evaluations' steps
    finally:
        page.screenshot(path=SCREENSHOTS / "mlflow-ui.png")


def test_from_the_home_page_to_the_study_runs_and_by_the_printed_link(server_smoke_study, page):
    """As a person starts: the MLflow home page, the sidebar's "Model training" (MLflow 3.17 keeps
    a global GenAI / Model training switch in the browser, GenAI by default, and it decides what an
    experiment opens on: the experiment's ``mlflow.experimentKind`` tag is set, but this UI reads the
    switch), the study's experiment clicked, its parent run listed. And the address ``grokray
    links`` prints (``make ui`` prints it) opens on the runs directly, whatever the switch says."""
    from mlflow.tracking import MlflowClient

    from grokray.tracking import study_links
    from tests.integration.helpers import study_runs

    client = MlflowClient(server_smoke_study.tracking_uri)
    parent, _ = study_runs(client, server_smoke_study.parent_run_id)
    parent_row = page.get_by_role("row").filter(has_text=parent.data.tags["mlflow.runName"]).first
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    try:
        page.goto(f"{server_smoke_study.tracking_uri}/")
        page.get_by_text("Model training", exact=True).first.click()
        page.get_by_role("link", name="critical-size", exact=True).first.click()
        parent_row.wait_for()
        page.screenshot(path=SCREENSHOTS / "mlflow-ui-home-click.png")
        page.evaluate("window.localStorage.clear()")  # a fresh browser: GenAI again
        uri = server_smoke_study.tracking_uri
        (link,) = [url for name, url in study_links(uri, uri) if name == "critical-size"]
        page.goto(link)
        parent_row.wait_for()
    finally:
        page.screenshot(path=SCREENSHOTS / "mlflow-ui-link.png")
