"""The ``poseguard`` command: help, defend → generate on a tiny random model, clear errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from poseguard_lib.cli import build_parser, main
from poseguard_lib.config import load_profile
from poseguard_lib.data.catalogue import load_unsafe_catalogue
from poseguard_lib.data.synthetic import build_split
from poseguard_lib.defense import load_defended
from poseguard_lib.models import build_model
from poseguard_lib.pose.io import write_pose, write_pose_sequence
from poseguard_lib.pose.skeleton import PoseSequence

PROFILE = load_profile("tiny")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A tiny random model, pose files, a pose sequence and a reference image on disk."""
    root = tmp_path_factory.mktemp("cli")
    model = build_model(PROFILE.model, seed=0)
    with torch.no_grad():
        torch.nn.init.normal_(model.pose_guider.conv_out.weight, std=0.05)
    model.save_pretrained(root / "base")
    catalogue = load_unsafe_catalogue()
    write_pose(root / "kneel.yaml", catalogue[0].pose)
    write_pose(root / "salute.json", catalogue[1].pose)
    video = build_split(PROFILE.data, PROFILE.seed)["train"][0]
    write_pose_sequence(root / "walk.yaml", PoseSequence(video.poses.frames[:3]))
    iio.imwrite(root / "person.png", video.frames[0])
    (root / "broken.yaml").write_text("body: {skeleton: openpose_body_18, keypoints: [[0.1, 0.2]]}\n")
    return {"root": root, "base": root / "base", "kneel": root / "kneel.yaml", "salute": root / "salute.json",
            "walk": root / "walk.yaml", "person": root / "person.png", "broken": root / "broken.yaml",
            "catalogue_id": catalogue[2].id}


def _run(argv) -> tuple[int, str]:
    try:
        return main([str(a) for a in argv]), ""
    except SystemExit as exit_:  # argparse's own errors and --help
        return int(exit_.code or 0), ""


@pytest.mark.parametrize("command", ["defend", "generate", "catalogue"])
def test_help_documents_every_option(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    subparser = build_parser()._subparsers._group_actions[0].choices[command]
    for action in subparser._actions:
        assert action.help, f"{command}: {action.option_strings or action.dest} has no help"
        for option in action.option_strings:
            assert option in text


def test_console_script_lists_the_catalogue():
    script = Path(sys.executable).with_name("poseguard")
    out = subprocess.run([script, "catalogue"], capture_output=True, text=True, check=True).stdout
    assert len(out.splitlines()) == len(load_unsafe_catalogue())
    assert out.split("\t")[1] in ("discriminatory", "nsfw", "copyright")


def test_defend_then_generate(files, tmp_path, capsys):
    out = tmp_path / "defended"
    code, _ = _run(["defend", "--base-model", files["base"], "--poses", files["kneel"], files["salute"],
                    "--catalogue", files["catalogue_id"], "--strategy", "lora", "--rank", "2", "--steps", "2",
                    "--lora-lr", "1e-3", "--lr-schedule", "cosine", "--no-scale-steps", "--safe-target", "blur",
                    "--blur-sigma", "0.1", "--output", out, "--no-progress"])
    assert code == 0, capsys.readouterr().err
    result = load_defended(out)
    assert result.strategy == "lora" and result.record["settings"]["lora_rank"] == 2
    assert result.record["settings"]["lora_learning_rate"] == 1e-3 and result.record["step_budget"] == 2
    assert result.record["settings"]["lr_schedule"] == "cosine"
    assert result.record["pairs"]["pose_labels"] == ["kneel", "salute", files["catalogue_id"]]
    assert result.record["pairs"]["safe_target"] == "blur" and result.record["pairs"]["blur_sigma"] == 0.1

    for output, frames in ((tmp_path / "walk.gif", 3), (tmp_path / "walk.mp4", 3)):
        code, _ = _run(["generate", out, "--reference", files["person"], "--poses", files["walk"],
                        "--output", output, "--no-progress"])
        assert code == 0, capsys.readouterr().err
        assert iio.imread(output).shape == (frames, 32, 32, 3)
    for folder, noise in (("frames", "--no-balanced-subpixel-noise"), ("balanced", "--balanced-subpixel-noise")):
        code, _ = _run(["generate", files["base"], "--reference", files["person"], "--poses", files["kneel"],
                        "--output", tmp_path / folder, "--per-frame", "--steps", "2", noise, "--no-progress"])
        assert code == 0, capsys.readouterr().err
    assert [p.name for p in (tmp_path / "frames").iterdir()] == ["frame_0000.png"]
    plain, balanced = (iio.imread(tmp_path / folder / "frame_0000.png") for folder in ("frames", "balanced"))
    assert plain.shape == (32, 32, 3) and not np.array_equal(plain, balanced)


@pytest.mark.parametrize(
    ("options", "check"),
    [
        (["--strategy", "fuse", "--catalogue", "CAT", "--poses", "KNEEL", "--fusion-steps", "1"],
         lambda r: r.fusion_weights is not None and len(r.fusion_weights) == 2 and r.fusion_weights != [0.5, 0.5]),
        (["--strategy", "full", "--identity", "PERSON"],
         lambda r: r.record["pairs"]["references"] == 1 and r.record["pairs"]["pose_labels"][0] == "benign_0000"),
    ],
)
def test_fuse_and_identity_defenses(files, tmp_path, capsys, options, check):
    swap = {"CAT": files["catalogue_id"], "KNEEL": files["kneel"], "PERSON": files["person"]}
    code, _ = _run(["defend", "--base-model", files["base"], *[swap.get(o, o) for o in options],
                    "--steps", "1", "--output", tmp_path / "out", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    assert check(load_defended(tmp_path / "out"))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["defend", "--catalogue", "CAT", "--rank", "0"], "--rank: Input should be greater than or equal to 1"),
        (["defend", "--catalogue", "CAT", "--lambda", "0"], "--lambda: Input should be greater than 0"),
        (["defend", "--catalogue", "CAT", "--lora-lr", "0"], "--lora-lr: Input should be greater than 0"),
        (["defend", "--catalogue", "CAT", "--strategy", "prune"], "invalid choice: 'prune'"),
        (["defend", "--catalogue", "CAT", "--rank", "two"], "invalid int value: 'two'"),
        (["defend"], "no unsafe poses given"),
        (["defend", "--poses", "BROKEN"], "broken.yaml"),
        (["defend", "--poses", "MISSING"], "missing.yaml: cannot read pose file"),
        (["defend", "--catalogue", "no_such_pose"], "unknown catalogue ids ['no_such_pose']"),
        (["defend", "--catalogue", "CAT", "--base-model", "ROOT"], "is not a saved AnimateAnyone model"),
        (["defend", "--identity", "PERSON", "--strategy", "fuse"], "use --strategy full or lora"),
        (["generate", "BASE", "--reference", "PERSON", "--poses", "KNEEL", "--output", "x.avi"], "unsupported output '.avi'"),
        (["generate", "BASE", "--reference", "KNEEL", "--poses", "KNEEL", "--output", "x.gif"], "cannot read image"),
        (["generate", "BASE", "--reference", "PERSON", "--poses", "KNEEL", "--output", "x.gif", "--guidance", "0.5"],
         "--guidance: Input should be greater than or equal to 1"),
        (["generate", "NOWHERE", "--reference", "PERSON", "--poses", "KNEEL", "--output", "x.gif"], "does not exist"),
    ],
)
def test_bad_input_gets_a_clear_error(files, tmp_path, capsys, argv, message):
    swap = {"CAT": files["catalogue_id"], "BROKEN": files["broken"], "MISSING": files["root"] / "missing.yaml",
            "ROOT": files["root"], "PERSON": files["person"], "BASE": files["base"], "KNEEL": files["kneel"],
            "NOWHERE": tmp_path / "nowhere"}
    argv = [swap.get(a, a) for a in argv]
    if argv[0] == "defend":
        argv += ["--output", tmp_path / "out"] + ([] if "--base-model" in argv else ["--base-model", files["base"]])
    code, _ = _run(argv)
    assert code == 2
    assert message in " ".join(capsys.readouterr().err.split())
    assert not (tmp_path / "out").exists()
