"""Naming CLIP models: a `ModelSpec` and the key of the exact weights it resolves to.

A model is named by a `ModelSpec`, written ``ARCH@WEIGHTS`` or ``local-dir:FOLDER``:

- ``ViT-B-32@laion2b_s34b_b79k``: an open_clip architecture with a pretrained tag. open_clip
  downloads the weights on first use (Hugging Face cache, ``~/.cache/huggingface/hub``), so
  this needs network access once; afterwards the cache is enough.
- ``ViT-B-32@/models/vit-b-32.safetensors``: the architecture with a local checkpoint file
  (``.safetensors``, ``.bin``, ``.pt``, ``.pth``).
- ``local-dir:/models/my-clip``: a folder laid out like a Hugging Face hub repo,
  ``open_clip_config.json`` (``model_cfg`` + ``preprocess_cfg``) beside the weights
  (``open_clip_model.safetensors``, ``open_clip_pytorch_model.bin``, ...);
  `tv100.tasks.rank.clip.save_local_dir` writes one.
- ``ViT-B-32@random``: random initial weights, seeded by `ModelSpec.seed`; for benchmarks and
  tests only, it recognises nothing.

`model_key` names the architecture *and* the exact weights: ``ARCH@TAG`` for a tag,
``ARCH@<first 12 hex digits of the weights' sha256>`` for a file,
``FOLDER-NAME@<sha256 prefix of config + weights>`` for a folder, ``ARCH@random-SEED``.
Tables store it in their ``model_key`` column and caches key on it, so retraining a
checkpoint in place gives a new key and never mixes old and new embeddings.

open_clip is imported inside the functions that need it: importing it costs seconds, and
the CLI imports this module just to validate ``--model``.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tv100.storage.atomic import sha256_file

#: `ModelSpec.weights` value for random initial weights.
RANDOM_WEIGHTS = "random"
LOCAL_DIR_PREFIX = "local-dir:"
CHECKPOINT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
#: The config file of a ``local-dir:`` folder.
CONFIG_FILE = "open_clip_config.json"


class WeightsNotFoundError(FileNotFoundError):
    """The weights a `ModelSpec` names are not there; the message says where it looked."""


def how_to_provide(arch: str) -> str:
    """The hint every missing-weights error ends with."""
    return (
        "Provide the weights in one of three ways: run once with network access and a "
        f"pretrained tag ({arch}@TAG; open_clip caches the download), pass a checkpoint file "
        f"({arch}@/path/to/open_clip_pytorch_model.bin or .safetensors), or pass a folder with "
        f"open_clip_config.json beside the weights (local-dir:/path/to/folder)."
    )


@dataclass(frozen=True)
class ModelSpec:
    """Which CLIP to load (see the module docstring for the forms).

    Attributes:
        arch: an open_clip architecture name (``ViT-B-32``; see ``open_clip.list_models()``
            and ``open_clip.add_model_config``) or ``local-dir:FOLDER``.
        weights: a pretrained tag, a checkpoint file path, or ``"random"``; must be None with
            ``local-dir:`` (the folder holds the weights).
        cache_dir: where open_clip keeps downloaded tag weights (None: its default).
        precision: ``auto`` (CUDA: bf16 autocast, fp16 without bf16; CPU: fp32), ``fp32``,
            ``fp16`` or ``bf16`` (autocast dtypes; CUDA only, CPU always runs fp32).
        seed: seeds random initial weights (``weights="random"``); ignored otherwise.
    """

    arch: str
    weights: str | None = None
    cache_dir: str | None = None
    precision: str = "auto"
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.arch or self.arch.strip() != self.arch or "@" in self.arch:
            raise ValueError(
                f"ModelSpec.arch={self.arch!r}; expected an open_clip architecture such as "
                "'ViT-B-32' or 'local-dir:/path/to/folder'"
            )
        if self.arch.startswith("hf-hub:"):
            raise ValueError(
                f"ModelSpec.arch={self.arch!r}: hf-hub: names are not supported (weights could "
                "change under the same name); download the repo and use local-dir:FOLDER"
            )
        if self.is_local_dir:
            if self.weights is not None:
                raise ValueError(
                    f"ModelSpec.weights={self.weights!r} with arch {self.arch!r}; expected None "
                    "(a local-dir: folder holds its own weights)"
                )
            if not self.arch[len(LOCAL_DIR_PREFIX) :]:
                raise ValueError("ModelSpec.arch='local-dir:' has no folder; expected a path")
        elif not self.weights:
            raise ValueError(
                f"ModelSpec.weights={self.weights!r} for {self.arch!r}; expected a pretrained "
                f"tag, a checkpoint file or {RANDOM_WEIGHTS!r}. " + how_to_provide(self.arch)
            )
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"ModelSpec.precision={self.precision!r}; expected one of {PRECISIONS}"
            )
        if not 0 <= self.seed < 2**63:
            raise ValueError(f"ModelSpec.seed={self.seed!r}; expected 0..2**63-1")

    @property
    def is_local_dir(self) -> bool:
        return self.arch.startswith(LOCAL_DIR_PREFIX)

    @property
    def is_random(self) -> bool:
        return self.weights == RANDOM_WEIGHTS

    @property
    def local_dir(self) -> Path:
        """The folder of a ``local-dir:`` spec."""
        return Path(self.arch[len(LOCAL_DIR_PREFIX) :]).expanduser()

    @classmethod
    def parse(cls, text: str | ModelSpec, **kwargs: Any) -> ModelSpec:
        """Read ``ARCH@WEIGHTS`` or ``local-dir:FOLDER`` (a `ModelSpec` passes through).

        Args:
            text: the spec; everything after the first ``@`` is the weights.
            **kwargs: other `ModelSpec` fields (cache_dir, precision, seed).
        """
        if isinstance(text, ModelSpec):
            return text
        text = text.strip()
        if text.startswith(LOCAL_DIR_PREFIX):
            return cls(text, None, **kwargs)
        arch, sep, weights = text.partition("@")
        if not sep:
            raise ValueError(
                f"model {text!r} names no weights; expected ARCH@WEIGHTS (e.g. "
                "'ViT-B-32@laion2b_s34b_b79k', 'ViT-B-32@/path/model.safetensors') or "
                "'local-dir:/path/to/folder'"
            )
        return cls(arch, weights, **kwargs)

    def __str__(self) -> str:
        return self.arch if self.is_local_dir else f"{self.arch}@{self.weights}"


@dataclass(frozen=True)
class Resolved:
    """What open_clip is called with, and the model key.

    Attributes:
        name: the open_clip model name (an arch or ``local-dir:...``).
        pretrained: tag or file for open_clip; None for local-dir and random weights.
        key: the model key (see the module docstring).
    """

    name: str
    pretrained: str | None
    key: str


_SHA_CACHE: dict[tuple[str, int, int], str] = {}
_SHA_LOCK = threading.Lock()


def weights_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of a weights file, memoised on (real path, size, mtime).

    Checkpoints are hundreds of MB and every load resolves the key again, so each is hashed
    once per process unless it changes.
    """
    real = os.path.realpath(path)
    st = os.stat(real)
    memo = (real, st.st_size, st.st_mtime_ns)
    with _SHA_LOCK:
        if memo in _SHA_CACHE:
            return _SHA_CACHE[memo]
    digest = sha256_file(real)
    with _SHA_LOCK:
        _SHA_CACHE[memo] = digest
    return digest


def _check_arch(arch: str) -> None:
    import open_clip

    if open_clip.get_model_config(arch) is not None:
        return
    known = open_clip.list_models()
    close = difflib.get_close_matches(arch, known, n=5, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise ValueError(
        f"unknown open_clip architecture {arch!r}.{hint} Register a config with "
        "open_clip.add_model_config(path) or use local-dir:FOLDER with an "
        "open_clip_config.json."
    )


#: open_clip's preferred weights file names in a local-dir folder, best first
#: (``open_clip.factory._find_checkpoint_in_dir``).
_PREFERRED_CHECKPOINTS = (
    "open_clip_model.safetensors", "open_clip_pytorch_model.safetensors",
    "open_clip_pytorch_model.bin", "open_clip_pytorch_model.pth",
    "model.safetensors", "pytorch_model.bin", "pytorch_model.pth", "model.pth",
)


def _checkpoint_in_dir(folder: Path) -> Path | None:
    """The weights file open_clip picks in a local-dir folder, by its own rules.

    Kept here rather than imported: importing open_clip (and torch with it) takes seconds,
    and a model key (`resolve`) is all a warm re-run needs. A test checks it against
    open_clip's function.
    """
    found = sorted(p for ext in ("*.safetensors", "*.bin", "*.pth") for p in folder.glob(ext))
    if not found:
        return None
    found.sort(key=lambda p: p.suffix == ".safetensors", reverse=True)
    preferred = [p for p in found if p.name in _PREFERRED_CHECKPOINTS]
    if preferred:
        return min(preferred, key=lambda p: _PREFERRED_CHECKPOINTS.index(p.name))
    return found[0]


def resolve(spec: ModelSpec) -> Resolved:
    """Check that the weights `spec` names exist and compute its key.

    Raises:
        WeightsNotFoundError: the file, folder or tag is missing (the message says where it
            looked and how to provide weights).
        ValueError: an unknown architecture.
    """
    if spec.is_local_dir:
        folder = spec.local_dir
        config = folder / CONFIG_FILE
        if not folder.is_dir() or not config.is_file():
            raise WeightsNotFoundError(
                f"no CLIP model folder at {folder.resolve()}: looked for {config.resolve()}. "
                + how_to_provide("ARCH")
            )
        ckpt = _checkpoint_in_dir(folder)
        if ckpt is None:
            raise WeightsNotFoundError(
                f"no weights in {folder.resolve()}: looked for *.safetensors, *.bin and *.pth "
                "beside open_clip_config.json (open_clip_model.safetensors, "
                "open_clip_pytorch_model.bin, ...). " + how_to_provide("ARCH")
            )
        h = hashlib.sha256()
        h.update(config.read_bytes())
        h.update(weights_sha256(ckpt).encode())
        name = folder.resolve().name or "local"
        return Resolved(f"{LOCAL_DIR_PREFIX}{folder}", None, f"{name}@{h.hexdigest()[:12]}")

    import open_clip

    _check_arch(spec.arch)
    weights = spec.weights or ""
    if spec.is_random:
        return Resolved(spec.arch, None, f"{spec.arch}@random-{spec.seed}")
    if open_clip.get_pretrained_cfg(spec.arch, weights):
        return Resolved(spec.arch, weights, f"{spec.arch}@{weights}")
    path = Path(weights).expanduser()
    if path.is_file():
        return Resolved(spec.arch, str(path), f"{spec.arch}@{weights_sha256(path)[:12]}")
    looks_like_path = os.sep in weights or "/" in weights or weights.endswith(CHECKPOINT_SUFFIXES)
    if looks_like_path:
        raise WeightsNotFoundError(
            f"no checkpoint file for {spec.arch} at {path.resolve()}. "
            + how_to_provide(spec.arch)
        )
    tags = open_clip.list_pretrained_tags_by_model(spec.arch)
    raise WeightsNotFoundError(
        f"{weights!r} is neither a pretrained tag of {spec.arch} nor a file (looked for "
        f"{path.resolve()}); its tags: {', '.join(tags) or 'none'}. "
        + how_to_provide(spec.arch)
    )


def model_key(spec: ModelSpec | str) -> str:
    """The key naming architecture + exact weights (hashes a checkpoint, memoised).

    Raises:
        WeightsNotFoundError: the file or folder is missing (the message says where it
            looked and how to provide weights).
        ValueError: an unknown architecture.
    """
    return resolve(ModelSpec.parse(spec)).key


def tag_cache_hint(spec: ModelSpec) -> str:
    """Where open_clip looked for a pretrained tag's download (for error messages)."""
    import open_clip

    cfg = open_clip.get_pretrained_cfg(spec.arch, spec.weights or "")
    where = spec.cache_dir
    if where is None:
        if cfg.get("hf_hub"):
            try:
                from huggingface_hub import constants

                where = str(constants.HF_HUB_CACHE)
            except ImportError:  # pragma: no cover - open_clip depends on huggingface_hub
                where = "~/.cache/huggingface/hub"
        else:
            where = os.path.expanduser("~/.cache/clip")
    source = cfg.get("hf_hub") or cfg.get("url") or "?"
    return f"looked in the download cache {where} for {source}"
