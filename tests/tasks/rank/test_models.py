"""tasks/rank/models.py: model specs, and resolving them to the key of the exact weights."""

from __future__ import annotations

import pytest

from tv100.storage.atomic import sha256_file
from tv100.tasks.rank.models import ModelSpec, WeightsNotFoundError, model_key, weights_sha256


def test_spec_parse_forms():
    s = ModelSpec.parse("ViT-B-32@laion2b_s34b_b79k")
    assert (s.arch, s.weights) == ("ViT-B-32", "laion2b_s34b_b79k")
    assert str(s) == "ViT-B-32@laion2b_s34b_b79k"
    f = ModelSpec.parse("ViT-B-32@/models/a@b.safetensors")  # only the first @ splits
    assert f.weights == "/models/a@b.safetensors"
    d = ModelSpec.parse("local-dir:/models/my-clip")
    assert d.is_local_dir and d.weights is None and str(d) == "local-dir:/models/my-clip"
    assert ModelSpec.parse("ViT-B-32@random", seed=3).seed == 3
    assert ModelSpec.parse(s) is s


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"arch": ""}, "arch"),
        ({"arch": "ViT-B-32"}, "weights"),
        ({"arch": "local-dir:/x", "weights": "y"}, "weights"),
        ({"arch": "local-dir:"}, "local-dir"),
        ({"arch": "hf-hub:org/repo"}, "hf-hub"),
        ({"arch": "ViT-B-32", "weights": "random", "precision": "fp8"}, "precision"),
        ({"arch": "ViT-B-32", "weights": "random", "seed": -1}, "seed"),
    ],
)
def test_spec_validation_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        ModelSpec(**kwargs)


def test_spec_without_weights_says_how_to_provide():
    with pytest.raises(ValueError, match="ARCH@WEIGHTS"):
        ModelSpec.parse("ViT-B-32")


def test_unknown_tag_lists_the_tags():
    with pytest.raises(WeightsNotFoundError) as err:
        model_key("ViT-B-32@no_such_tag")
    assert "laion2b_s34b_b79k" in str(err.value) and "no_such_tag" in str(err.value)


def test_local_dir_without_weights_or_config(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="open_clip_config.json"):
        model_key(f"local-dir:{tmp_path / 'absent'}")
    (tmp_path / "open_clip_config.json").write_text('{"model_cfg": {}}')
    with pytest.raises(WeightsNotFoundError, match=r"\*\.safetensors"):
        model_key(f"local-dir:{tmp_path}")


def test_unknown_architecture_suggests_names():
    with pytest.raises(ValueError, match="ViT-B-32"):
        model_key("ViT-B-33@random")


def test_weights_hash_is_the_files_and_follows_changes(tmp_path):
    path = tmp_path / "w.bin"
    path.write_bytes(b"one")
    assert weights_sha256(path) == sha256_file(path)
    path.write_bytes(b"two!")  # a new size: the memo does not hide the change
    assert weights_sha256(path) == sha256_file(path)
