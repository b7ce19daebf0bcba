"""Loaded CLIP models: one loader for any open_clip architecture and weights, and saving.

`load_clip` takes a `tv100.tasks.rank.models.ModelSpec` (or its text form) and returns a
`Clip`, which unpacks like open_clip's own triple::

    model, preprocess, tokenizer = load_clip("ViT-B-32@laion2b_s34b_b79k")

and also carries `Clip.key`, the model key of `tv100.tasks.rank.models.model_key` (the
architecture *and* the exact weights). `save_local_dir` writes a model as a ``local-dir:``
folder; `class_weights` builds the zero-shot classifier of a list of class names.

Device: CUDA when ``torch.cuda.is_available()``, with autocast in bf16 (fp16 where the GPU
lacks bf16); otherwise CPU in fp32. Weights always stay fp32; `Clip.autocast` is the one
place precision is decided.

Threads: `set_torch_threads` sets torch's intra-op thread count (process-wide). On a small
machine shared with other work, more threads than free cores makes OpenMP spin against the
other processes and runs *slower* (~20x in the worst case), hence the default of
``min(2, cpu_count)``.

torch and open_clip are imported inside the functions that need them: importing open_clip
costs seconds, and the CLI imports the rank stage just to wire flows.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tv100.storage.atomic import atomic_path
from tv100.tasks.rank.config import DEFAULT_TEMPLATES, check_templates
from tv100.tasks.rank.models import (
    CONFIG_FILE,
    ModelSpec,
    Resolved,
    WeightsNotFoundError,
    how_to_provide,
    resolve,
    tag_cache_hint,
)

if TYPE_CHECKING:
    import torch


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


def _create(spec: ModelSpec, res: Resolved, device: torch.device) -> tuple[Any, Any, Any]:
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
                    f"could not get the weights of {spec}: {err}; {tag_cache_hint(spec)}. "
                    + how_to_provide(spec.arch)
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
    res = resolve(spec)
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


def save_local_dir(
    folder: str | os.PathLike[str],
    model: Any,
    model_cfg: dict[str, Any],
    preprocess_cfg: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    files: dict[str, str] | None = None,
) -> Path:
    """Save a model as a ``local-dir:`` folder (open_clip_config.json + safetensors).

    The folder is built beside the target and renamed into place
    (`tv100.storage.atomic.atomic_path`), so a reader sees the whole folder or none of it.
    An existing folder is replaced.

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
    from safetensors.torch import save_file

    target = Path(folder)
    with atomic_path(target, replace_dir=True) as tmp_name:
        tmp = Path(tmp_name)
        tmp.mkdir()
        state = {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / "open_clip_model.safetensors"))
        config: dict[str, Any] = {"model_cfg": model_cfg, "preprocess_cfg": preprocess_cfg or {}}
        config.update(extra or {})
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        for name, text in (files or {}).items():
            (tmp / name).write_text(text)
    return target


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
