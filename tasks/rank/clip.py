"""CLIP models for the rank stage: one loader for any open_clip architecture and weights.

A model is named by a `ModelSpec`, written ``ARCH@WEIGHTS`` or ``local-dir:FOLDER``:

- ``ViT-B-32@laion2b_s34b_b79k``: an open_clip architecture with a pretrained tag. open_clip
  downloads the weights on first use (Hugging Face cache, ``~/.cache/huggingface/hub``), so
  this needs network access once; afterwards the cache is enough.
- ``ViT-B-32@/models/vit-b-32.safetensors``: the architecture with a local checkpoint file
  (``.safetensors``, ``.bin``, ``.pt``, ``.pth``).
- ``local-dir:/models/my-clip``: a folder laid out like a Hugging Face hub repo,
  ``open_clip_config.json`` (``model_cfg`` + ``preprocess_cfg``) beside the weights
  (``open_clip_model.safetensors``, ``open_clip_pytorch_model.bin``, ...). The sandbox's
  pre-trained CLIP (`tv100.sandbox.pretrain`) is saved this way.
- ``ViT-B-32@random``: random initial weights, seeded by `ModelSpec.seed`; for benchmarks and
  tests only, it recognises nothing.

`load_clip` returns a `Clip`, which unpacks like open_clip's own triple::

    model, preprocess, tokenizer = load_clip("ViT-B-32@laion2b_s34b_b79k")

and also carries `Clip.key`, a string that names the architecture *and* the exact weights:
``ARCH@TAG`` for a tag, ``ARCH@<first 12 hex digits of the weights' sha256>`` for a file,
``FOLDER-NAME@<sha256 prefix of config + weights>`` for a folder, ``ARCH@random-SEED``. Tables
store it in their ``model_key`` column and caches key on it, so retraining a checkpoint in
place gives a new key and never mixes old and new embeddings.

Device: CUDA when ``torch.cuda.is_available()``, with autocast in bf16 (fp16 where the GPU
lacks bf16); otherwise CPU in fp32. Weights always stay fp32; `Clip.autocast` is the one
place precision is decided.

Threads: `set_torch_threads` sets torch's intra-op thread count (process-wide). On a small
machine shared with other work, more threads than free cores makes OpenMP spin against the
other processes and runs *slower* (~20x in the worst case), hence the default of
``min(2, cpu_count)``.

torch and open_clip are imported inside the functions that need them: importing open_clip
costs seconds, and the CLI imports this module just to wire flows.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

#: The paper's single zero-shot prompt.
DEFAULT_TEMPLATES: tuple[str, ...] = ("a photo of the TV series {}",)

#: A small template ensemble for `ZeroShotConfig.templates` (optional).
ENSEMBLE_TEMPLATES: tuple[str, ...] = (
    "a photo of the TV series {}",
    "a still from the TV series {}",
    "a scene from {}",
    "{}, a TV series",
    "a screenshot of the show {}",
)

#: `ModelSpec.weights` value for random initial weights.
RANDOM_WEIGHTS = "random"
LOCAL_DIR_PREFIX = "local-dir:"
CHECKPOINT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
_CONFIG_FILE = "open_clip_config.json"


class WeightsNotFoundError(FileNotFoundError):
    """The weights a `ModelSpec` names are not there; the message says where it looked."""


def _how_to_provide(arch: str) -> str:
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
                f"tag, a checkpoint file or {RANDOM_WEIGHTS!r}. " + _how_to_provide(self.arch)
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


# --------------------------------------------------------------------------- resolution


@dataclass(frozen=True)
class _Resolved:
    """What open_clip is called with, and the model key."""

    name: str  # open_clip model name (an arch or local-dir:...)
    pretrained: str | None  # tag or file for open_clip; None for local-dir and random
    key: str


_SHA_CACHE: dict[tuple[str, int, int], str] = {}
_SHA_LOCK = threading.Lock()


def file_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of a file's bytes, memoised on (path, size, mtime) for big checkpoints."""
    real = os.path.realpath(path)
    st = os.stat(real)
    memo = (real, st.st_size, st.st_mtime_ns)
    with _SHA_LOCK:
        if memo in _SHA_CACHE:
            return _SHA_CACHE[memo]
    h = hashlib.sha256()
    with open(real, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    digest = h.hexdigest()
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


def _checkpoint_in_dir(folder: Path) -> Path | None:
    """The weights file open_clip picks in a local-dir folder (its own preference order)."""
    from open_clip.factory import _find_checkpoint_in_dir

    found = _find_checkpoint_in_dir(folder)
    return Path(found) if found else None


def _resolve(spec: ModelSpec) -> _Resolved:
    if spec.is_local_dir:
        folder = spec.local_dir
        config = folder / _CONFIG_FILE
        if not folder.is_dir() or not config.is_file():
            raise WeightsNotFoundError(
                f"no CLIP model folder at {folder.resolve()}: looked for {config.resolve()}. "
                + _how_to_provide("ARCH")
            )
        ckpt = _checkpoint_in_dir(folder)
        if ckpt is None:
            raise WeightsNotFoundError(
                f"no weights in {folder.resolve()}: looked for *.safetensors, *.bin and *.pth "
                "beside open_clip_config.json (open_clip_model.safetensors, "
                "open_clip_pytorch_model.bin, ...). " + _how_to_provide("ARCH")
            )
        h = hashlib.sha256()
        h.update(config.read_bytes())
        h.update(file_sha256(ckpt).encode())
        name = folder.resolve().name or "local"
        return _Resolved(f"{LOCAL_DIR_PREFIX}{folder}", None, f"{name}@{h.hexdigest()[:12]}")

    import open_clip

    _check_arch(spec.arch)
    weights = spec.weights or ""
    if spec.is_random:
        return _Resolved(spec.arch, None, f"{spec.arch}@random-{spec.seed}")
    if open_clip.get_pretrained_cfg(spec.arch, weights):
        return _Resolved(spec.arch, weights, f"{spec.arch}@{weights}")
    path = Path(weights).expanduser()
    if path.is_file():
        return _Resolved(spec.arch, str(path), f"{spec.arch}@{file_sha256(path)[:12]}")
    looks_like_path = os.sep in weights or "/" in weights or weights.endswith(CHECKPOINT_SUFFIXES)
    if looks_like_path:
        raise WeightsNotFoundError(
            f"no checkpoint file for {spec.arch} at {path.resolve()}. "
            + _how_to_provide(spec.arch)
        )
    tags = open_clip.list_pretrained_tags_by_model(spec.arch)
    raise WeightsNotFoundError(
        f"{weights!r} is neither a pretrained tag of {spec.arch} nor a file (looked for "
        f"{path.resolve()}); its tags: {', '.join(tags) or 'none'}. "
        + _how_to_provide(spec.arch)
    )


def model_key(spec: ModelSpec | str) -> str:
    """The key naming architecture + exact weights (hashes a checkpoint, memoised).

    Raises:
        WeightsNotFoundError: the file or folder is missing (the message says where it
            looked and how to provide weights).
        ValueError: an unknown architecture.
    """
    return _resolve(ModelSpec.parse(spec)).key


def _tag_cache_hint(spec: ModelSpec) -> str:
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


# --------------------------------------------------------------------------- loading


def resolve_device(device: str | None = None) -> torch.device:
    """``None``/``"auto"``: CUDA when available, else CPU; anything else as given."""
    import torch

    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The autocast dtype for `precision` on `device`; None means plain fp32."""
    import torch

    if device.type != "cuda" or precision == "fp32":
        return None
    if precision == "fp16":
        return torch.float16
    if precision == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def default_threads() -> int:
    """``min(2, cpu_count)``: see the module docstring on thread oversubscription."""
    return max(1, min(2, os.cpu_count() or 1))


def set_torch_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads (process-wide); None means `default_threads`.

    Returns:
        The thread count now in force.
    """
    import torch

    n = default_threads() if threads is None else threads
    if n < 1:
        raise ValueError(f"threads={threads!r}; expected >= 1 or None")
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


@dataclass(frozen=True, eq=False)
class Clip:
    """A loaded CLIP: unpacks as ``(model, preprocess, tokenizer)``.

    Attributes:
        model: the open_clip model, in eval mode, gradients off, on `device`.
        preprocess: PIL image → normalised tensor (open_clip's eval transform).
        tokenizer: list of strings → token tensor.
        key: the model key (see the module docstring).
        spec: the `ModelSpec` it was loaded from.
        device: where the model lives.
        amp_dtype: autocast dtype on CUDA, None for fp32.
    """

    model: Any
    preprocess: Callable[[Any], Any]
    tokenizer: Callable[..., Any]
    key: str
    spec: ModelSpec
    device: torch.device
    amp_dtype: torch.dtype | None

    def __iter__(self) -> Iterator[Any]:
        return iter((self.model, self.preprocess, self.tokenizer))

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """Mixed precision on CUDA (bf16/fp16), nothing on CPU."""
        import torch

        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    @property
    def image_size(self) -> int:
        size = self.model.visual.image_size
        return int(size[0] if isinstance(size, tuple | list) else size)

    @property
    def embed_dim(self) -> int:
        """Width of the image/text embeddings (probed once with a text forward)."""
        return int(self.text_features(["x"]).shape[1])

    def text_features(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length text embeddings, ``(len(texts), dim)`` float32."""
        import torch

        with torch.inference_mode(), self.autocast():
            tokens = self.tokenizer(list(texts)).to(self.device)
            feats = self.model.encode_text(tokens, normalize=True)
        return np.ascontiguousarray(feats.float().cpu().numpy(), dtype=np.float32)


_LOADED: OrderedDict[tuple[str, str, str], Clip] = OrderedDict()
_LOADED_MAX = 2
_LOAD_LOCK = threading.Lock()


def _create(spec: ModelSpec, res: _Resolved, device: torch.device) -> tuple[Any, Any, Any]:
    import open_clip
    import torch

    kwargs: dict[str, Any] = {
        "pretrained": res.pretrained,
        "precision": "fp32",
        "device": device,
        "cache_dir": spec.cache_dir,
        # Base text weights of HF text towers would be downloaded when no CLIP checkpoint
        # is loaded (random init); never fetch anything the spec did not name.
        "pretrained_text": False,
    }
    if spec.is_random:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(spec.seed)
            model, _, preprocess = open_clip.create_model_and_transforms(res.name, **kwargs)
    else:
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(res.name, **kwargs)
        except RuntimeError as err:
            if res.pretrained is not None and not os.path.isfile(res.pretrained):
                raise WeightsNotFoundError(
                    f"could not get the weights of {spec}: {err}; {_tag_cache_hint(spec)}. "
                    + _how_to_provide(spec.arch)
                ) from err
            raise
    tokenizer = open_clip.get_tokenizer(res.name)
    model.eval()
    model.requires_grad_(False)
    return model, preprocess, tokenizer


def load_clip(
    spec: ModelSpec | str, device: str | None = None, *, reuse: bool = True
) -> Clip:
    """Load a CLIP (see the module docstring for specs, devices and precision).

    Args:
        spec: a `ModelSpec` or its text form (``ARCH@WEIGHTS``, ``local-dir:FOLDER``).
        device: ``None``/``"auto"`` (CUDA when available, else CPU), or e.g. ``"cpu"``.
        reuse: return the model already loaded in this process for the same key and
            device (the last two are kept), instead of building it again.

    Returns:
        A `Clip` (unpacks as ``model, preprocess, tokenizer``).

    Raises:
        WeightsNotFoundError: weights missing; the message says where it looked and how to
            provide them.
        ValueError: an unknown architecture or an invalid spec.
    """
    spec = ModelSpec.parse(spec)
    res = _resolve(spec)
    dev = resolve_device(device)
    memo = (res.key, str(dev), spec.precision)
    if reuse:
        with _LOAD_LOCK:
            if memo in _LOADED:
                _LOADED.move_to_end(memo)
                return _LOADED[memo]
    model, preprocess, tokenizer = _create(spec, res, dev)
    clip = Clip(
        model=model,
        preprocess=preprocess,
        tokenizer=tokenizer,
        key=res.key,
        spec=spec,
        device=dev,
        amp_dtype=autocast_dtype(dev, spec.precision),
    )
    if reuse:
        with _LOAD_LOCK:
            _LOADED[memo] = clip
            while len(_LOADED) > _LOADED_MAX:
                _LOADED.popitem(last=False)
    return clip


def clear_loaded() -> None:
    """Forget the models `load_clip` keeps for reuse (frees their memory)."""
    with _LOAD_LOCK:
        _LOADED.clear()


# --------------------------------------------------------------------------- saving


def save_local_dir(
    folder: str | os.PathLike[str],
    model: Any,
    model_cfg: dict[str, Any],
    preprocess_cfg: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    files: dict[str, str] | None = None,
) -> Path:
    """Save a model as a ``local-dir:`` folder (open_clip_config.json + safetensors).

    Writes into a temporary sibling folder and renames it into place, so a reader sees the
    whole folder or none of it. An existing folder is replaced.

    Args:
        folder: the target folder.
        model: an open_clip model (its ``state_dict`` is saved, fp32, on CPU).
        model_cfg: the open_clip model config (``embed_dim``, ``vision_cfg``, ``text_cfg``).
        preprocess_cfg: optional open_clip preprocess overrides (mean, std, ...).
        extra: more keys for open_clip_config.json.
        files: more text files to put in the folder (name → content), e.g. training
            metadata; they appear together with the weights.

    Returns:
        The folder's path.
    """
    import shutil
    import uuid

    from safetensors.torch import save_file

    target = Path(folder)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".tmp-{uuid.uuid4().hex}-{target.name}"
    tmp.mkdir()
    try:
        state = {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / "open_clip_model.safetensors"))
        config: dict[str, Any] = {"model_cfg": model_cfg, "preprocess_cfg": preprocess_cfg or {}}
        config.update(extra or {})
        (tmp / _CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        for name, text in (files or {}).items():
            (tmp / name).write_text(text)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


# --------------------------------------------------------------------------- text side


def check_templates(templates: Sequence[str]) -> tuple[str, ...]:
    """Validate prompt templates: each has exactly one ``{}`` placeholder.

    Raises:
        ValueError: naming the bad template.
    """
    if isinstance(templates, str) or not templates:
        raise ValueError(f"templates={templates!r}; expected a non-empty sequence of strings")
    out = []
    for t in templates:
        try:
            ok = isinstance(t, str) and t.count("{}") == 1 and t.format("\x00") != t
        except (IndexError, KeyError, ValueError):
            ok = False
        if not ok:
            raise ValueError(
                f"prompt template {t!r} is invalid; expected one '{{}}' placeholder and no "
                "other braces, e.g. 'a photo of the TV series {}'"
            )
        out.append(t)
    return tuple(out)


def class_weights(
    clip: Clip,
    classnames: Sequence[str],
    templates: Sequence[str] = DEFAULT_TEMPLATES,
    classes_per_batch: int = 64,
) -> np.ndarray:
    """Zero-shot class weights (open_clip's ``build_zero_shot_classifier``).

    Each class's weight is the mean of its unit-length prompt embeddings, renormalised.

    Returns:
        ``(len(classnames), dim)`` float32, unit rows, in `classnames` order.
    """
    import open_clip
    import torch

    check_templates(templates)
    if not classnames:
        raise ValueError("classnames is empty; expected at least one class")
    with torch.inference_mode(), clip.autocast():
        weights = open_clip.build_zero_shot_classifier(
            clip.model,
            tokenizer=clip.tokenizer,
            classnames=list(classnames),
            templates=list(templates),
            num_classes_per_batch=classes_per_batch,
            device=clip.device,
            use_tqdm=False,
        )
    return np.ascontiguousarray(weights.T.float().cpu().numpy(), dtype=np.float32)
