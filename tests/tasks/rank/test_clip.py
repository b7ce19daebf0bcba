"""tasks/rank/clip.py: the one loader (tag, file, local-dir, random), saving, devices, prompts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.support.rank_fixtures import TINY_CFG, tiny_arch  # noqa: F401  (fixture)
from tv100.storage.atomic import is_temp
from tv100.tasks.rank.clip import (
    Clip,
    autocast_dtype,
    class_weights,
    clear_loaded,
    load_clip,
    resolve_device,
    save_local_dir,
    set_torch_threads,
)
from tv100.tasks.rank.config import DEFAULT_TEMPLATES, ENSEMBLE_TEMPLATES
from tv100.tasks.rank.models import ModelSpec, WeightsNotFoundError, model_key


def test_random_init_is_seeded_and_unpacks(tiny_arch):  # noqa: F811
    a = load_clip(f"{tiny_arch}@random", "cpu", reuse=False)
    b = load_clip(ModelSpec(tiny_arch, "random"), "cpu", reuse=False)
    c = load_clip(ModelSpec(tiny_arch, "random", seed=1), "cpu", reuse=False)
    model, preprocess, tokenizer = a  # open_clip's triple
    assert model is a.model and preprocess is a.preprocess and tokenizer is a.tokenizer
    assert a.key == f"{tiny_arch}@random-0" and c.key == f"{tiny_arch}@random-1"
    sa, sb, sc = (m.model.state_dict() for m in (a, b, c))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    assert a.image_size == 32 and a.embed_dim == 32
    assert a.device.type == "cpu" and a.amp_dtype is None


def test_loading_does_not_touch_the_global_rng(tiny_arch):  # noqa: F811
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    load_clip(f"{tiny_arch}@random", "cpu", reuse=False)
    assert torch.equal(torch.rand(3), expected)


def test_checkpoint_file_and_local_dir_load_the_same_weights(tiny_arch, tmp_path):  # noqa: F811
    src = load_clip(ModelSpec(tiny_arch, "random", seed=7), "cpu", reuse=False)
    ckpt = tmp_path / "weights.pt"
    torch.save(src.model.state_dict(), ckpt)
    folder = save_local_dir(tmp_path / "my-clip", src.model, TINY_CFG)
    assert {p.name for p in folder.iterdir()} == {
        "open_clip_config.json",
        "open_clip_model.safetensors",
    }
    from_file = load_clip(f"{tiny_arch}@{ckpt}", "cpu", reuse=False)
    from_dir = load_clip(f"local-dir:{folder}", "cpu", reuse=False)
    x = torch.rand(2, 3, 32, 32)
    with torch.inference_mode():
        ref = src.model.encode_image(x)
        assert torch.equal(from_file.model.encode_image(x), ref)
        assert torch.equal(from_dir.model.encode_image(x), ref)
    assert from_file.key.startswith(f"{tiny_arch}@") and len(from_file.key.split("@")[1]) == 12
    assert from_dir.key.startswith("my-clip@")
    assert model_key(f"{tiny_arch}@{ckpt}") == from_file.key
    assert from_dir.tokenizer(["a photo"]).shape == (1, TINY_CFG["text_cfg"]["context_length"])


def test_save_local_dir_replaces_a_folder_whole(tiny_arch, tmp_path):  # noqa: F811
    a = load_clip(ModelSpec(tiny_arch, "random", seed=1), "cpu", reuse=False)
    b = load_clip(ModelSpec(tiny_arch, "random", seed=2), "cpu", reuse=False)
    folder = save_local_dir(tmp_path / "clip", a.model, TINY_CFG, files={"meta.json": "{}"})
    key_a = model_key(f"local-dir:{folder}")
    assert save_local_dir(folder, b.model, TINY_CFG) == folder
    # The old folder (with its extra file) is gone as a whole; no temp folder is left.
    assert {p.name for p in folder.iterdir()} == {
        "open_clip_config.json",
        "open_clip_model.safetensors",
    }
    assert not [p for p in tmp_path.iterdir() if is_temp(p.name)]
    assert model_key(f"local-dir:{folder}") != key_a


def test_key_follows_the_weights_not_the_path(tiny_arch, tmp_path):  # noqa: F811
    a = load_clip(ModelSpec(tiny_arch, "random", seed=1), "cpu", reuse=False)
    b = load_clip(ModelSpec(tiny_arch, "random", seed=2), "cpu", reuse=False)
    p1, p2 = tmp_path / "one.pt", tmp_path / "two.pt"
    torch.save(a.model.state_dict(), p1)
    p2.write_bytes(p1.read_bytes())
    assert model_key(f"{tiny_arch}@{p1}") == model_key(f"{tiny_arch}@{p2}")
    torch.save(b.model.state_dict(), p2)  # retrained in place: a new key
    assert model_key(f"{tiny_arch}@{p1}") != model_key(f"{tiny_arch}@{p2}")


def test_reuse_returns_the_loaded_model(tiny_arch):  # noqa: F811
    clear_loaded()
    a = load_clip(f"{tiny_arch}@random", "cpu")
    assert load_clip(f"{tiny_arch}@random", "cpu") is a
    clear_loaded()
    assert load_clip(f"{tiny_arch}@random", "cpu") is not a


def test_missing_file_says_where_it_looked_and_how_to_provide(tiny_arch, tmp_path):  # noqa: F811
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(WeightsNotFoundError) as err:
        load_clip(f"{tiny_arch}@{missing}")
    msg = str(err.value)
    assert str(missing) in msg
    assert "local-dir:" in msg and "pretrained tag" in msg and "checkpoint file" in msg


def test_tag_without_network_says_where_it_looked(tmp_path, monkeypatch):
    """A known tag whose weights are not cached: offline, the download fails at once."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsNotFoundError) as err:
        load_clip(ModelSpec("RN50", "openai", cache_dir=str(tmp_path)), "cpu", reuse=False)
    msg = str(err.value)
    assert str(tmp_path) in msg and "network access" in msg and "local-dir:" in msg


def test_device_is_cuda_when_available(monkeypatch):
    assert resolve_device("cpu").type == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device(None).type == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto").type == "cuda"


def test_autocast_dtype(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert autocast_dtype(cpu, "auto") is None and autocast_dtype(cpu, "bf16") is None
    assert autocast_dtype(cuda, "fp32") is None
    assert autocast_dtype(cuda, "fp16") is torch.float16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert autocast_dtype(cuda, "auto") is torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert autocast_dtype(cuda, "auto") is torch.float16


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_autocast_matches_cpu(tiny_arch):  # noqa: F811
    cpu = load_clip(f"{tiny_arch}@random", "cpu", reuse=False)
    gpu = load_clip(f"{tiny_arch}@random", "cuda", reuse=False)
    names = ["The Jade Lantern", "Moonlit Harbor", "Silent River"]
    a, b = class_weights(cpu, names), class_weights(gpu, names)
    assert np.abs(a - b).max() < 2e-2


def test_set_torch_threads_restores():
    before = torch.get_num_threads()
    try:
        assert set_torch_threads(1) == 1 and torch.get_num_threads() == 1
        assert set_torch_threads(None) >= 1
        with pytest.raises(ValueError, match="threads"):
            set_torch_threads(0)
    finally:
        torch.set_num_threads(before)


def test_class_weights_are_unit_means_of_prompts(tiny_arch):  # noqa: F811
    clip: Clip = load_clip(f"{tiny_arch}@random", "cpu")
    names = ["The Jade Lantern", 'Operation "Silver Crane"', "Love in Busan"]
    single = class_weights(clip, names)
    assert single.shape == (3, 32) and np.allclose(np.linalg.norm(single, axis=1), 1, atol=1e-5)
    direct = clip.text_features([DEFAULT_TEMPLATES[0].format(n) for n in names])
    assert np.allclose(single, direct, atol=1e-5)
    ens = class_weights(clip, names, ENSEMBLE_TEMPLATES, classes_per_batch=2)
    per_prompt = np.stack(
        [clip.text_features([t.format(n) for t in ENSEMBLE_TEMPLATES]).mean(0) for n in names]
    )
    per_prompt /= np.linalg.norm(per_prompt, axis=1, keepdims=True)
    assert np.allclose(ens, per_prompt, atol=1e-5)
