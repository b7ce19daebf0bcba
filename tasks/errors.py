"""One-line text of an exception, the form every ``error_message`` column uses."""

from __future__ import annotations

import re

_ADDRESS_RE = re.compile(r"<[^<>]* at 0x[0-9a-fA-F]+>")


def error_text(err: BaseException) -> str:
    """``"TypeName: message"`` (just ``"TypeName"`` when the message is empty).

    Object reprs with memory addresses (Pillow names the ``BytesIO`` it could not
    identify) become ``<bytes>``, so reruns write byte-identical tables.
    """
    msg = _ADDRESS_RE.sub("<bytes>", str(err).strip())
    return f"{type(err).__name__}: {msg}" if msg else type(err).__name__
