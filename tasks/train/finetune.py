"""Fine-tuning: the image tower and a linear head trained end to end, checkpointed every
epoch, resumed from the last checkpoint.

The head starts from the zero-shot text weights times the logit scale; training is AdamW
(no decay on gains, biases, embeddings and the logit scale), linear warm-up then cosine
decay, gradient clipping, modest augmentation (random resized crop, horizontal flip) and
autocast + GradScaler on CUDA. The loss is cross-entropy, optionally with logit-adjustment
offsets and per-class weights (the class-balanced loss: ``Σ w_{y_i} · CE_i / n`` per batch).

Classifier re-training (cRT, Kang et al. 2020; `retrain_classifier`): the tuned tower,
frozen, gives features of the training images, and a new linear classifier is fitted on
them with class-balanced weights (`tv100.tasks.train.probe.sweep_probe`).

A run writes ``ckpt-last.pt`` under ``runs/<run_id>/`` after every epoch (weights,
optimizer, scheduler, scaler, RNG states, epoch, step, loss history), atomically. A killed
run started again resumes from it and ends with the same numbers as an uninterrupted one
on CPU, because the data order is a function of ``(seed, epoch)`` and each sample's
augmentation a function of ``(seed, epoch, position)``, never of how far an RNG stream
had got.

torch is imported inside functions (the CLI imports the stage to wire flows).
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import math
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tv100.storage.root import DataRoot, open_atomic, remove_temp_files
from tv100.tasks import cancel
from tv100.tasks.progress import track
from tv100.tasks.rank.clip import Clip
from tv100.tasks.train.config import TrainConfig
from tv100.tasks.train.data import Images, SplitImages, loader, train_transform
from tv100.tasks.train.probe import ProbeFit, sweep_probe
from tv100.tasks.train.results import RUNS_DIR
from tv100.tasks.train.sampling import (
    epoch_order,
    lr_factor,
    sample_seed,
    sampling_probabilities,
)

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "ckpt-last.pt"
#: Fine-tuning's progress artifact.
FINETUNE_PROGRESS = "train-finetune-progress"


@contextlib.contextmanager
def deterministic(seed: int, threads: int | None) -> Iterator[None]:
    """Seed every RNG, pin the thread count and ask torch for deterministic kernels; the
    thread count and determinism flags are restored afterwards."""
    import torch

    from tv100.tasks.rank.clip import set_torch_threads

    prev_threads = torch.get_num_threads()
    prev_det = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    set_torch_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev_det, warn_only=prev_warn)
        torch.set_num_threads(prev_threads)


def make_head(weights: np.ndarray, scale: float, device: Any) -> Any:
    """A linear head ``(classes, dim)`` initialised to ``scale · weights``, bias zero."""
    import torch

    head = torch.nn.Linear(weights.shape[1], weights.shape[0], bias=True)
    with torch.no_grad():
        head.weight.copy_(torch.as_tensor(weights) * scale)
        head.bias.zero_()
    return head.to(device)


def _logits(visual: Any, head: Any, x: Any) -> Any:
    import torch.nn.functional as F

    return head(F.normalize(visual(x), dim=-1))


def _param_groups(visual: Any, head: Any, weight_decay: float) -> list[dict[str, Any]]:
    decay: list[Any] = []
    no_decay: list[Any] = []
    named = [*visual.named_parameters(), *(("head." + n, p) for n, p in head.named_parameters())]
    for name, p in named:
        # Gains, biases and embeddings are not decayed (CLIP's and WiSE-FT's convention).
        skip = p.ndim < 2 or "embedding" in name or "logit_scale" in name
        (no_decay if skip else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def _rng_state() -> dict[str, Any]:
    import torch

    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)  # type: ignore[misc]
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.as_tensor(np.asarray(keys, dtype=np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    import torch

    torch.set_rng_state(state["torch"].cpu())
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].cpu().numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached"]))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([t.cpu() for t in state["cuda"]])


def _save_checkpoint(root: DataRoot, relpath: str, state: dict[str, Any]) -> None:
    """A reader (or a resumed run) sees the old checkpoint or the new one, whole."""
    import torch

    with open_atomic(root, relpath) as f:
        torch.save(state, f)


def _load_checkpoint(root: DataRoot, relpath: str) -> dict[str, Any] | None:
    """The checkpoint on CPU (RNG states must be CPU tensors; `load_state_dict` moves the
    weights and optimizer state to the parameters' device)."""
    import torch

    path = root.path(relpath)
    if not root.fs.exists(path):
        return None
    with root.fs.open(path, "rb") as f:
        state: dict[str, Any] = torch.load(
            io.BytesIO(f.read()), map_location="cpu", weights_only=True
        )
    return state


def _epoch_note(epoch: Mapping[str, float], epochs: int) -> str:
    """``epoch 2/3 loss 0.5123``: the progress display's note after an epoch."""
    return f"epoch {int(epoch['epoch'])}/{epochs} loss {epoch['loss']:.4f}"


@dataclass
class Trained:
    """A fine-tuned image tower and head, and how training went.

    Attributes:
        visual: the image tower (eval mode).
        head: the linear head.
        history: per-epoch ``{"epoch", "loss", "lr"}``.
        resumed_from_epoch: epochs found done in the checkpoint when the run started.
    """

    visual: Any
    head: Any
    history: list[dict[str, float]]
    resumed_from_epoch: int


def finetune(
    clip: Clip,
    root: DataRoot,
    relpaths: Sequence[str],
    labels: np.ndarray,
    zs_weights: np.ndarray,
    offsets: np.ndarray,
    config: TrainConfig,
    train_run_id: str,
    class_weights: np.ndarray | None = None,
) -> Trained:
    """Fine-tune image tower + head, checkpointing every epoch, resuming when a checkpoint
    of this run exists.

    Args:
        clip: the model to start from (left unchanged: the tower is copied).
        root: the data root (images, ``runs/<train_run_id>/``).
        relpaths: training images.
        labels: their class indices.
        zs_weights: ``(classes, dim)`` zero-shot text weights (the head's initialisation).
        offsets: logit-adjustment offsets (training loss only).
        config: the fine-tuning knobs.
        train_run_id: the id of this training run (its checkpoint folder).
        class_weights: ``(classes,)`` loss weight per class (the class-balanced loss);
            None: plain mean cross-entropy.

    Raises:
        ValueError: the checkpoint found belongs to another run or step count.
    """
    import torch
    import torch.nn.functional as F

    device = clip.device
    visual = copy.deepcopy(clip.model.visual).to(device).requires_grad_(True)
    head = make_head(zs_weights, float(clip.model.logit_scale.exp()), device)
    opt = torch.optim.AdamW(
        _param_groups(visual, head, config.weight_decay), lr=config.lr,
        betas=(0.9, 0.999), eps=1e-8,
    )
    steps_per_epoch = math.ceil(len(labels) / config.batch_size)
    total_steps = config.epochs * steps_per_epoch
    warmup = config.warmup_steps
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, warmup, total_steps)
    )
    # A scaler only for fp16 autocast (bf16 and fp32 need none); on CPU it is a no-op.
    scaler = torch.amp.GradScaler(device.type, enabled=clip.amp_dtype == torch.float16)
    y_all = torch.as_tensor(labels, dtype=torch.int64, device=device)
    off = torch.as_tensor(offsets, dtype=torch.float32, device=device)
    cw = (None if class_weights is None
          else torch.as_tensor(class_weights, dtype=torch.float32, device=device))
    params = [*visual.parameters(), *head.parameters()]
    ckpt_rel = f"{RUNS_DIR}/{train_run_id}/{CHECKPOINT_NAME}"

    start_epoch, step, history = 0, 0, []
    # A kill during a save leaves a temp file beside the last good checkpoint.
    remove_temp_files(root, f"{RUNS_DIR}/{train_run_id}")
    ckpt = _load_checkpoint(root, ckpt_rel)
    if ckpt is not None:
        if ckpt.get("run_id") != train_run_id or ckpt.get("total_steps") != total_steps:
            raise ValueError(
                f"checkpoint {root.path(ckpt_rel)} belongs to run {ckpt.get('run_id')!r} "
                f"with {ckpt.get('total_steps')} steps, not {train_run_id!r} with "
                f"{total_steps}; delete it to start over"
            )
        visual.load_state_dict(ckpt["visual"])
        head.load_state_dict(ckpt["head"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
        _set_rng_state(ckpt["rng"])
        start_epoch, step = int(ckpt["epoch"]), int(ckpt["step"])
        history = [dict(h) for h in ckpt["history"]]
        log.info("run %s: resuming after epoch %d (step %d)", train_run_id, start_epoch, step)
    tf = train_transform(clip, config.crop_min_scale, config.hflip)
    with track("fine-tune", total_steps, "steps", FINETUNE_PROGRESS, done=step) as tracker:
        if history:
            tracker.set_note(_epoch_note(history[-1], config.epochs))
        for epoch in range(start_epoch, config.epochs):
            order = epoch_order(labels, config.seed, epoch, config.sampling)
            data = Images(root, relpaths, tf, order=order, seed=config.seed, epoch=epoch,
                          augment=True)
            batches = loader(data, config.batch_size, config.workers,
                             sample_seed(config.seed, epoch, 2**32), device)
            visual.train()
            losses = []
            lr_used = float(sched.get_last_lr()[0])
            for x, idx in batches:
                cancel.check()  # SIGTERM / Ctrl-C: stop between steps; the last checkpoint stays
                y = y_all[idx.to(device)]
                with clip.autocast():
                    logits = _logits(visual, head, x.to(device, non_blocking=True))
                # Logit adjustment: the prior offsets enter the loss only, never prediction.
                if cw is None:
                    loss = F.cross_entropy(logits.float() + off, y)
                else:  # class-balanced: per-sample CE times its class's weight, mean
                    ce = F.cross_entropy(logits.float() + off, y, reduction="none")
                    loss = (ce * cw[y]).mean()
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if config.grad_clip > 0:
                    scaler.unscale_(opt)
                    torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
                scaler.step(opt)
                scaler.update()
                sched.step()
                step += 1
                losses.append(float(loss.detach()))
                tracker(step)
            history.append({"epoch": epoch + 1, "loss": float(np.mean(losses)), "lr": lr_used})
            _save_checkpoint(
                root,
                ckpt_rel,
                {
                    "run_id": train_run_id,
                    "epoch": epoch + 1,
                    "step": step,
                    "total_steps": total_steps,
                    "visual": visual.state_dict(),
                    "head": head.state_dict(),
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(),
                    "scaler": scaler.state_dict(),
                    "rng": _rng_state(),
                    "history": history,
                    "sampler": {"seed": config.seed, "sampling": config.sampling,
                                "next_epoch": epoch + 1},
                },
            )
            log.info("epoch %d/%d: loss %.4f lr %.3g", epoch + 1, config.epochs,
                     history[-1]["loss"], history[-1]["lr"])
            tracker.set_note(_epoch_note(history[-1], config.epochs))
    visual.eval()
    return Trained(visual, head, history, start_epoch)


def predict(
    clip: Clip, visual: Any, head: Any, root: DataRoot, relpaths: Sequence[str],
    config: TrainConfig,
) -> np.ndarray:
    """``(n, classes)`` float32 scores of `head` on `visual`'s features of the images."""
    import torch

    batches = loader(Images(root, relpaths, clip.preprocess), config.batch_size,
                     config.workers, 0, clip.device)
    out = []
    visual.eval()
    with torch.inference_mode(), clip.autocast():
        for x, _ in batches:
            cancel.check()
            out.append(_logits(visual, head, x.to(clip.device, non_blocking=True)).float().cpu())
    return np.ascontiguousarray(torch.cat(out).numpy(), dtype=np.float32)


def tower_features(
    clip: Clip, visual: Any, root: DataRoot, relpaths: Sequence[str], config: TrainConfig
) -> np.ndarray:
    """``(n, dim)`` float32 unit-length features of `visual` (eval mode, no augmentation,
    no gradients: the tower is not changed)."""
    import torch
    import torch.nn.functional as F

    if not relpaths:
        return np.zeros((0, clip.embed_dim), dtype=np.float32)
    batches = loader(Images(root, relpaths, clip.preprocess), config.batch_size,
                     config.workers, 0, clip.device)
    out = []
    visual.eval()
    with torch.inference_mode(), clip.autocast():
        for x, _ in batches:
            cancel.check()
            out.append(F.normalize(visual(x.to(clip.device, non_blocking=True)).float(),
                                   dim=-1).cpu())
    return np.ascontiguousarray(torch.cat(out).numpy(), dtype=np.float32)


@dataclass(frozen=True)
class Retrained:
    """A re-trained classifier on a frozen tower (cRT's second stage).

    Attributes:
        head: the new linear head (``(classes, dim)`` weight and bias), on the clip's device;
            ``head(normalize(visual(x)))`` gives `fit`'s scores.
        fit: the penalty chosen on val, the val sweep and the scores of every eval split.
    """

    head: Any
    fit: ProbeFit


def retrain_classifier(
    clip: Clip,
    visual: Any,
    root: DataRoot,
    train: SplitImages,
    evals: Mapping[str, SplitImages],
    n_classes: int,
    config: TrainConfig,
) -> Retrained:
    """cRT's second stage: freeze `visual`, re-fit a linear classifier with class-balanced
    weights.

    The training images go through the frozen tower once, without augmentation; the
    classifier starts from zero (re-initialised) and is fitted by full-batch L-BFGS with
    every class weighing the same (the full-batch form of class-balanced sampling), its
    L2 penalty swept on val over `config.probe_weight_decays`.

    Args:
        clip: the model (preprocessing, device).
        visual: the tower of stage 1 (left unchanged).
        root: the data root (images).
        train: the training images.
        evals: the splits to score (val among them to choose the penalty).
        n_classes: number of classes.
        config: the probe knobs, batch size and workers.
    """
    import torch

    feats = {s: tower_features(clip, visual, root, it.relpaths, config)
             for s, it in {"train": train, **evals}.items()}
    weights = sampling_probabilities(train.labels, "balanced") * len(train.labels)
    val = evals.get("val")
    fit = sweep_probe(
        feats["train"], train.labels, {s: feats[s] for s in evals},
        None if val is None else val.labels, n_classes, np.zeros(n_classes), weights, config,
        str(clip.device),
    )
    assert fit.weights is not None
    W, b = fit.weights
    head = torch.nn.Linear(W.shape[1], W.shape[0], bias=True)
    with torch.no_grad():
        head.weight.copy_(torch.as_tensor(W))
        head.bias.copy_(torch.as_tensor(b))
    return Retrained(head.to(clip.device), fit)
