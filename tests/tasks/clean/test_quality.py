"""tasks/clean/quality.py: junk flags, scores, the exclusion list, decode errors."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageDraw

from tv100.sandbox.imagegen import encode, make_photo
from tv100.storage.schemas import QUALITY
from tv100.tasks.clean.config import QualityConfig
from tv100.tasks.clean.quality import (
    assess_image,
    assess_images,
    load_exclusions,
)


def solid(w: int = 400, h: int = 300, color=(200, 30, 30)) -> Image.Image:
    return Image.new("RGB", (w, h), color)


def near_uniform(w: int = 400, h: int = 300) -> Image.Image:
    rng = np.random.default_rng(7)
    arr = np.full((h, w, 3), 128, np.int16) + rng.integers(-3, 4, (h, w, 1), dtype=np.int16)
    return Image.fromarray(arr.astype(np.uint8), "RGB")


def full_noise(w: int = 400, h: int = 400) -> Image.Image:
    rng = np.random.default_rng(8)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")


def two_tone_logo(w: int = 500, h: int = 300) -> Image.Image:
    img = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(img)
    draw.rectangle([50, 50, 450, 250], outline="black", width=12)
    draw.ellipse([150, 80, 350, 220], fill="black")
    return img


def transparent_png() -> bytes:
    # Random RGB under alpha 0: invisible, shown as plain white.
    rng = np.random.default_rng(9)
    rgba = rng.integers(0, 256, (300, 300, 4), dtype=np.uint8)
    rgba[..., 3] = 0
    return encode(Image.fromarray(rgba, "RGBA"), "PNG")


CASES = [
    ("photo", lambda: encode(make_photo(1), quality=85), None),
    ("solid-colour", lambda: encode(solid(), quality=90), "blank,low_entropy"),
    ("near-uniform-noise", lambda: encode(near_uniform(), "PNG"), "blank,low_entropy"),
    ("transparent-png", transparent_png, "blank,low_entropy"),
    ("two-tone-logo", lambda: encode(two_tone_logo(), "PNG"), "low_entropy"),
    ("tiny", lambda: encode(make_photo(2, 80, 60), quality=85), "too_small"),
    ("banner", lambda: encode(make_photo(3, 1200, 200), quality=85), "extreme_aspect"),
    ("tall-strip", lambda: encode(make_photo(4, 150, 900), quality=85), "extreme_aspect"),
    ("tiny-and-blank", lambda: encode(solid(40, 40), "PNG"), "blank,low_entropy,too_small"),
]


@pytest.mark.parametrize("make, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_flags_and_reason(make, expected):
    row = assess_image(make())
    assert row["status"] == "ok" and row["error_message"] is None
    assert row["reason"] == expected
    assert row["is_junk"] is (expected is not None)
    failed = set(expected.split(",")) if expected else set()
    for check in ("blank", "low_entropy", "too_small", "extreme_aspect"):
        assert row[f"is_{check}"] is (check in failed), check


def test_full_range_noise_is_not_blank_nor_low_entropy():
    """Noise is meaningless but busy: these cheap checks pass it (documented limitation)."""
    row = assess_image(encode(full_noise(), "PNG"))
    assert row["blank_score"] > 60
    assert row["low_entropy_score"] > 7.5
    assert row["is_junk"] is False


def test_scores_have_the_documented_units():
    row = assess_image(encode(make_photo(5, 900, 300), quality=90))
    assert row["too_small_score"] == 300
    assert row["extreme_aspect_score"] == pytest.approx(3.0)
    assert row["is_extreme_aspect"] is False, "exactly max_aspect is allowed"
    assert 0.0 <= row["low_entropy_score"] <= 8.0
    solid_row = assess_image(encode(solid(), "PNG"))
    assert solid_row["blank_score"] == 0.0 and solid_row["low_entropy_score"] == 0.0


def test_thresholds_are_configurable_and_inclusive_at_the_boundary():
    data = encode(make_photo(6, 300, 200), quality=85)
    assert assess_image(data, QualityConfig(min_side=200))["is_too_small"] is False
    assert assess_image(data, QualityConfig(min_side=201))["is_too_small"] is True
    assert assess_image(data, QualityConfig(max_aspect=1.4))["is_extreme_aspect"] is True


def test_path_and_bytes_give_the_same_row(tmp_path):
    data = encode(make_photo(7), quality=85)
    path = tmp_path / "a.jpg"
    path.write_bytes(data)
    assert assess_image(path) == assess_image(data)


def test_decode_error_is_a_junk_row():
    row = assess_image(b"<html>not an image</html>")
    assert row["status"] == "decode_error"
    assert row["is_junk"] is True and row["reason"] == "decode_error"
    assert row["error_message"] == "UnidentifiedImageError: cannot identify image file <bytes>"
    assert row["blank_score"] is None and row["is_blank"] is None


def _items(tmp_path):
    specs = {
        "good": encode(make_photo(11), quality=85),
        "blank": encode(solid(), quality=90),
        "listed": encode(make_photo(12), quality=85),
        "by-url": encode(make_photo(13), quality=85),
        "broken": b"\xff\xd8\xff garbage",
    }
    items = []
    for image_id, data in specs.items():
        path = tmp_path / f"{image_id}.img"
        path.write_bytes(data)
        items.append((image_id, path))
    return items


def test_exclusion_list_csv_by_id_and_url(tmp_path):
    excl = tmp_path / "exclude.csv"
    excl.write_text(
        "image_id_or_url,reason\n"
        "listed,watermarked fan art\n"
        "https://example.org/x.jpg,\n"
        "blank,also listed\n"
        "   ,ignored blank key\n"
    )
    table = assess_images(
        _items(tmp_path), exclusions=excl, urls={"by-url": "https://example.org/x.jpg"}
    )
    assert table.schema.equals(QUALITY)
    rows = {r["image_id"]: r for r in table.to_pylist()}
    assert list(rows) == ["good", "blank", "listed", "by-url", "broken"]
    assert rows["good"]["is_junk"] is False and rows["good"]["is_excluded"] is False
    assert rows["listed"]["is_excluded"]
    assert rows["listed"]["exclude_reason"] == "watermarked fan art"
    assert rows["listed"]["is_junk"] and rows["listed"]["reason"] == "excluded"
    assert rows["by-url"]["exclude_reason"] == "on the exclusion list"
    assert rows["blank"]["reason"] == "blank,low_entropy,excluded"
    assert rows["broken"]["status"] == "decode_error" and rows["broken"]["reason"] == "decode_error"


def test_exclusion_list_parquet_and_mapping(tmp_path):
    path = tmp_path / "exclude.parquet"
    pq.write_table(pa.table({"image_id_or_url": ["good"], "reason": ["duplicate poster"]}), path)
    assert load_exclusions(path) == {"good": "duplicate poster"}
    by_path = assess_images(_items(tmp_path), exclusions=path)
    by_map = assess_images(_items(tmp_path), exclusions={"good": "duplicate poster"})
    assert by_path.equals(by_map)
    assert by_path.column("is_excluded").to_pylist() == [True, False, False, False, False]


def test_exclusion_list_without_key_column_names_it(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("url,reason\nx,y\n")
    with pytest.raises(ValueError, match="image_id_or_url"):
        load_exclusions(bad)


def test_workers_give_the_same_table(tmp_path):
    items = _items(tmp_path)
    assert assess_images(items, workers=2).equals(assess_images(items, workers=1))
