"""The trainer: the training step of :mod:`dali_aug.train._method`, evaluation, checkpoints
and run records.

The model, the methods' trainable modules and (under torch.distributed) their common
DistributedDataParallel wrapper form one :class:`_Network`; its forward returns the logits,
the penultimate features and the first-block map at once, so methods get them without
forward hooks, and ``torch.func.functional_call`` on it gives the forward with substituted
weights.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from dali_aug._dist import gather_rows, rank_world
from dali_aug.models import timm_pre_logits
from dali_aug.train._checkpoint import load_checkpoint, save_checkpoint
from dali_aug.train._ema import ModelEma
from dali_aug.train._method import Forward, Loss, Method, Step, method_key
from dali_aug.train._metrics import accuracy, multilabel_metrics

if TYPE_CHECKING:
    from dali_aug.batch import Batch

__all__ = ["Trainer", "model_parts", "write_metrics"]


def model_parts(
    model: nn.Module, x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """(logits, features, early) of one forward of ``model``.

    A model with ``forward_parts(x) -> (features, early)`` and ``head`` gives all three; a
    timm model (``forward_features``, ``forward_head``, ``get_classifier``) gives logits and
    the pre-logits features (``forward_head(..., pre_logits=True)``); one with
    ``features(x) -> [B, D]`` and ``head`` gives logits and features; any other module its
    logits alone.

    Raises:
        ValueError: ``features(x)`` is not [B, D] (e.g. a module whose ``features`` is its
            convolutional trunk): the model does not follow the protocol.
    """
    head = getattr(model, "head", None)
    parts = getattr(model, "forward_parts", None)
    if callable(parts) and isinstance(head, nn.Module):
        features, early = parts(x)
        return head(features), features, early
    timm_api = ("forward_features", "forward_head", "get_classifier")
    if all(callable(getattr(model, a, None)) for a in timm_api):
        features = timm_pre_logits(model, x)
        classifier = model.get_classifier()  # type: ignore[operator]
        return classifier(features), features, None
    feats = getattr(model, "features", None)
    if callable(feats) and isinstance(head, nn.Module):
        features = feats(x)
        if features.dim() != 2:
            raise ValueError(
                f"{type(model).__name__}.features(x) gave shape {tuple(features.shape)}, not "
                "[batch, dim]: the trainer takes features(x) -> [B, D] and head(features) -> "
                "logits, or timm's forward_features / forward_head; wrap the model to give them"
            )
        return head(features), features, None
    return model(x), None, None


class _Network(nn.Module):
    """The model and the methods' modules as one module (one DDP wrapper, one state)."""

    def __init__(self, model: nn.Module, methods: nn.ModuleDict) -> None:
        super().__init__()
        self.model = model
        self.methods = methods

    def forward(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        return model_parts(self.model, x)


@dataclasses.dataclass
class Trainer:
    """Trains ``model`` on a :class:`~dali_aug.loader.Loader` with training-step methods.

    Args:
        model: an ``nn.Module`` mapping images to logits; with ``features``/``head`` (and
            ``forward_parts``) the methods also get the features (and the first-block map).
        optimizer: its optimizer; the methods' :meth:`~Method.modules` are added to it as
            one more parameter group (the optimizer's defaults) unless already in it.
        multi_label: BCE on multi-hot targets instead of cross-entropy.
        methods: training-step methods, called in order.
        amp: autocast dtype (``torch.bfloat16``/``torch.float16``) or None; float16 uses a
            ``torch.amp.GradScaler``.
        channels_last: use the channels-last memory format.
        scheduler: optional LR scheduler, stepped once per epoch.
        schedule: optional learning rate per optimizer update: ``schedule(global_step)``
            sets every parameter group's lr before each update (e.g. a
            :class:`~dali_aug.train.WarmupCosine`); use it or ``scheduler``, not both.
        smoothing: label smoothing of the single-label training loss (the validation loss
            is plain cross-entropy).
        clip_grad: clip the gradients' global L2 norm to this value before each update.
        ema: a :class:`~dali_aug.train.ModelEma` of the model, updated after each update,
            evaluated beside the model (``ema_*`` metrics) and checkpointed.
        meta_val: batches for :meth:`Step.val_batch` (a Loader over a held-out split of the
            training data), for bilevel methods.
        distributed: wrap the network in DistributedDataParallel; default: when
            torch.distributed is initialised with more than one process.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    multi_label: bool = False
    methods: Sequence[Method] = ()
    amp: torch.dtype | None = None
    channels_last: bool = False
    scheduler: Any = None
    schedule: Callable[[int], float] | None = None
    smoothing: float = 0.0
    clip_grad: float | None = None
    ema: ModelEma | None = None
    meta_val: Iterable[Batch] | None = None
    distributed: bool | None = None
    epoch: int = 0
    global_step: int = 0
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        if isinstance(self.model, nn.parallel.DistributedDataParallel):
            raise TypeError(
                "pass the bare model; the Trainer wraps it (with the methods' modules) in "
                "DistributedDataParallel itself"
            )
        if self.amp not in (None, torch.bfloat16, torch.float16):
            raise ValueError(f"amp={self.amp}; use None, torch.bfloat16 or torch.float16")
        if not 0 <= self.smoothing < 1:
            raise ValueError(f"smoothing={self.smoothing}; use a value in [0, 1), e.g. 0.1")
        if self.smoothing and self.multi_label:
            raise ValueError(
                "label smoothing is for single-label targets; drop it for multi-label data"
            )
        if self.clip_grad is not None and not (
            math.isfinite(self.clip_grad) and self.clip_grad > 0
        ):
            raise ValueError(f"clip_grad={self.clip_grad}; use a finite norm > 0, or None")
        if self.schedule is not None and self.scheduler is not None:
            raise ValueError("give a per-epoch scheduler or a per-update schedule, not both")
        self.methods = tuple(self.methods)
        keys = [method_key(i, m) for i, m in enumerate(self.methods)]
        owned = nn.ModuleDict(
            {_slot(k): m.modules() for k, m in zip(keys, self.methods, strict=True)}
        )
        self._keys = keys
        self.device = _device_of(self.model)
        owned.to(self.device)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        known = {id(p) for g in self.optimizer.param_groups for p in g["params"]}
        extra = [p for p in owned.parameters() if id(p) not in known]
        if extra:
            self.optimizer.add_param_group({"params": extra})
        self.network = _Network(self.model, owned)
        _, world = rank_world()
        use_ddp = world > 1 if self.distributed is None else self.distributed
        self._runner: nn.Module = self.network
        if use_ddp:
            self._runner = nn.parallel.DistributedDataParallel(self.network)
        self.scaler = torch.amp.GradScaler(self.device.type) if self.amp == torch.float16 else None
        self._meta_iter: Iterator[Batch] | None = None
        self._progress: _Progress | None = None  # the epoch in progress (mid-epoch resume)
        self._loader_state: dict[str, Any] | None = None

    # -- the step -----------------------------------------------------------------------
    @property
    def bare_model(self) -> nn.Module:
        return self.model

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def losses(
        self, logits: torch.Tensor, labels: torch.Tensor, *, smoothing: float = 0.0
    ) -> torch.Tensor:
        """Per-sample losses [B] (``smoothing``: label smoothing of hard single labels)."""
        if self.multi_label:
            bce = F.binary_cross_entropy_with_logits(logits, labels.float(), reduction="none")
            return bce.mean(1)
        if labels.dim() == 2:  # soft labels (mixing methods; they smooth them themselves)
            return -(labels * logits.log_softmax(1)).sum(1)
        return F.cross_entropy(logits, labels, reduction="none", label_smoothing=smoothing)

    def lr_at(self, step: int) -> float:
        """The learning rate of update ``step``: the ``schedule``'s, else the current one."""
        if self.schedule is not None:
            return float(self.schedule(step))
        return float(self.optimizer.param_groups[0]["lr"])

    def forward(
        self, images: torch.Tensor, *, params: dict[str, torch.Tensor] | None = None
    ) -> Forward:
        """One forward under autocast (see :meth:`Step.forward`)."""
        x = self._prepare(images)
        with torch.autocast(x.device.type, dtype=self.amp, enabled=self.amp is not None):
            if params is None:
                logits, features, early = self._runner(x)
            else:
                named = {f"model.{k}": v for k, v in params.items()}
                logits, features, early = torch.func.functional_call(
                    self.network, named, (x,), strict=False
                )
        return Forward(logits, features, early)

    def next_meta_val(self) -> Batch:
        if self.meta_val is None:
            raise ValueError(
                "this method needs a validation batch in the step: give the Trainer "
                "meta_val=Loader(...) over a held-out split of the training data"
            )
        for _ in range(2):
            if self._meta_iter is None:
                self._meta_iter = iter(self.meta_val)
            try:
                return next(self._meta_iter)
            except StopIteration:
                self._meta_iter = None
        raise ValueError("the meta_val loader yields no batch; give it at least one sample")

    def step(self, batch: Batch) -> float:
        """One training step; returns the loss (see :mod:`dali_aug.train._method`)."""
        loss = self._step(batch)
        return float(loss.total().detach())

    def _step(self, batch: Batch) -> Loss:
        self.network.train()
        step = Step(self, self.global_step, self.epoch)
        for m in self.methods:
            batch = m.augment(step, batch)
        out = self.forward(batch.images)
        with step.autocast():
            loss = Loss(self.losses(out.logits.float(), batch.labels, smoothing=self.smoothing))
            for m in self.methods:
                loss = m.loss(step, batch, out, loss)
            total = loss.total()
        if not torch.isfinite(total):
            raise FloatingPointError(f"loss is {total.item()}; lower the learning rate")
        self.optimizer.zero_grad(set_to_none=True)
        if self.schedule is not None:
            lr = self.lr_at(self.global_step)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
        (total if self.scaler is None else self.scaler.scale(total)).backward()
        if self.clip_grad is not None:
            if self.scaler is not None:  # clip the true gradients, not the scaled ones
                self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.network.parameters(), self.clip_grad)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        if self.ema is not None:
            self.ema.update(self.model)
        for m in self.methods:
            m.after_step(step, batch, out)
        self.global_step += 1
        return loss

    @torch.no_grad()
    def evaluate(self, loader: Iterable[Batch], model: nn.Module | None = None) -> dict[str, Any]:
        """Loss and accuracy (single-label; top-5 too with more than 5 classes) or the
        multi-label metrics over ``loader``, of the trained model or of ``model`` (the EMA),
        and ``val_samples``, the number of samples they were computed on.

        Under a process group, a loader sharded by it (``loader.num_shards`` > 1, as a Loader
        built without ``shard_id``/``num_shards``) gives each rank a part: the logits and
        labels of all ranks are gathered, so every rank computes the metrics of the whole
        set (exactly once each with ``exact_shards=True``; the padded repeats included
        otherwise). Every rank must then call this; any other loader is evaluated as is."""
        # the bare module: a DDP wrapper's forward is a collective (buffer broadcast), and
        # evaluation may run on one rank only
        model = self.model if model is None else model
        model.eval()
        all_logits, all_labels = [], []
        for batch in loader:
            with torch.autocast(
                batch.images.device.type, dtype=self.amp, enabled=self.amp is not None
            ):
                logits = model(self._prepare(batch.images))
            all_logits.append(logits.float().cpu())
            all_labels.append(batch.labels.cpu())
        logits = torch.cat(all_logits) if all_logits else None
        labels = torch.cat(all_labels) if all_labels else None
        if getattr(loader, "num_shards", 1) > 1 and rank_world()[1] > 1:
            logits, labels = gather_rows(logits), gather_rows(labels)
        if logits is None or labels is None:
            raise ValueError("the evaluation loader yielded no batch; give it at least one sample")
        out: dict[str, Any] = {
            "val_loss": float(self.losses(logits, labels).mean()),
            "val_samples": len(labels),
        }
        if self.multi_label:
            out.update(multilabel_metrics(logits, labels))
        else:
            out["val_acc"] = accuracy(logits, labels)
            if logits.shape[1] > 5:
                out["val_top5"] = accuracy(logits, labels, k=5)
        return out

    # -- checkpoints --------------------------------------------------------------------
    def export(self) -> dict[str, torch.Tensor]:
        """The trained model's state dict alone: no method module, loadable with
        ``strict=True`` into the same architecture built without any method."""
        return self.model.state_dict()

    def _method_states(self) -> dict[str, dict[str, Any]]:
        """Per method with something to keep: its modules' and its own state (stateless
        methods are left out, so adding or removing one does not block a resume)."""
        out = {}
        for key, method in zip(self._keys, self.methods, strict=True):
            modules = self.network.methods[_slot(key)].state_dict()
            state = method.state_dict()
            if modules or state:
                out[key] = {"modules": modules, "state": state}
        return out

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "methods": self._method_states(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "ema": None if self.ema is None else self.ema.module.state_dict(),
            "epoch": self.epoch,
            "global_step": self.global_step,
            "history": self.history,
            "progress": None if self._progress is None else dataclasses.asdict(self._progress),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = dict(state.get("methods", {}))
        want = sorted(self._method_states())
        if sorted(saved) != want:
            raise ValueError(
                f"the checkpoint's method states {sorted(saved)} do not match this trainer's "
                f"{want}; resume with the same --method options"
            )
        _load("the model", self.model, state["model"])
        for key, method in zip(self._keys, self.methods, strict=True):
            if key in saved:
                _load(f"{key}'s modules", self.network.methods[_slot(key)], saved[key]["modules"])
                method.load_state_dict(saved[key]["state"])
        _load("the optimizer", self.optimizer, state["optimizer"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state.get("scaler") is not None:
            self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None:
            if state.get("ema") is None:
                raise ValueError(
                    "the checkpoint holds no model EMA but this trainer keeps one; resume "
                    "with the run's --model-ema setting"
                )
            _load("the model EMA", self.ema.module, state["ema"])
        self.epoch = int(state["epoch"])
        self.global_step = int(state.get("global_step", 0))
        self.history = list(state["history"])
        progress = state.get("progress")
        self._progress = None if progress is None else _Progress(**progress)
        self._loader_state = state.get("loader")
        if self._progress is not None and self._loader_state is None:
            raise ValueError(
                "the checkpoint was written mid-epoch but holds no loader position; it was not "
                "written by Trainer.fit: resume from an end-of-epoch checkpoint"
            )

    def save(self, path: str | Path, extra: dict[str, Any] | None = None) -> None:
        """Writes a checkpoint atomically (loadable with ``weights_only=True``), through a
        temporary file of this process (``<name>.<pid>.tmp``, removed if the write fails).

        Raises:
            CheckpointWriteError: the file could not be written (e.g. the disk is full); the
                previous checkpoint is left as it was.
        """
        save_checkpoint({**self.state_dict(), **(extra or {})}, path)

    def load(self, path: str | Path) -> dict[str, Any]:
        """Loads a checkpoint written by :meth:`save` (safely: ``weights_only=True``);
        returns the whole payload (with any ``extra`` saved beside the state)."""
        state = load_checkpoint(path, map_location=self.device)
        self.load_state_dict(state)
        return state

    def fit(
        self,
        train: Any,
        val: Any,
        epochs: int,
        *,
        checkpoint: str | Path | None = None,
        checkpoint_extra: dict[str, Any] | None = None,
        checkpoint_every: int | None = None,
        stop_after_steps: int | None = None,
        record: str | Path | None = None,
        progress: bool = True,
        log: Any = print,
        log_every: int = 50,
        eval_every: int = 1,
        on_epoch: Callable[[dict[str, Any]], None] | None = None,
    ) -> list[dict[str, Any]]:
        """Trains from ``self.epoch`` to ``epochs`` (so a resumed trainer continues), with a
        checkpoint after every epoch and, with ``record``, one JSON line per epoch appended
        to that file (so a crashed run leaves its history). Returns the per-epoch history.

        With ``checkpoint_every=N`` a checkpoint is also written every N steps, mid-epoch:
        it holds the loader's position (``train.state_dict()``) and the epoch's running sums,
        so a trainer loaded from it continues the epoch with exactly the batches and the row
        an uninterrupted run would have had. ``stop_after_steps`` ends the run (after a
        checkpoint) once that many steps were taken in this call (to test interruptions).

        A row holds ``epoch``, ``train_loss`` (the back-propagated total), ``loss/<term>``
        for every named term and ``stat/<name>`` for every logged statistic (epoch means),
        ``lr``, ``seconds``, ``images``, ``img_per_s``, ``data_seconds`` (time spent waiting
        for the loader), ``skipped`` and the evaluation metrics (``ema_*``: of the EMA).

        ``progress``: a progress bar on a terminal; without one (a log file, CI) a line every
        ``log_every`` steps and at the epoch's end instead. ``on_epoch(row)`` runs after each
        epoch's row is recorded and its checkpoint written (summaries, best checkpoints).
        ``val`` is evaluated every ``eval_every`` epochs and after the last (``epochs``); the
        rows of the other epochs hold no evaluation metrics.
        """
        from tqdm import tqdm

        if checkpoint_every is not None and checkpoint_every < 1:
            raise ValueError(f"checkpoint_every={checkpoint_every} must be >= 1 (steps)")
        if eval_every < 1:
            raise ValueError(f"eval_every={eval_every} must be >= 1 (epochs)")

        def save() -> None:
            if checkpoint is not None:
                extra = {**(checkpoint_extra or {}), "loader": train.state_dict()}
                self.save(checkpoint, extra)

        steps_this_call = 0
        while self.epoch < epochs:
            if self._progress is not None and self._loader_state is not None:
                train.load_state_dict(self._loader_state)  # continue the interrupted epoch
            else:
                train.set_epoch(self.epoch)
                self._progress = _Progress(lr=self.lr_at(self.global_step))
            self._loader_state = None
            run = self._progress
            assert run is not None
            t0 = time.perf_counter() - run.seconds
            tty = progress and sys.stderr.isatty()
            bar = tqdm(
                total=len(train),
                initial=run.steps,
                desc=f"epoch {self.epoch + 1}/{epochs}",
                disable=not tty,
                leave=False,
            )
            it = iter(train)
            while True:
                t_wait = time.perf_counter()
                try:
                    batch = next(it)
                except StopIteration:
                    break
                run.waited += time.perf_counter() - t_wait
                loss = self._step(batch)
                value = run.add(loss, len(batch.labels))
                bar.update(1)
                bar.set_postfix(loss=f"{value:.3f}")
                if progress and not tty and run.steps % max(log_every, 1) == 0:
                    log(
                        f"epoch {self.epoch + 1}/{epochs} step {run.steps}/{len(train)} "
                        f"loss {value:.4f} lr {self.lr_at(self.global_step - 1):.3g}"
                    )
                steps_this_call += 1
                stop = stop_after_steps is not None and steps_this_call >= stop_after_steps
                if checkpoint_every is not None and self.global_step % checkpoint_every == 0:
                    run.seconds = time.perf_counter() - t0
                    save()
                if stop:
                    run.seconds = time.perf_counter() - t0
                    save()
                    bar.close()
                    return self.history
            bar.close()
            if self.scheduler is not None:
                self.scheduler.step()
            row = run.row(self.epoch, time.perf_counter() - t0)
            row["skipped"] = len(getattr(train, "skipped", ()))
            if val is not None and ((self.epoch + 1) % eval_every == 0 or self.epoch + 1 >= epochs):
                row.update(self.evaluate(val))
                if self.ema is not None:
                    ema = self.evaluate(val, self.ema.module)
                    row.update({f"ema_{k}": v for k, v in ema.items()})
            self.history.append(row)
            self.epoch += 1
            self._progress = None
            log(_format_row(row))
            if record is not None:
                with Path(record).open("a") as fh:
                    fh.write(json.dumps(row, default=str) + "\n")
            save()
            if on_epoch is not None:
                on_epoch(row)
        for m in self.methods:  # end of training: reports (Method.finish)
            m.finish(self)
        return self.history


@dataclasses.dataclass
class _Progress:
    """The running sums of the epoch in progress (checkpointed mid-epoch)."""

    lr: float
    steps: int = 0
    total: float = 0.0
    count: int = 0
    waited: float = 0.0
    seconds: float = 0.0
    sums: dict[str, float] = dataclasses.field(default_factory=dict)

    def add(self, loss: Loss, n: int) -> float:
        """Adds one step's loss (a batch of ``n``); returns the step's total."""
        value = float(loss.total().detach())
        self.steps += 1
        self.total, self.count = self.total + value * n, self.count + n
        for name, term in loss.terms.items():
            key = f"loss/{name}"
            self.sums[key] = self.sums.get(key, 0.0) + float(term.detach()) * n
        for name, stat in loss.stats.items():
            key = f"stat/{name}"
            self.sums[key] = self.sums.get(key, 0.0) + float(stat) * n
        return value

    def row(self, epoch: int, seconds: float) -> dict[str, Any]:
        count = max(self.count, 1)
        return {
            "epoch": epoch + 1,
            "train_loss": self.total / count,
            **{k: v / count for k, v in self.sums.items()},
            "lr": self.lr,
            "seconds": seconds,
            "images": self.count,
            "img_per_s": self.count / max(seconds, 1e-9),
            "data_seconds": self.waited,
        }


def _slot(key: str) -> str:
    """A method key as a module name (no dots or colons)."""
    return key.replace(":", "_").replace(".", "_")


def _device_of(model: nn.Module) -> torch.device:
    for t in model.parameters():
        return t.device
    return torch.device("cpu")


def _format_row(row: dict[str, Any]) -> str:
    parts = []
    for k, v in row.items():
        if isinstance(v, float):
            parts.append(f"{k}={v:.4f}")
        elif not isinstance(v, list):
            parts.append(f"{k}={v}")
    return " ".join(parts)


def write_metrics(path: str | Path, payload: dict[str, Any]) -> None:
    Path(path).write_text(json.dumps(payload, indent=2, default=str))


def _load(what: str, target: nn.Module | torch.optim.Optimizer, state: Any) -> None:
    """``target.load_state_dict(state)``; a state that does not fit (missing or unexpected
    keys, other shapes, another parameter count) becomes a ValueError naming the part."""
    try:
        target.load_state_dict(state)
    except (RuntimeError, ValueError, KeyError) as err:
        raise ValueError(
            f"the checkpoint's state of {what} does not fit this trainer ({err}); resume with "
            "the same model, --method options and dali-aug version that wrote it, or start "
            "without --resume"
        ) from None
