"""The report renders saved results into markdown and plots, and names what was not run."""

from __future__ import annotations

from capt.dev.bench import critical_path, report


def test_report_renders_saved_results_and_names_missing_ones(tmp_path, monkeypatch):
    from capt.dev.bench import results

    monkeypatch.setattr(results, "IMAGES", results.IMAGES)  # restored after the test
    assert critical_path.main(["--lb", "classic", "--results", str(tmp_path)]) == 0
    text = report.render(tmp_path, plots=True, images=tmp_path / "img")
    assert "## 1. A create's critical path" in text
    assert "| create 3+3, classic LB (simulated) |" in text  # the summary row
    assert "cores" in text and "GiB RAM" in text  # the machine is stated
    assert "No result saved: run `python -m capt.dev.bench scale`." in text
    assert (tmp_path / "img" / "bench-critical-path.png").stat().st_size > 10_000
