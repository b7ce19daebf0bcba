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


@pytest.mark.parametrize(
    "names",
    [
        [],
        ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"],
        ["pytorch_model.bin", "model.pth", "open_clip_pytorch_model.pth"],
        ["b.pth", "a.bin", "z.safetensors", "c.safetensors"],
        ["model.pth", "x.safetensors"],
        ["notes.txt", "open_clip_config.json"],
        ["m.bin", "m.pth", "model.safetensors", "pytorch_model.pth"],
    ],
)
def test_local_dir_weights_are_the_file_open_clip_loads(tmp_path, names):
    """tv100 picks the checkpoint itself (no open_clip import for a key): the same file."""
    from open_clip.factory import _find_checkpoint_in_dir

    from tv100.tasks.rank.models import _checkpoint_in_dir

    for name in names:
        (tmp_path / name).write_bytes(b"w")
    ours = _checkpoint_in_dir(tmp_path)
    theirs = _find_checkpoint_in_dir(tmp_path)
    assert (str(ours) if ours else None) == theirs


def test_a_local_dir_key_imports_neither_torch_nor_open_clip(tmp_path):
    """A warm re-run needs only the model key: no seconds of torch and open_clip imports."""
    import json
    import subprocess
    import sys

    (tmp_path / "open_clip_config.json").write_text(json.dumps({"embed_dim": 8}))
    (tmp_path / "open_clip_model.safetensors").write_bytes(b"weights")
    code = (
        "import sys; from tv100.tasks.rank.models import model_key; "
        f"print(model_key('local-dir:{tmp_path}')); "
        "print(sorted(m for m in ('torch', 'open_clip') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    key, loaded = out.stdout.splitlines()
    assert key.startswith(f"{tmp_path.name}@")
    assert loaded == "[]"
