"""tasks/errors.py: the one-line text of an exception every error_message column uses."""

from __future__ import annotations

import io

from PIL import Image, UnidentifiedImageError

from tv100.tasks.errors import error_text


def test_error_text_is_type_and_message():
    assert error_text(ValueError("bad value ")) == "ValueError: bad value"
    assert error_text(KeyError()) == "KeyError"


def test_error_text_has_no_memory_address():
    try:
        Image.open(io.BytesIO(b"not an image"))
    except UnidentifiedImageError as err:
        text = error_text(err)
    assert text.startswith("UnidentifiedImageError: ") and "<bytes>" in text
    assert " at 0x" not in text
