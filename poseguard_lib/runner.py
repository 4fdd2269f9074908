"""Study runner: execute the parameterised notebooks with papermill and build the book.

Notebooks live in ``notebooks/`` as jupytext percent files with one ``parameters`` cell
(at least ``profile`` and ``seed``). For a profile the runner writes the executed
notebooks to ``book/<profile>/``, one ``provenance.json`` per experiment under
``results/<profile>/<experiment>/``, and builds the Jupyter Book (execution off, warnings
are errors) into ``_build/<profile>/``. The committed ``_toc.yml`` is the reader's book:
the small profile.

Usage: ``python -m poseguard_lib.runner reproduce --profile tiny`` or ``... book --profile small``;
``--param NAME=VALUE`` (VALUE read as YAML) overrides another parameter of the selected notebooks,
e.g. ``--only 03_effectiveness --param 'n_poses=[1, 4]'`` to run part of a long experiment.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import jupytext
import nbformat
import papermill
import yaml

from poseguard_lib.config import PROFILES, load_profile
from poseguard_lib.io import atomic_path, unwind_on_sigterm, write_json
from poseguard_lib.reporting import device_description

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = ROOT / "notebooks"
BOOK_DIR = ROOT / "book"
RESULTS_DIR = ROOT / "results"
BUILD_DIR = ROOT / "_build"
READER_PROFILE = "small"  # the profile whose pages the committed _toc.yml lists
FINDINGS_PAGE = "book/findings"  # the small profile's measurements in prose, after the chapters of any profile

PROVENANCE_PACKAGES = (
    "torch", "diffusers", "transformers", "peft", "accelerate", "torchmetrics", "numpy",
    "opencv-python", "papermill", "jupyter-book",
)


class NotebookFailed(RuntimeError):
    """A notebook raised; the message names the notebook and the cell."""


def notebooks() -> list[Path]:
    return sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.py"))


def experiment_name(notebook: Path) -> str:
    """``02_base_model.py`` → ``base_model`` (the results folder name)."""
    return notebook.stem.split("_", 1)[1]


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


# what a run itself rewrites: a tree whose only changes are these still ran the committed code
RUN_OUTPUTS = tuple(f":(exclude){path.relative_to(ROOT)}" for path in (RESULTS_DIR, BOOK_DIR, ROOT / "_toc.yml"))


def provenance(profile: str, seed: int, wall_time_s: float, parameters: dict | None = None) -> dict:
    """What a reader needs to trust (or redo) a result: code, config, seed, packages, device."""
    config = load_profile(profile, seed=seed)
    versions = {}
    for name in PROVENANCE_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "git_commit": _git("rev-parse", "HEAD") or None,
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no", "--", ".", *RUN_OUTPUTS)),
        "profile": profile,
        "config_sha256": config.digest(),
        "seed": seed,
        "parameters": parameters or {},
        "python": platform.python_version(),
        "packages": versions,
        "device": device_description(),
        "wall_time_s": round(wall_time_s, 2),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _check_parameters_cell(nb: nbformat.NotebookNode, path: Path, extra: tuple[str, ...] = ()) -> None:
    tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(tagged) != 1:
        raise NotebookFailed(f"{path.name}: expected exactly one cell tagged 'parameters', found {len(tagged)}")
    for name in ("profile", "seed", *extra):
        if f"{name} =" not in tagged[0].source:
            raise NotebookFailed(f"{path.name}: the parameters cell must define {name!r}")


def execute(notebook: Path, profile: str, seed: int = 0, extra_parameters: dict | None = None) -> Path:
    """Run one notebook for ``profile``; return the executed notebook's path in ``book/<profile>/``."""
    load_profile(profile, seed=seed)  # fail before starting a kernel on a bad profile
    nb = jupytext.read(notebook)
    _check_parameters_cell(nb, notebook, tuple(extra_parameters or ()))
    output = BOOK_DIR / profile / f"{notebook.stem}.ipynb"
    parameters = {"profile": profile, "seed": seed, **(extra_parameters or {})}
    started = time.perf_counter()
    with atomic_path(output) as tmp:
        try:
            papermill.execute_notebook(
                nb, str(tmp), parameters=parameters, cwd=str(ROOT), kernel_name="python3",
                progress_bar=False, language="python",
            )
        except papermill.PapermillExecutionError as err:
            raise NotebookFailed(
                f"notebook {notebook.name} failed in cell {err.cell_index} (execution count "
                f"{err.exec_count}): {err.ename}: {err.evalue}"
            ) from None
        executed = nbformat.read(tmp, as_version=4)
        executed.metadata.papermill["input_path"] = os.path.relpath(notebook, ROOT)
        executed.metadata.papermill["output_path"] = os.path.relpath(output, ROOT)
        for cell in executed.cells:
            tags = cell.metadata.get("tags", [])
            if "injected-parameters" in tags and "remove-cell" not in tags:
                tags.append("remove-cell")
        nbformat.write(executed, tmp)
    write_json(
        RESULTS_DIR / profile / experiment_name(notebook) / "provenance.json",
        provenance(profile, seed, time.perf_counter() - started, extra_parameters),
    )
    return output


def write_toc(profile: str) -> Path:
    """Table of contents: the intro, every executed notebook of ``profile``, then the findings page."""
    pages = [f"book/{profile}/{nb.stem}" for nb in notebooks() if (BOOK_DIR / profile / f"{nb.stem}.ipynb").exists()]
    toc = {"format": "jb-book", "root": "book/intro", "chapters": [{"file": page} for page in [*pages, FINDINGS_PAGE]]}
    target = ROOT / "_toc.yml" if profile == READER_PROFILE else BUILD_DIR / profile / "_toc.yml"
    with atomic_path(target) as tmp:
        tmp.write_text(f"# Generated by poseguard_lib.runner for the {profile} profile.\n" + yaml.safe_dump(toc, sort_keys=False))
    return target


def build_book(profile: str) -> Path:
    """Build the HTML book for ``profile`` (warnings are errors); return the html folder."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; allowed profiles: {', '.join(PROFILES)}")
    toc = write_toc(profile)
    out = BUILD_DIR / profile
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    command = [str(jupyter_book), "build", str(ROOT), "--toc", str(toc), "--path-output", str(out),
               "-W", "-n", "--keep-going", "--all"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"jupyter-book build failed for profile {profile!r}:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return out / "_build" / "html"


def parse_parameters(assignments: list[str] | None) -> dict:
    """``["n_poses=[1, 4]", ...]`` → ``{"n_poses": [1, 4]}`` (values read as YAML)."""
    parameters = {}
    for assignment in assignments or []:
        raw_name, sep, value = assignment.partition("=")
        name = raw_name.strip()
        if not sep or not name.isidentifier():
            raise ValueError(f"--param expects NAME=VALUE, got {assignment!r}")
        if name in ("profile", "seed"):
            raise ValueError(f"set {name} with --{name}, not --param")
        try:
            parameters[name] = yaml.safe_load(value)
        except yaml.YAMLError as err:
            raise ValueError(f"--param {name}: {value!r} is not a YAML value ({err})") from None
    return parameters


def reproduce(profile: str, seed: int = 0, only: list[str] | None = None, parameters: dict | None = None) -> Path:
    """Run every notebook (or those named in ``only``) for ``profile``, then build the book."""
    load_profile(profile, seed=seed)
    selected = [nb for nb in notebooks() if not only or nb.stem in only or experiment_name(nb) in only]
    if only and not selected:
        raise ValueError(f"no notebook matches {only}; notebooks: {[nb.stem for nb in notebooks()]}")
    for notebook in selected:  # every notebook must take the parameters before any runs
        _check_parameters_cell(jupytext.read(notebook), notebook, tuple(parameters or ()))
    for notebook in selected:
        print(f"[{profile}] running {notebook.name} ...", flush=True)
        started = time.perf_counter()
        execute(notebook, profile, seed, parameters)
        print(f"[{profile}] {notebook.name} done in {time.perf_counter() - started:.0f} s", flush=True)
    html = build_book(profile)
    print(f"[{profile}] book built: {html / 'index.html'}", flush=True)
    return html


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m poseguard_lib.runner", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("reproduce", help="execute notebooks for a profile and build the book")
    run.add_argument("--profile", default="tiny", help=f"one of {', '.join(PROFILES)}")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--only", nargs="*", help="notebook stems or experiment names to run (default: all)")
    run.add_argument("--param", action="append", metavar="NAME=VALUE",
                     help="another notebook parameter, VALUE in YAML (repeatable); every selected notebook must define it")
    book = sub.add_parser("book", help="build the book from already executed notebooks")
    book.add_argument("--profile", default="tiny", help=f"one of {', '.join(PROFILES)}")
    args = parser.parse_args(argv)
    unwind_on_sigterm()  # a stopped run shuts its kernel down and leaves no temporary notebook
    try:
        if args.command == "reproduce":
            reproduce(args.profile, args.seed, args.only, parse_parameters(args.param))
        else:
            print(build_book(args.profile) / "index.html")
    except (NotebookFailed, ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
