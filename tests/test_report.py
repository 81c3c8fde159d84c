"""The HTML report (`snakemake --report`) of the tiny run, opened in a real headless Chromium.

Chromium comes from Debian's packages (tests/browser/setup_chromium.sh); where it or
playwright cannot be installed the test is skipped with the reason printed, and under CI
(CI=true) it fails instead. Screenshots of every figure as the report shows it are kept in
results/test-report/.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest
from workflow_helpers import REPO, setup_script_reason, skip_or_fail_on_ci, snakemake

SETUP = REPO / "tests" / "browser" / "setup_chromium.sh"
SCREENSHOTS = REPO / "results" / "test-report"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def chromium() -> str:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as error:
        skip_or_fail_on_ci("report in Chromium", f"playwright (a test extra) is not installed ({error})")
    setup = subprocess.run(["bash", str(SETUP)], capture_output=True, text=True, timeout=900)
    if setup.returncode == 3:
        skip_or_fail_on_ci("report in Chromium", setup_script_reason(setup, "Chromium cannot be installed"))
    assert setup.returncode == 0, setup.stdout + setup.stderr
    return setup.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def report(tiny_run: Path) -> Path:
    workdir = tiny_run.parent.parent
    path = workdir / "report.html"
    run = snakemake(workdir, "--report", str(path))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return path


def declared_figure_rules(workdir: Path) -> set[str]:
    """Rules of this config whose output is marked for the report as a figure."""
    run = snakemake(workdir, "--list-rules")
    assert run.returncode == 0, run.stderr
    active = set(run.stdout.split())
    declared = set()
    for rules in (REPO / "workflow" / "rules").glob("*.smk"):
        for block in re.split(r"^(?=rule )", rules.read_text(), flags=re.MULTILINE):
            name = re.match(r"rule (\w+):", block)
            if name and 'category="Figures"' in block:
                declared.add(name.group(1))
    return declared & active


def embedded(html: str, name: str) -> Any:
    """A JSON value the report embeds as `<script id=...> var <name> = ...; </script>`."""
    match = re.search(rf'<script id="[\w-]+">\s*var {name} = (.*?);\s*</script>', html, re.DOTALL)
    assert match, f"the report has no {name}"
    return json.loads(match.group(1))


def png_size(path: Path) -> tuple[int, int]:
    width, height = struct.unpack(">II", path.read_bytes()[16:24])
    return width, height


def test_the_report_embeds_every_declared_figure_with_its_caption(report: Path, tiny_run: Path) -> None:
    html = report.read_text()
    results = embedded(html, "results")
    figures = {
        entry["job_properties"]["rule"]: entry for entry in results.values() if entry["mime_type"] == "image/png"
    }
    declared = declared_figure_rules(tiny_run.parent.parent)
    assert {"figure1", "figure2", "figure3", "figure4"} <= declared
    assert declared <= set(figures), f"figures declared but not in the report: {declared - set(figures)}"
    pngs = {p.stem for p in (tiny_run / "figures").glob("*.png")}
    assert pngs <= set(figures), f"figures drawn but not in the report: {pngs - set(figures)}"
    for rule, entry in figures.items():
        assert entry["data_uri"].startswith("data:image/png"), rule  # self-contained: no link to a file
    assert "6 simulated IT sites" in figures["figure1"]["caption"]
    assert "lower bound" in figures["figure1"]["caption"]
    tables = [entry for entry in results.values() if entry["job_properties"]["rule"] == "sensitivity_table"]
    assert len(tables) == 1 and tables[0]["data_uri"].startswith("data:text/html")
    description = embedded(html, "workflow_desc")
    assert "3 clean images attacked" in description and "2 random" in description
    assert "units_per_network: 4" in description  # the config, as the run read it
    assert "robust_eps1: {&quot;eps&quot;: 1.0, &quot;seed&quot;: 3}" in description


def test_every_figure_loads_in_chromium(report: Path, tiny_run: Path, chromium: str) -> None:
    from playwright.sync_api import sync_playwright

    results = embedded(report.read_text(), "results")
    images = {path: entry for path, entry in results.items() if entry["mime_type"] == "image/png"}
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)
    SCREENSHOTS.mkdir(parents=True)
    loaded = {}
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-dev-shm-usage"])
        page = browser.new_page(viewport={"width": 1600, "height": 1100})
        page.goto(report.as_uri())
        page.wait_for_function("typeof app !== 'undefined'", timeout=60_000)
        assert "What was run" in page.inner_text("body")
        page.evaluate("() => app.showCategory('Figures')")
        menu = page.inner_text("body")
        page.screenshot(path=SCREENSHOTS / "report.png")
        for path, entry in images.items():
            assert entry["name"] in menu, f"{entry['name']} is not listed under Figures"
            # What a click on the figure in the menu runs: the report's own view manager.
            page.evaluate("path => new ToggleViewManager(app).handleSelectedResult(path)", path)
            shown = page.wait_for_function(
                """uri => {
                    const image = [...document.querySelectorAll('img')].find(i => i.getAttribute('src') === uri);
                    return image && image.complete ? [image.naturalWidth, image.naturalHeight] : null;
                }""",
                arg=entry["data_uri"],
                timeout=30_000,
            )
            loaded[Path(path).name] = tuple(shown.json_value())
            page.screenshot(path=SCREENSHOTS / Path(path).name)
        browser.close()
    print(f"report screenshots: {SCREENSHOTS}")
    for name, size in loaded.items():
        assert size == png_size(tiny_run / "figures" / name), name  # decoded whole, at its own size
    assert len(loaded) == len(images) >= 4
