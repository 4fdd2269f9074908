"""The notebook → book pipeline on the tiny profile (runner, provenance, HTML, failures), and the findings
page's hand-kept table of Full-FT draws against the committed results it copies."""

import json
import re
import signal
import subprocess
import sys
import time

import pytest

from poseguard_lib import runner


@pytest.fixture(scope="module")
def built_book():
    return runner.reproduce("tiny", seed=0, only=["data"])


@pytest.mark.slow
def test_reproduce_builds_the_data_chapter(built_book):
    page = (built_book / "book" / "tiny" / "01_data.html").read_text()
    assert "Profile: " in page and "tiny" in page
    assert len(re.findall(r"<img ", page)) >= 5  # gallery, histogram, videos, gif, faces
    assert "injected-parameters" not in page
    pasted = re.search(r"closest benign frame lies <span class=\"pasted-text\">([0-9.]+)", page)
    assert pasted and float(pasted.group(1)) > 0


@pytest.mark.slow
def test_provenance_records_config_seed_and_code(built_book):
    record = json.loads((runner.RESULTS_DIR / "tiny" / "data" / "provenance.json").read_text())
    assert record["profile"] == "tiny" and record["seed"] == 0
    assert record["config_sha256"] == runner.load_profile("tiny", seed=0).digest()
    assert len(record["git_commit"] or "") in (0, 40)
    assert record["packages"]["torch"].startswith("2.13.0")
    assert record["wall_time_s"] > 0


@pytest.mark.slow
def test_the_toc_lists_only_executed_pages(built_book):
    toc = (runner.BUILD_DIR / "tiny" / "_toc.yml").read_text()
    assert "book/tiny/01_data" in toc
    assert toc.rstrip().endswith(runner.FINDINGS_PAGE)


@pytest.mark.slow
def test_the_findings_page_and_the_intro_links_to_it_are_built(built_book):
    intro = (built_book / "book" / "intro.html").read_text()
    assert (built_book / "book" / "findings.html").is_file()
    assert 'href="findings.html#findings-base"' in intro


@pytest.mark.slow
def test_a_notebook_still_being_written_does_not_break_the_build(built_book):
    """A run of another profile writes its notebook to a hidden temporary file beside the final one."""
    import nbformat

    in_progress = runner.BOOK_DIR / "small" / ".03_effectiveness.ipynb.test.tmp.ipynb"
    in_progress.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# half written")]), in_progress)
    try:
        html = runner.build_book("tiny")
    finally:
        in_progress.unlink()
    assert (html / "book" / "tiny" / "01_data.html").is_file()


def test_a_failing_notebook_names_itself_and_the_cell(tmp_path):
    notebook = tmp_path / "99_broken.py"
    notebook.write_text(
        '# %% tags=["parameters"]\nprofile = "tiny"\nseed = 0\n\n# %%\nx = 1\n\n# %%\nraise ValueError("boom")\n'
    )
    with pytest.raises(runner.NotebookFailed, match=r"99_broken\.py failed in cell \d+ .*ValueError: boom"):
        runner.execute(notebook, "tiny")
    assert not (runner.BOOK_DIR / "tiny" / "99_broken.ipynb").exists()


def test_a_notebook_without_parameters_cell_is_refused(tmp_path):
    notebook = tmp_path / "98_plain.py"
    notebook.write_text("# %%\nx = 1\n")
    with pytest.raises(runner.NotebookFailed, match="exactly one cell tagged 'parameters'"):
        runner.execute(notebook, "tiny")


def test_unknown_profile_is_refused_before_running():
    with pytest.raises(ValueError, match="allowed profiles"):
        runner.reproduce("medium")


def test_extra_parameters_are_read_as_yaml_and_bad_ones_refused():
    assert runner.parse_parameters(["n_poses=[1, 4]", "label=full run"]) == {"n_poses": [1, 4], "label": "full run"}
    for bad, message in (("n_poses", "NAME=VALUE"), ("seed=3", "--seed"), ("x=[1,", "not a YAML value")):
        with pytest.raises(ValueError, match=message):
            runner.parse_parameters([bad])


def test_a_parameter_a_notebook_does_not_take_is_refused_before_anything_runs():
    with pytest.raises(runner.NotebookFailed, match="01_data.py: the parameters cell must define 'n_poses'"):
        runner.reproduce("tiny", only=["01_data"], parameters={"n_poses": [1]})


def test_extra_parameters_reach_the_notebook_and_its_provenance(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "RESULTS_DIR", tmp_path / "results")
    monkeypatch.setattr(runner, "BOOK_DIR", tmp_path / "book")
    notebook = tmp_path / "97_echo.py"
    notebook.write_text(
        '# %% tags=["parameters"]\nprofile = "tiny"\nseed = 0\nn_poses = None\n\n'
        "# %%\nassert n_poses == [1, 4], n_poses\n"
    )
    runner.execute(notebook, "tiny", extra_parameters={"n_poses": [1, 4]})
    record = json.loads((tmp_path / "results" / "tiny" / "echo" / "provenance.json").read_text())
    assert record["parameters"] == {"n_poses": [1, 4]}


def test_a_run_stopped_by_sigterm_leaves_no_temporary_notebook(tmp_path):
    notebook = tmp_path / "96_slow.py"
    notebook.write_text('# %% tags=["parameters"]\nprofile = "tiny"\nseed = 0\n\n# %%\nimport time\ntime.sleep(120)\n')
    book = tmp_path / "book"
    script = (f"from pathlib import Path\nfrom poseguard_lib import io, runner\nrunner.BOOK_DIR = Path({str(book)!r})\n"
              f"io.unwind_on_sigterm()\nrunner.execute(Path({str(notebook)!r}), 'tiny')\n")
    process = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 120
        while not list(book.glob("tiny/.*.tmp.ipynb")):  # papermill has started writing
            assert process.poll() is None and time.monotonic() < deadline, "the notebook never started"
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 128 + signal.SIGTERM
    finally:
        process.kill()
    assert list((book / "tiny").iterdir()) == []


def _shown(cell: str) -> list[tuple[float, float]]:
    """The numbers in a table cell of the findings page, each with half a unit of its last printed digit."""
    return [(float(number.group(0).replace("−", "-")), 0.5 * 10 ** -len(number.group(1) or "") + 1e-12)
            for number in re.finditer(r"[−-]?\d+(?:\.(\d+))?", cell)]


def test_the_findings_table_of_full_ft_draws_matches_its_csv():
    """The findings page copies ``full_ft_draws.csv`` (written by ``explorations/full_ft_draws.py``) by hand:
    every draw and paper row in the table, and no other, with each number as the CSV rounds to it."""
    import pandas as pd

    root = runner.RESULTS_DIR.parent
    draws = pd.read_csv(root / "results" / "small" / "effectiveness" / "full_ft_draws.csv")
    shown = {}
    for line in (root / "book" / "findings.md").read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) == 9 and cells[0].isdigit():
            shown[int(cells[0]), cells[1]] = cells[2:]
    assert set(shown) == set(zip(draws.n_poses, draws.draw))
    columns = (["ssim_star_trained"], ["trained_poses_suppressed", "n_poses"], ["ssim_star_untrained"],
               ["benign_ssim", "benign_ssim_change"], ["benign_ssim_vs_undefended"], ["fid_vid"], ["fvd"])
    for row in draws.itertuples():
        for cell, names in zip(shown[row.n_poses, row.draw], columns):
            expected = [getattr(row, name) for name in names]
            if pd.isna(expected[0]):
                assert cell == "—", (row.n_poses, row.draw, names)
                continue
            numbers = _shown(cell)
            assert len(numbers) == len(expected), (row.n_poses, row.draw, cell)
            for (value, tolerance), truth in zip(numbers, expected):
                assert abs(value - truth) <= tolerance, (row.n_poses, row.draw, names, cell, truth)
