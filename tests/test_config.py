import pandas as pd
import pytest
from pydantic import ValidationError

from poseguard_lib.config import PROFILES, ConfigError, load_profile
from poseguard_lib.io import replace_rows


@pytest.mark.parametrize("profile", PROFILES)
def test_every_profile_validates_and_hashes_stably(profile):
    config = load_profile(profile)
    assert config.profile == profile
    assert config.digest() == load_profile(profile).digest()


def test_seed_changes_the_digest():
    assert load_profile("tiny", seed=1).digest() != load_profile("tiny", seed=2).digest()


def test_unknown_profile_lists_the_allowed_ones():
    with pytest.raises(ConfigError, match="allowed profiles: tiny, small, paper"):
        load_profile("huge")


def test_invalid_value_names_the_field(monkeypatch, tmp_path):
    import poseguard_lib.config as config_module

    bad = (config_module.CONFIG_DIR / "tiny.yaml").read_text().replace("height: 32", "height: -3")
    (tmp_path / "tiny.yaml").write_text(bad)
    monkeypatch.setattr(config_module, "CONFIG_DIR", tmp_path)
    with pytest.raises(ConfigError, match=r"data\.height"):
        load_profile("tiny")


def test_unknown_key_is_rejected():
    with pytest.raises(ConfigError, match="colour: Extra inputs are not permitted"):
        load_profile("tiny", colour="red")


def test_compute_device_follows_the_environment_and_refuses_what_torch_lacks(monkeypatch):
    import torch

    from poseguard_lib.config import DEVICE_ENV, compute_device

    monkeypatch.setenv(DEVICE_ENV, "cpu")
    assert compute_device() == torch.device("cpu")
    monkeypatch.setenv(DEVICE_ENV, "abacus")
    with pytest.raises(ConfigError, match="POSEGUARD_DEVICE='abacus' is not a torch device"):
        compute_device()
    if not torch.cuda.is_available():
        monkeypatch.setenv(DEVICE_ENV, "cuda")
        with pytest.raises(ConfigError, match="asks for a GPU"):
            compute_device()
        monkeypatch.delenv(DEVICE_ENV)
        assert compute_device() == torch.device("cpu")


def test_device_description_names_the_cpu_and_its_threads():
    import torch

    from poseguard_lib.reporting import device_description

    threads = torch.get_num_threads()
    text = device_description("cpu")
    assert text.startswith("CPU: ") and text.endswith(f"{threads} thread{'' if threads == 1 else 's'})")


def test_with_changes_changes_one_section_and_validates():
    config = load_profile("tiny")
    longer = config.with_changes("train", stage1_steps=config.train.stage1_steps + 1)
    assert longer.train.stage1_steps == config.train.stage1_steps + 1
    assert longer.model_dump(exclude={"train"}) == config.model_dump(exclude={"train"})
    with pytest.raises(ValidationError, match="stage1_steps"):
        config.with_changes("train", stage1_steps=-1)
    with pytest.raises(ValidationError, match="colour"):
        config.with_changes("sampling", colour="red")


def test_replace_rows_keeps_other_variants_and_replaces_a_rerun(tmp_path):
    path = tmp_path / "table.csv"
    replace_rows(path, pd.DataFrame({"steps": [8000, 8000], "model": ["b", "a"], "ssim": [0.1, 0.2]}), "steps", ["steps"])
    replace_rows(path, pd.DataFrame({"steps": [5000], "model": ["a"], "ssim": [0.3]}), "steps", ["steps"])
    table = replace_rows(path, pd.DataFrame({"steps": [8000], "model": ["a"], "ssim": [0.4]}), "steps", ["steps", "model"])
    assert table.to_dict("list") == {"steps": [5000, 8000], "model": ["a", "a"], "ssim": [0.3, 0.4]}
    assert pd.read_csv(path).equals(table)


def test_replace_rows_keeps_a_count_beside_empty_cells_an_integer(tmp_path):
    path = tmp_path / "table.csv"
    rows = pd.DataFrame({"base": ["a", "b"], "steps": pd.array([5300, None], dtype="Int64")})
    replace_rows(path, rows, "base", ["base"])
    table = replace_rows(path, rows.iloc[[1]], "base", ["base"])  # the earlier "a" row is read back from the CSV
    assert table.steps.dtype == "Int64" and table.steps.tolist()[0] == 5300
    assert path.read_text().splitlines()[1] == "a,5300"
