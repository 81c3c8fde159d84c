"""The HTML report (`snakemake --report`) of the tiny run, opened in a real headless Chromium,
and the headline its landing page opens on (neuroattack.figures.headline).

Chromium comes from Debian's packages (tests/browser/setup_chromium.sh); where it or
playwright cannot be installed the test is skipped with the reason printed, and under CI
(CI=true) it fails instead. Screenshots of the landing page and of every figure as the
report shows it are kept in results/test-report/.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
from html import unescape as html_unescape
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr
from workflow_helpers import REPO, setup_script_reason, skip_or_fail_on_ci, snakemake

from neuroattack import io
from neuroattack.analysis.sensitivity import BRAIN_BLACK_BOX, BRAIN_WHITE_BOX, SURROGATE, random_directions
from neuroattack.figures.headline import Interval, RunFacts, headline, place, placement_words

SETUP = REPO / "tests" / "browser" / "setup_chromium.sh"
SCREENSHOTS = REPO / "results" / "test-report"


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
def screenshots() -> Path:
    """The folder the screenshots go to, emptied once per test run."""
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)
    SCREENSHOTS.mkdir(parents=True)
    return SCREENSHOTS


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
            # A figure's png goes to the report through figure_outputs (common.smk), or a rule marks it.
            if name and ("figure_outputs(" in block or 'category="Figures"' in block):
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


# --- the headline: where the brain lies, judged by intervals --------------------------


def test_a_brain_between_two_networks_is_more_sensitive_than_one_and_less_than_the_other() -> None:
    placement = place(Interval(0.4, 0.6), {"low": Interval(0.1, 0.3), "high": Interval(0.7, 0.9)})
    assert placement_words("the brain", placement) == (
        "the brain is more sensitive than low and is less sensitive than high."
    )


def test_overlapping_intervals_cannot_be_told_apart() -> None:
    networks = {"low": Interval(0.1, 0.3), "near": Interval(0.55, 0.8), "touching": Interval(0.6, 0.7)}
    placement = place(Interval(0.4, 0.6), networks)
    assert placement.overlapping == ("near", "touching")  # an interval that only touches overlaps
    assert placement_words("the brain", placement) == (
        "the brain is more sensitive than low and cannot be told apart from near and touching."
    )


def test_a_missing_interval_is_said_so_not_counted_as_overlapping() -> None:
    placement = place(Interval(0.4, 0.6), {"a": Interval(float("nan"), float("nan")), "b": Interval(0.0, 0.1)})
    assert placement.unmeasured == ("a",) and placement.more_than == ("b",) and not placement.overlapping
    assert "has no interval to compare with a" in placement_words("the brain", placement)


EPS = [0.1, 1.0]
BRAIN_POPULATIONS = (BRAIN_BLACK_BOX, SURROGATE, BRAIN_WHITE_BOX)
# (population, intervals at each eps): at 0.1 the brain lies between the two networks; at 1.0
# its wide interval overlaps both.
SYNTHETIC = {
    BRAIN_BLACK_BOX: [(0.30, 0.50), (0.50, 1.50)],
    SURROGATE: [(0.35, 0.45), (0.90, 1.10)],
    BRAIN_WHITE_BOX: [(0.60, 0.80), (1.60, 1.80)],
    "alexnet": [(0.05, 0.15), (0.80, 1.00)],
    "robust_resnet": [(0.60, 0.70), (1.20, 1.40)],
    random_directions("alexnet"): [(0.00, 0.01), (0.00, 0.01)],
}
FACTS = RunFacts(
    layers={"alexnet": "features.10", "robust_resnet": "penultimate"},
    norm="l2",
    simulated=True,
    rounds=2,
    figure1_round=2,
)


def synthetic_sensitivity(intervals: dict[str, list[tuple[float, float]]]) -> xr.Dataset:
    low = np.array([[a for a, _ in rows] for rows in intervals.values()])
    high = np.array([[b for _, b in rows] for rows in intervals.values()])
    return xr.Dataset(
        {
            "s_tilde": (("population", "eps"), (low + high) / 2),
            "ci_low": (("population", "eps"), low),
            "ci_high": (("population", "eps"), high),
            "n_units": (
                "population",
                [7 if p in (BRAIN_BLACK_BOX, SURROGATE, BRAIN_WHITE_BOX) else 5 for p in intervals],
            ),
            "n_images": ("population", [11] * len(intervals)),
            "random_pair_level": ("population", [1.0] * len(intervals)),
        },
        coords={"population": list(intervals), "eps": EPS},
    )


def test_the_headline_says_what_was_run_then_the_table_then_where_the_brain_lies() -> None:
    html = headline(synthetic_sensitivity(SYNTHETIC), FACTS)
    text = re.sub(r"<[^>]+>", " ", html)
    summary = text[: text.index("s̃(ε), mean (95% interval)")]
    assert "7 simulated IT sites" in summary and "11 clean images attacked" in summary
    assert "alexnet (5 units of layer  features.10 )" in summary  # each network at its own layer
    assert "robust_resnet (5 units of its penultimate layer)" in summary
    assert "ε 0.1, 1 (L2" in summary and "2 recording rounds" in summary
    assert "penultimate units" not in html
    assert "0.400 (0.300 to 0.500)" in html  # the brain's cell at eps 0.1
    assert "random directions" not in html  # baselines are not placed or tabled
    at_small, at_large = html.split("<li>")[1:]
    assert "The brain&#x27;s black-box estimate (a lower bound) is more sensitive than alexnet and is less" in (
        at_small
    )
    assert "less sensitive than robust_resnet." in at_small
    assert "estimate (a lower bound) cannot be told apart from alexnet and robust_resnet." in at_large
    assert "white-box truth is more sensitive than alexnet and robust_resnet." in at_large


def test_without_recordings_of_perturbed_images_the_surrogate_is_placed_for_the_brain() -> None:
    intervals = {p: rows for p, rows in SYNTHETIC.items() if p not in (BRAIN_BLACK_BOX, BRAIN_WHITE_BOX)}
    html = headline(synthetic_sensitivity(intervals), FACTS)
    assert html.count("IT as the surrogate predicts it") == len(EPS)
    assert "black-box" not in html


# --- the report of the tiny run -------------------------------------------------------


def landing_lines(description: str) -> str:
    """The landing page's description as text, in order."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", description))


def brain_cell(tiny_run: Path, eps: float) -> str:
    """The black-box estimate's cell at `eps` as the run's sensitivity file gives it."""
    row = io.read_dataset(tiny_run / "sensitivity" / "sensitivity.nc").sel(population=BRAIN_BLACK_BOX, eps=eps)
    return f"{float(row['s_tilde']):.3f} ({float(row['ci_low']):.3f} to {float(row['ci_high']):.3f})"


def assert_landing_page_opens_on_the_answer(text: str, tiny_run: Path) -> None:
    """The run summary, the s~ table (the run's own numbers) and the placement come first;
    the figures next; the config last."""
    assert text.lstrip().startswith("What was run: 6 simulated IT sites"), text[:300]
    order = [
        "What was run",
        "standard (4 units of its penultimate layer)",
        "3 clean images attacked",
        "ε 0.1, 0.5",
        "2 recording rounds",
        "s̃(ε), mean (95% interval)",
        brain_cell(tiny_run, 0.1),
        "Where the brain lies among the networks",
        "ε = 0.1: The brain's black-box estimate (a lower bound)",
        "ε = 0.5: The brain's black-box estimate (a lower bound)",
        "Figures",
        "figure1.png",
        "The config of this run",
    ]
    positions = [text.find(part) for part in order]
    assert -1 not in positions, [part for part, at in zip(order, positions, strict=True) if at < 0]
    assert positions == sorted(positions), order
    assert re.search(r"ε = 0\.5: The brain's black-box estimate \(a lower bound\) (is|cannot)", text)
    assert "penultimate units" not in text


@pytest.mark.slow
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
    assert_landing_page_opens_on_the_answer(html_unescape(landing_lines(description)), tiny_run)
    assert "3 clean images attacked" in description and "2 random" in description
    assert "units_per_network: 4" in description  # the config, as the run read it
    assert "robust_eps1: {&quot;eps&quot;: 1.0, &quot;seed&quot;: 3}" in description


@pytest.mark.slow
def test_the_landing_page_opens_on_the_answer_in_chromium(
    report: Path, tiny_run: Path, chromium: str, screenshots: Path
) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-dev-shm-usage"])
        page = browser.new_page(viewport={"width": 1600, "height": 1100})
        page.goto(report.as_uri())
        page.wait_for_function("typeof app !== 'undefined'", timeout=60_000)
        # The page the report opens on: its description column beside the rule graph.
        landing = page.locator("div.prose").first
        landing.wait_for(timeout=30_000)
        text = landing.inner_text()
        page.screenshot(path=screenshots / "landing.png")
        landing.screenshot(path=screenshots / "landing_column.png")
        browser.close()
    print(f"landing page screenshots: {screenshots}")
    print("landing page, first lines:\n" + "\n".join(text.splitlines()[:12]))
    assert_landing_page_opens_on_the_answer(re.sub(r"\s+", " ", text), tiny_run)


@pytest.mark.slow
def test_every_figure_loads_in_chromium(report: Path, tiny_run: Path, chromium: str, screenshots: Path) -> None:
    from playwright.sync_api import sync_playwright

    results = embedded(report.read_text(), "results")
    images = {path: entry for path, entry in results.items() if entry["mime_type"] == "image/png"}
    loaded = {}
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-dev-shm-usage"])
        page = browser.new_page(viewport={"width": 1600, "height": 1100})
        page.goto(report.as_uri())
        page.wait_for_function("typeof app !== 'undefined'", timeout=60_000)
        assert "What was run" in page.inner_text("body")
        page.evaluate("() => app.showCategory('Figures')")
        menu = page.inner_text("body")
        page.screenshot(path=screenshots / "report.png")
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
            page.screenshot(path=screenshots / Path(path).name)
        browser.close()
    print(f"report screenshots: {screenshots}")
    for name, size in loaded.items():
        assert size == png_size(tiny_run / "figures" / name), name  # decoded whole, at its own size
    assert len(loaded) == len(images) >= 4
