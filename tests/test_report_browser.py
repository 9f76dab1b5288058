"""The HTML report in a real browser: headless Chromium shows the verdict, the tables and every
plot, and no image is broken. Skips when no Chromium is installed (`apt-get install -y chromium`)."""

import pytest

from engine.report import verdict_line, write_index, write_report
from engine.report.browser import INSTALL, find_browser, inspect, screenshots
from test_report import GATES, SPEC, TRAIN_LOG, make_evaluation, write_run

BROWSER = find_browser()
pytestmark = pytest.mark.skipif(BROWSER is None, reason=f"no headless Chromium on PATH; install it: {INSTALL}")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("browser")
    run = write_run(tmp / "registry" / "phase2b" / "20250101-120000-abcd", make_evaluation(), GATES,
                    TRAIN_LOG, spec=SPEC)
    md, page = write_report(run, tmp / "reports")
    return tmp, md, page


def test_chromium_shows_the_verdict_tables_and_every_plot(report):
    tmp, md, page = report
    seen = inspect(page, BROWSER)
    assert seen["verdict"] == verdict_line(GATES)
    titles = [t["title"] for t in seen["tables"]]
    assert titles[0] == "Gates: NO-GO"  # right under the verdict
    assert {"Stage held_out: held_out graphs", "Stage larger: larger graphs", "Training",
            "Across stages (transfer)", "Evaluation stages"} <= set(titles)
    assert all(t["rows"] > 0 for t in seen["tables"])
    figures = md.read_text().count("![")
    assert len(seen["images"]) == figures == 9
    broken = [i["alt"] for i in seen["images"] if not (i["complete"] and i["width"] > 0 and i["height"] > 0)]
    assert not broken, f"images the browser could not decode: {broken}"
    assert {i["figure"] for i in seen["images"]} >= {"roc_pr", "reliability", "speedup", "heatmaps",
                                                     "graphs", "f1_by_size", "loss", "transfer",
                                                     "roc_pr.larger"}
    assert any("validation loss rose" in w for w in seen["warnings"])
    headings = [h[1] for h in seen["headings"]]
    assert headings.index("What was evaluated") < headings.index("Evaluation") < headings.index("Training")


def test_screenshots_show_the_page(report, tmp_path):
    from PIL import Image, ImageStat

    _, _, page = report
    shots = screenshots(page, tmp_path / "screens", BROWSER)
    assert {"page", "verdict", "stage_table", "figure_roc_pr", "figure_graphs"} <= set(shots)
    for name in ("verdict", "stage_table", "figure_graphs"):
        image = Image.open(shots[name]).convert("L")
        assert image.size[0] > 300 and image.size[1] > 80
        assert ImageStat.Stat(image).stddev[0] > 10, f"{name} is blank"
    # the verdict banner is red (NO-GO) where the crop begins
    banner = Image.open(shots["verdict"]).convert("RGB")
    reds = [banner.getpixel((x, y)) for x in range(40, 300, 20) for y in range(60, banner.size[1], 4)]
    assert any(r > 180 and g < 90 and b < 90 for r, g, b in reds)


def test_the_index_page_loads_its_plot(report):
    tmp, _, _ = report
    index = write_index(tmp / "registry", tmp / "reports")
    seen = inspect(index, BROWSER)
    assert [i["figure"] for i in seen["images"]] == ["runs"] and seen["images"][0]["width"] > 0
    assert seen["tables"][0]["rows"] == 1
