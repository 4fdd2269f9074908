"""The Moore-AnimateAnyone loader on tiny synthetic checkpoints written in Moore's key layout.

A tiny "release" is derived from one set of randomly initialised diffusers models (seed 1), saved
the way Moore saved its files (ReferenceNet without conv_norm_out/conv_out, motion modules in the
original AnimateDiff layout, VAE with pre-0.14 attention names, CLIP with its old position_ids
buffer), and loaded into a second set (seed 2). The layout conversion below is written out by hand,
independently of the loader's.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from diffusers import AutoencoderKL, MotionAdapter, UNet2DConditionModel
from diffusers.models.controlnets.controlnet import ControlNetConditioningEmbedding
from safetensors.torch import save_file
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from poseguard_lib.io import sha256_file
from poseguard_lib.models import checkpoints
from poseguard_lib.models.checkpoints import (
    COMPONENT_RULES,
    CheckpointError,
    UnpinnedChecksumWarning,
    WeightsManifest,
    load_manifest,
    load_moore_weights,
)

BLOCKS = (8, 16)
MOTION_MAX_LEN = 8  # the adapter's table; the files carry a longer one, as AnimateDiff's 32 vs 24
FILE_PE_LEN = 12


def tiny_generator(seed: int) -> SimpleNamespace:
    """The six components of the AnimateAnyone container at tiny width."""
    torch.manual_seed(seed)
    unet_kwargs = dict(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=BLOCKS, layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=8, attention_head_dim=2, norm_num_groups=4,
    )
    generator = SimpleNamespace(
        reference_unet=UNet2DConditionModel(**unet_kwargs),
        denoising_unet=UNet2DConditionModel(**unet_kwargs),
        pose_guider=ControlNetConditioningEmbedding(BLOCKS[0], 3, (4, 8)),
        motion_adapter=MotionAdapter(
            block_out_channels=BLOCKS, motion_layers_per_block=1, motion_num_attention_heads=2,
            motion_norm_num_groups=4, motion_max_seq_length=MOTION_MAX_LEN, use_motion_mid_block=True,
        ),
        vae=AutoencoderKL(
            block_out_channels=(8,), layers_per_block=1, norm_num_groups=4, latent_channels=4,
            down_block_types=("DownEncoderBlock2D",), up_block_types=("UpDecoderBlock2D",),
        ),
        image_encoder=CLIPVisionModelWithProjection(CLIPVisionConfig(
            hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
            image_size=16, patch_size=8, projection_dim=8,
        )),
    )
    randomise(generator)
    return generator


COMPONENTS = ("reference_unet", "denoising_unet", "pose_guider", "motion_adapter", "vae", "image_encoder")


def randomise(generator) -> None:
    """Every parameter random, so that no comparison passes on shared zero/one initialisation."""
    with torch.no_grad():
        for name in COMPONENTS:
            module = getattr(generator, name)
            if module is not None:
                for parameter in module.parameters():
                    parameter.normal_(std=0.2)


def assert_all_different(a, b) -> None:
    for name in COMPONENTS:
        if getattr(a, name) is not None:
            pairs = zip(getattr(a, name).parameters(), getattr(b, name).parameters())
            assert not any(torch.equal(x, y) for x, y in pairs), name


def animatediff_table(max_len: int, dim: int) -> torch.Tensor:
    """AnimateDiff's PositionalEncoding buffer, (1, max_len, dim)."""
    position = torch.arange(max_len, dtype=torch.float32)[:, None]
    div_term = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(1, max_len, dim)
    table[0, :, 0::2] = torch.sin(position * div_term)
    table[0, :, 1::2] = torch.cos(position * div_term)
    return table


def to_animatediff_layout(adapter_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """diffusers MotionAdapter keys -> the original AnimateDiff keys Moore saved."""
    renames = [
        (".attn1.", ".attention_blocks.0."), (".attn2.", ".attention_blocks.1."),
        (".norm1.", ".norms.0."), (".norm2.", ".norms.1."), (".norm3.", ".ff_norm."),
    ]
    out = {}
    for key, value in adapter_state.items():
        head, tail = re.match(r"^(.+?\.motion_modules\.\d+)\.(.+)$", key).groups()
        if tail.endswith("pos_embed.pe"):
            block = tail.removesuffix(".pos_embed.pe")
            for attention in (0, 1):
                name = f"{head}.temporal_transformer.{block}.attention_blocks.{attention}.pos_encoder.pe"
                out[name] = animatediff_table(FILE_PE_LEN, value.shape[-1])
            continue
        tail = f".{tail}"
        for old, new in renames:
            tail = tail.replace(old, new)
        out[f"{head}.temporal_transformer{tail}"] = value.clone()
    return out


ANIMATEDIFF_KEY = re.compile(
    r"^(down_blocks\.\d+|mid_block|up_blocks\.\d+)\.motion_modules\.\d+\.temporal_transformer\."
    r"(norm|proj_in|proj_out|transformer_blocks\.0\.(attention_blocks\.[01]\.(to_q|to_k|to_v|to_out\.0)"
    r"|norms\.[01]|ff\.net\.0\.proj|ff\.net\.2|ff_norm))\.(weight|bias)$"
    r"|^(down_blocks\.\d+|mid_block|up_blocks\.\d+)\.motion_modules\.\d+\.temporal_transformer\."
    r"transformer_blocks\.0\.attention_blocks\.[01]\.pos_encoder\.pe$"
)


def legacy_vae_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    old = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}
    out = {}
    for key, value in state.items():
        for new_name, old_name in old.items():
            key = key.replace(f".attentions.0.{new_name}.", f".attentions.0.{old_name}.")
        out[key] = value.clone()
    return out


def write_release(source: SimpleNamespace, root: Path) -> None:
    """Files under ``root`` laid out and keyed like Moore's ./pretrained_weights/ (None components skipped)."""
    root.mkdir(parents=True, exist_ok=True)
    torch.save(source.denoising_unet.state_dict(), root / "denoising_unet.pth")
    source.denoising_unet.save_config(root / "stable-diffusion-v1-5" / "unet")
    reference = {
        k: v for k, v in source.reference_unet.state_dict().items()
        if not k.startswith(("conv_norm_out.", "conv_out."))
    }
    torch.save(reference, root / "reference_unet.pth")
    torch.save(source.pose_guider.state_dict(), root / "pose_guider.pth")
    if source.motion_adapter is not None:
        motion = to_animatediff_layout(source.motion_adapter.state_dict())
        assert all(ANIMATEDIFF_KEY.match(k) for k in motion), "synthetic file strays from the AnimateDiff layout"
        torch.save(motion, root / "motion_module.pth")
    if source.vae is not None:
        source.vae.save_config(root / "sd-vae-ft-mse")
        torch.save(legacy_vae_names(source.vae.state_dict()), root / "sd-vae-ft-mse" / "diffusion_pytorch_model.bin")
    encoder_dir = root / "image_encoder"
    source.image_encoder.config.save_pretrained(encoder_dir)
    clip_state = dict(source.image_encoder.state_dict())
    positions = source.image_encoder.config.image_size // source.image_encoder.config.patch_size
    clip_state["vision_model.embeddings.position_ids"] = torch.arange(positions**2 + 1)[None]
    torch.save(clip_state, encoder_dir / "pytorch_model.bin")


def manifest_with(pins: dict[str, str] | None = None) -> WeightsManifest:
    """The shipped manifest with every digest cleared, then ``pins`` (relative path -> sha256) set."""
    pins = pins or {}

    def pinned(file):
        digest = pins.get(file.path)
        return file.model_copy(update={"sha256": digest, "sha256_source": "the test" if digest else None})

    manifest = load_manifest()
    entries = {
        name: pinned(entry).model_copy(update={"alternatives": tuple(pinned(a) for a in entry.alternatives)})
        for name, entry in manifest.entries.items()
    }
    return manifest.model_copy(update={"entries": entries})


def all_pins(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): sha256_file(p) for p in root.rglob("*") if p.is_file()}


def assert_same_weights(loaded, source, skip=()):
    loaded_state, source_state = loaded.state_dict(), source.state_dict()
    for key, value in source_state.items():
        if not key.startswith(skip):
            assert torch.equal(loaded_state[key], value), key


@pytest.fixture
def release(tmp_path):
    source = tiny_generator(seed=1)
    root = tmp_path / "pretrained_weights"
    write_release(source, root)
    return source, root


def test_release_loads_into_every_component(release):
    source, root = release
    target = tiny_generator(seed=2)
    assert_all_different(source, target)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every digest pinned: nothing to warn about
        report = load_moore_weights(target, root, manifest_with(all_pins(root)))

    assert_same_weights(target.denoising_unet, source.denoising_unet)
    assert_same_weights(target.reference_unet, source.reference_unet, skip=("conv_norm_out.", "conv_out."))
    assert_same_weights(target.pose_guider, source.pose_guider)
    assert_same_weights(target.motion_adapter, source.motion_adapter)
    assert_same_weights(target.vae, source.vae)
    assert_same_weights(target.image_encoder, source.image_encoder)

    by_entry = {(f.entry, f.component): f for f in report.files}
    assert sorted(by_entry[("reference_unet", "reference_unet")].tolerated_missing) == [
        "conv_norm_out.bias", "conv_norm_out.weight", "conv_out.bias", "conv_out.weight"
    ]
    motion = by_entry[("motion_module", "motion_adapter")]
    assert motion.tolerated_missing and all(k.endswith(".pos_embed.pe") for k in motion.tolerated_missing)
    assert by_entry[("image_encoder_weights", "image_encoder")].tolerated_unexpected == [
        "vision_model.embeddings.position_ids"
    ]
    assert all(f.pinned for f in report.files) and report.unpinned_digests() == {}


def test_unpinned_digests_are_recorded_and_warned(release, tmp_path):
    _, root = release
    record = tmp_path / "load_record.json"
    with pytest.warns(UnpinnedChecksumWarning) as caught:
        report = load_moore_weights(tiny_generator(seed=2), root, manifest_with(), record_path=record)
    observed = report.unpinned_digests()
    assert observed["motion_module"] == sha256_file(root / "motion_module.pth")
    assert observed["vae_weights"] == sha256_file(root / "sd-vae-ft-mse" / "diffusion_pytorch_model.bin")
    assert len(observed) == 9  # six weight files and three configs
    assert any("denoising_unet.pth" in str(w.message) for w in caught)
    assert json.loads(record.read_text())["files"][0]["sha256"] is not None


def test_weights_dir_comes_from_the_environment(release, monkeypatch):
    source, root = release
    target = tiny_generator(seed=2)
    monkeypatch.setenv("POSEGUARD_WEIGHTS_DIR", str(root))
    with pytest.warns(UnpinnedChecksumWarning):
        load_moore_weights(target, manifest=manifest_with(), components=["pose_guider"])
    assert_same_weights(target.pose_guider, source.pose_guider)
    monkeypatch.delenv("POSEGUARD_WEIGHTS_DIR")
    monkeypatch.setattr(checkpoints, "DEFAULT_WEIGHTS_DIR", root.parent / "absent")
    with pytest.raises(CheckpointError, match="set POSEGUARD_WEIGHTS_DIR"):
        load_moore_weights(target, manifest=manifest_with())
    monkeypatch.setenv("POSEGUARD_WEIGHTS_DIR", str(root.parent / "absent"))
    with pytest.raises(CheckpointError, match=r"absent \(from \$POSEGUARD_WEIGHTS_DIR\) does not exist"):
        load_moore_weights(target, manifest=manifest_with())


def load_quietly(target, root, manifest=None, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnpinnedChecksumWarning)
        return load_moore_weights(target, root, manifest or manifest_with(), **kwargs)


def rewrite(path: Path, edit) -> None:
    state = torch.load(path, weights_only=True)
    edit(state)
    torch.save(state, path)


def test_extra_key_is_named(release):
    _, root = release
    rewrite(root / "denoising_unet.pth", lambda s: s.update({"down_blocks.0.bogus.weight": torch.zeros(1)}))
    with pytest.raises(CheckpointError) as err:
        load_quietly(tiny_generator(seed=2), root)
    message = str(err.value)
    assert "denoising_unet.pth" in message and "unexpected keys (1): down_blocks.0.bogus.weight" in message


def test_missing_key_is_named_and_reference_net_tolerates_only_its_head(release):
    _, root = release
    rewrite(root / "reference_unet.pth", lambda s: s.pop("conv_in.weight"))
    with pytest.raises(CheckpointError) as err:
        load_quietly(tiny_generator(seed=2), root)
    message = str(err.value)
    assert "reference_unet.pth" in message and "missing keys (1): conv_in.weight" in message
    assert "conv_out" not in message


def test_many_keys_are_cut_to_ten_and_counted(release):
    _, root = release
    rewrite(root / "pose_guider.pth", lambda s: s.update({f"extra.{i:02d}": torch.zeros(1) for i in range(13)}))
    with pytest.raises(CheckpointError, match=r"unexpected keys \(13\): extra\.00, .*extra\.09, \.\.\. \(3 more\)"):
        load_quietly(tiny_generator(seed=2), root)


def test_wrong_shape_is_named(release):
    _, root = release
    rewrite(root / "pose_guider.pth", lambda s: s.update({"conv_out.weight": torch.zeros(8, 8, 1, 1)}))
    with pytest.raises(CheckpointError) as err:
        load_quietly(tiny_generator(seed=2), root)
    message = str(err.value)
    assert "pose_guider.pth" in message
    assert "keys with the wrong shape (1): conv_out.weight (file (8, 8, 1, 1), model (8, 8, 3, 3))" in message


def test_motion_module_missing_key_names_the_diffusers_key(release):
    _, root = release
    dropped = "down_blocks.1.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.1.to_k.weight"
    rewrite(root / "motion_module.pth", lambda s: s.pop(dropped))
    with pytest.raises(CheckpointError) as err:
        load_quietly(tiny_generator(seed=2), root)
    message = str(err.value)
    assert "motion_module.pth" in message
    assert "down_blocks.1.motion_modules.0.transformer_blocks.0.attn2.to_k.weight" in message


def test_motion_module_with_another_positional_encoding_is_refused(release):
    _, root = release
    key = "mid_block.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.0.pos_encoder.pe"
    rewrite(root / "motion_module.pth", lambda s: s[key].mul_(2.0))
    with pytest.raises(CheckpointError, match=re.escape(key) + ": differs from the sinusoidal encoding"):
        load_quietly(tiny_generator(seed=2), root)


@pytest.mark.parametrize("relative", ["motion_module.pth", "sd-vae-ft-mse/diffusion_pytorch_model.safetensors"])
def test_truncated_file_is_reported(release, relative):
    source, root = release
    if relative.endswith(".safetensors"):
        (root / "sd-vae-ft-mse" / "diffusion_pytorch_model.bin").unlink()
        save_file(legacy_vae_names(source.vae.state_dict()), root / relative)
    data = (root / relative).read_bytes()
    (root / relative).write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=rf"cannot read .*{re.escape(relative)}.*truncated or corrupt"):
        load_quietly(tiny_generator(seed=2), root)


def test_checksum_mismatch_stops_the_load(release):
    _, root = release
    wrong = sha256_file(root / "pose_guider.pth")  # a real digest, of another file
    with pytest.raises(CheckpointError) as err:
        load_quietly(tiny_generator(seed=2), root, manifest_with({"denoising_unet.pth": wrong}))
    message = str(err.value)
    assert "checksum mismatch" in message and "denoising_unet.pth" in message and wrong in message


def test_shipped_vae_digest_is_enforced(release):
    """The manifest pins the real sd-vae-ft-mse safetensors digest; a stand-in file must fail it."""
    source, root = release
    (root / "sd-vae-ft-mse" / "diffusion_pytorch_model.bin").unlink()
    save_file(legacy_vae_names(source.vae.state_dict()), root / "sd-vae-ft-mse" / "diffusion_pytorch_model.safetensors")
    with pytest.raises(CheckpointError, match=r"checksum mismatch .*diffusion_pytorch_model\.safetensors"):
        load_quietly(tiny_generator(seed=2), root, load_manifest(), components=["vae"])


def test_missing_file_says_where_to_get_it(release):
    _, root = release
    (root / "pose_guider.pth").unlink()
    with pytest.raises(CheckpointError) as err:
        load_quietly(tiny_generator(seed=2), root)
    message = str(err.value)
    assert "missing weights file pose_guider.pth" in message and "entry 'pose_guider'" in message
    assert "huggingface.co/patrolli/AnimateAnyone" in message


def test_architecture_mismatch_names_the_field(release):
    _, root = release
    config_path = root / "stable-diffusion-v1-5" / "unet" / "config.json"
    config = json.loads(config_path.read_text())
    config["attention_head_dim"] = 4  # same weight shapes, different number of heads
    config_path.write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"config\.json .*\n  attention_head_dim: file 4, model 2"):
        load_quietly(tiny_generator(seed=2), root)


def test_a_failed_load_leaves_the_model_untouched(release):
    _, root = release
    rewrite(root / "motion_module.pth", lambda s: s.update({"stray": torch.zeros(1)}))
    target = tiny_generator(seed=2)
    before = {k: v.clone() for k, v in target.denoising_unet.state_dict().items()}
    with pytest.raises(CheckpointError, match="stray"):
        load_quietly(target, root)
    assert all(torch.equal(v, before[k]) for k, v in target.denoising_unet.state_dict().items())


def test_components_that_are_none_are_skipped_or_refused(release):
    _, root = release
    target = tiny_generator(seed=2)
    target.vae = None
    target.motion_adapter = None
    report = load_quietly(target, root)
    assert {f.component for f in report.files} == {"denoising_unet", "reference_unet", "pose_guider", "image_encoder"}
    with pytest.raises(CheckpointError, match=r"cannot load model\.vae: None in this model"):
        load_quietly(target, root, components=["vae"])


def test_shipped_manifest_covers_the_paper_release():
    manifest = load_manifest()
    needed = {r.weights for r in COMPONENT_RULES} | {r.config for r in COMPONENT_RULES if r.config}
    assert needed <= set(manifest.entries)
    for name in ("denoising_unet", "reference_unet", "pose_guider", "motion_module"):
        assert manifest.entries[name].hf_repo == "patrolli/AnimateAnyone"
        assert manifest.entries[name].path == f"{name}.pth"
    pinned = [e for e in manifest.entries.values() if e.sha256]
    assert all(e.sha256_source for e in pinned)


def test_a_digest_without_source_is_rejected(tmp_path):
    text = (Path(load_manifest()._origin)).read_text().replace(
        "path: denoising_unet.pth\n    sha256: null", "path: denoising_unet.pth\n    sha256: " + "ab" * 32
    )
    (tmp_path / "weights.yaml").write_text(text)
    with pytest.raises(CheckpointError, match="needs a sha256_source"):
        load_manifest(tmp_path / "weights.yaml")


def test_loads_through_the_generator_container(tmp_path):
    components = pytest.importorskip("poseguard_lib.models.components")
    from poseguard_lib.config import load_profile

    profile = load_profile("tiny")
    source, target = components.build_model(profile, seed=1), components.build_model(profile, seed=2)
    randomise(source)
    assert_all_different(source, target)
    root = tmp_path / "weights"
    write_release(source, root)
    report = load_quietly(target, root)
    loaded = {f.component for f in report.files if f.role == "weights"}
    expected = {name for name in COMPONENTS if getattr(target, name) is not None}
    assert loaded == expected and {"denoising_unet", "motion_adapter"} <= loaded
    for name in loaded:
        skip = ("conv_norm_out.", "conv_out.") if name == "reference_unet" else ()
        assert_same_weights(getattr(target, name), getattr(source, name), skip=skip)


# The released architecture files, as published (copies found in public mirrors of the Hub repos:
# HDRJ-One/runwayml-stable-diffusion-v1-5 unet/config.json, JSchalter/models sd-vae-ft-mse/config.json,
# yuanqi99/sd-image-variations-diffusers image_encoder/config.json at a430b6b).
SD15_UNET_CONFIG = {
    "_class_name": "UNet2DConditionModel", "_diffusers_version": "0.17.0.dev0", "act_fn": "silu",
    "addition_embed_type": None, "addition_embed_type_num_heads": 64, "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280], "center_input_sample": False,
    "class_embed_type": None, "class_embeddings_concat": False, "conv_in_kernel": 3,
    "conv_out_kernel": 3, "cross_attention_dim": 768, "cross_attention_norm": None,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1, "dual_cross_attention": False, "encoder_hid_dim": None,
    "flip_sin_to_cos": True, "freq_shift": 0, "in_channels": 4, "layers_per_block": 2,
    "mid_block_only_cross_attention": None, "mid_block_scale_factor": 1,
    "mid_block_type": "UNetMidBlock2DCrossAttn", "norm_eps": 1e-05, "norm_num_groups": 32,
    "num_class_embeds": None, "only_cross_attention": False, "out_channels": 4,
    "projection_class_embeddings_input_dim": None, "resnet_out_scale_factor": 1.0,
    "resnet_skip_time_act": False, "resnet_time_scale_shift": "default", "sample_size": 64,
    "time_cond_proj_dim": None, "time_embedding_act_fn": None, "time_embedding_dim": None,
    "time_embedding_type": "positional", "timestep_post_act": None,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "upcast_attention": None, "use_linear_projection": False,
}
SD_VAE_FT_MSE_CONFIG = {
    "_class_name": "AutoencoderKL", "_diffusers_version": "0.4.2", "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512], "down_block_types": ["DownEncoderBlock2D"] * 4,
    "in_channels": 3, "latent_channels": 4, "layers_per_block": 2, "norm_num_groups": 32,
    "out_channels": 3, "sample_size": 256, "up_block_types": ["UpDecoderBlock2D"] * 4,
}
SD_IMAGE_VARIATIONS_ENCODER_CONFIG = {
    "_name_or_path": "./lambdalabs/sd-image-variations-diffusers/image_encoder",
    "architectures": ["CLIPVisionModelWithProjection"], "attention_dropout": 0.0, "dropout": 0.0,
    "hidden_act": "quick_gelu", "hidden_size": 1024, "image_size": 224, "initializer_factor": 1.0,
    "initializer_range": 0.02, "intermediate_size": 4096, "layer_norm_eps": 1e-05,
    "model_type": "clip_vision_model", "num_attention_heads": 16, "num_channels": 3,
    "num_hidden_layers": 24, "patch_size": 14, "projection_dim": 768, "torch_dtype": "float32",
    "transformers_version": "4.25.0.dev0",
}


def test_paper_build_matches_the_released_architectures(tmp_path):
    """The generator's paper profile must agree with SD1.5 / sd-vae-ft-mse / sd-image-variations configs."""
    components = pytest.importorskip("poseguard_lib.models.components")
    from accelerate import init_empty_weights

    from poseguard_lib.config import load_profile
    from poseguard_lib.models.checkpoints import check_config

    with init_empty_weights():  # meta tensors: the architecture without 1.5 GB of weights
        model = components.build_model(load_profile("paper"))
    rules = {r.component: r for r in COMPONENT_RULES}
    for component, config in (
        ("denoising_unet", SD15_UNET_CONFIG), ("reference_unet", SD15_UNET_CONFIG),
        ("vae", SD_VAE_FT_MSE_CONFIG), ("image_encoder", SD_IMAGE_VARIATIONS_ENCODER_CONFIG),
    ):
        path = tmp_path / f"{component}.json"
        path.write_text(json.dumps(config))
        check_config(path, getattr(model, component), rules[component].config_fields, str(path))
    bad = dict(SD15_UNET_CONFIG, cross_attention_dim=1024)
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(CheckpointError, match="cross_attention_dim: file 1024, model 768"):
        check_config(tmp_path / "bad.json", model.denoising_unet, rules["denoising_unet"].config_fields, "bad.json")


def test_sd15_motion_module_layout_fits_the_paper_adapter():
    """At SD1.5 size (meta tensors), 21 AnimateDiff modules map one-to-one onto the MotionAdapter."""
    components = pytest.importorskip("poseguard_lib.models.components")
    from accelerate import init_empty_weights

    from poseguard_lib.config import load_profile
    from poseguard_lib.models.checkpoints import animatediff_to_diffusers, fit_state_dict

    with init_empty_weights():
        adapter = components.build_model(load_profile("paper")).motion_adapter
    released = to_animatediff_layout(adapter.state_dict())
    modules = {re.match(r"^(.+?\.motion_modules\.\d+)\.", k).group(1) for k in released}
    assert len(modules) == 21
    converted, positional = animatediff_to_diffusers(released)
    fit = fit_state_dict(converted, adapter, allowed_missing=("*.pos_embed.pe",), describe="motion_module.pth")
    assert sorted(fit.tolerated_missing) == sorted(positional) and len(positional) == 21
    assert all(len(copies) == 2 for copies in positional.values())  # one per attention block
