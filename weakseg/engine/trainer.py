"""The training loop shared by every :class:`~weakseg.learners.base.TorchLearner`.

The learner supplies data, module, batches, loss and validation metrics through its hooks; the
:class:`Trainer` owns everything else: device, seeding, optimiser, schedule, mixed precision,
gradient clipping, checkpoints, resume, best-epoch selection and early stopping.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import NonFiniteLossError, TrainingError, WeaksegError
from . import distributed
from .checkpoint import BEST, LAST, load_checkpoint, save_checkpoint
from .contract import Resume, StepOutput, Trainable, TrainConfig, TrainResult, resolve_resume
from .curves import plot_curves, write_metrics_csv
from .optim import LRSchedule, build_optimizer, check_optimizer
from .rundir import CHECKPOINT_DIR, CURVES_FILE, METRICS_FILE, write_env
from .seeding import epoch_generator, get_rng_state, seed_everything, set_rng_state

log = logging.getLogger(__name__)

#: seconds between redraws of curves.png during training (it is always drawn when training ends)
PLOT_INTERVAL_S = 60.0


@dataclass
class _RunState:
    """Where a run stands after ``epoch`` completed epochs (stored in ``last.pt`` for resume)."""

    epoch: int = 0
    global_step: int = 0
    stale: int = 0  # epochs since the monitored metric last improved
    finished: bool = False  # stopped early
    best: dict[str, Any] | None = None  # {"epoch", "value"} of the best epoch so far
    history: list[dict[str, Any]] = field(default_factory=list)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` → ``cuda`` when available, else ``cpu``; anything else as given (validated)."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise WeaksegError(f"invalid device {device!r}: {err}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise WeaksegError(f"device {device!r} requested but CUDA is not available")
    return dev


class Trainer:
    """Fit a :class:`~weakseg.engine.contract.Trainable` (every ``TorchLearner``) epoch by epoch.

    ``config`` holds the loop's settings (:class:`TrainConfig`; its fields may also be given as
    keyword arguments). ``monitor`` names the validation metric (from ``learner.evaluate``) that
    selects the best epoch (``monitor_mode`` ``"max"`` or ``"min"``) and drives early stopping.
    With ``run_dir``, every epoch writes ``checkpoints/last.pt``, ``checkpoints/best.pt`` and
    ``metrics.csv`` there (``curves.png`` at most once a minute, and at the end); ``resume``
    (``True``, ``False`` or ``"auto"``, see :func:`resolve_resume`) continues from ``last.pt``
    exactly. ``progress=None`` shows a progress bar only when stderr is a terminal.
    """

    def __init__(
        self,
        config: TrainConfig | None = None,
        *,
        monitor: str = "slide_auc",
        monitor_mode: str = "max",
        run_dir: str | Path | None = None,
        resume: Resume = False,
        progress: bool | None = None,
        **settings: Any,
    ) -> None:
        if config is not None and settings:
            raise WeaksegError("give the training settings either as a TrainConfig or as keywords, not both")
        unknown = sorted(set(settings) - set(TrainConfig.names()))
        if unknown:
            raise WeaksegError(f"unknown training setting(s) {unknown}; valid: {list(TrainConfig.names())}")
        self.config = config if config is not None else TrainConfig(**settings)
        if monitor_mode not in ("max", "min"):
            raise WeaksegError(f"monitor_mode must be 'max' or 'min', got {monitor_mode!r}")
        if resume not in (True, False, "auto"):
            raise WeaksegError(f"resume must be true, false or 'auto', got {resume!r}")
        if resume is True and run_dir is None:
            raise WeaksegError("resume=True needs a run_dir holding checkpoints/last.pt")
        c = self.config
        self.max_epochs = int(c.max_epochs)
        self.schedule = LRSchedule(c.scheduler, c.scheduler_params, max_epochs=self.max_epochs, lr=float(c.lr))
        self.monitor = monitor
        self.monitor_mode = monitor_mode
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.resume = resume
        self.progress = progress
        self._warned_length = False

    # -- public ---------------------------------------------------------------------------
    def fit(self, learner: Trainable, train: Any, val: Any = None) -> TrainResult:
        """Train ``learner`` on ``train`` (validating on ``val``).

        Returns a :class:`TrainResult` whose module holds the best epoch's weights (by ``monitor``
        on ``val``; the last epoch's without ``val``), in eval mode. The learner is told the
        module it trains through ``bind_module``; the trainer sets none of its attributes.

        Under ``torchrun`` (``WORLD_SIZE`` > 1, see :mod:`weakseg.engine.distributed`) every rank
        calls ``fit``: the module is wrapped in ``DistributedDataParallel`` for the training steps
        (bound as ``module_`` while they run), each rank trains on its share of every epoch
        (``rank_share`` in the learner's ``train_batches``), training logs are averaged over all
        ranks' steps, rank 0 validates on the whole validation set and sends the metrics to the
        others (so every rank picks the same best epoch and stops at the same time), and only
        rank 0 writes ``env.json``, checkpoints, ``metrics.csv`` and ``curves.png``. Checkpoints
        hold the plain module's weights (no ``module.`` prefix): they resume under any number of
        processes.
        """
        c = self.config
        dist, dist_device = distributed.setup(c.device)
        device = dist_device if dist_device is not None else resolve_device(c.device)
        amp_dtype = self._amp_dtype(device)
        writes = self.run_dir is not None and dist.is_main
        ckpt_dir = self.run_dir / CHECKPOINT_DIR if self.run_dir is not None else None
        state = self._load_resume_state(ckpt_dir)

        seed_everything(c.random_state)
        info = learner.data_info(train)
        if state is not None and state["data_info"] != info:
            raise TrainingError(f"{ckpt_dir / LAST}: the training data changed since this checkpoint "  # type: ignore[operator]
                                f"(data_info {state['data_info']} != {info})")
        module = learner.build_module(info).to(device)
        if c.sync_bn and dist.enabled:
            if device.type == "cuda":
                module = torch.nn.SyncBatchNorm.convert_sync_batchnorm(module)
            else:
                log.warning("sync_bn: SyncBatchNorm needs CUDA; on %s each rank normalises with its own batch", device)
        if c.channels_last:
            module = module.to(memory_format=torch.channels_last)
        learner.bind_module(module, device, info)
        groups = [dict(g, params=[p for p in g["params"] if p.requires_grad]) for g in learner.param_groups(module)]
        groups = [g for g in groups if g["params"]]
        if not groups:
            raise TrainingError(f"{type(learner).__name__}.build_module returned a module without trainable parameters")
        opt = build_optimizer(check_optimizer(c.optimizer), groups, lr=c.lr, weight_decay=c.weight_decay, momentum=c.momentum)
        for group in opt.param_groups:
            group["initial_lr"] = group["lr"]
        scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)

        run = _RunState()
        resumed_from = None
        best_weights: dict[str, torch.Tensor] | None = None
        if state is not None:
            module.load_state_dict(distributed.strip_wrapper_prefixes(state["module"]))
            opt.load_state_dict(state["optimizer"])
            if scaler.is_enabled() and state.get("scaler"):
                scaler.load_state_dict(state["scaler"])
            set_rng_state(state["rng"])
            run = _RunState(**state["run"])
            resumed_from = run.epoch
            if run.best is not None:
                best_weights = distributed.strip_wrapper_prefixes(load_checkpoint(ckpt_dir / BEST)["module"])  # type: ignore[operator]
        if writes:
            write_env(self.run_dir, str(device), resumed_at_epoch=run.epoch if state is not None else None,  # type: ignore[arg-type]
                      world_size=dist.world)

        self._wrapped: tuple[tuple[bool, ...], torch.nn.Module] | None = None
        last_plot = time.perf_counter()
        with _Determinism(c.deterministic, device), _ChannelsLastInputs(module if c.channels_last else None):
            while run.epoch < self.max_epochs and not run.finished:
                epoch, t0 = run.epoch, time.perf_counter()
                if dist.enabled:  # each rank its own dropout/augmentation stream, a function of (seed, epoch, rank)
                    seed_everything(distributed.process_seed(c.random_state, epoch, dist.rank))
                try:
                    row, run.global_step = self._train_epoch(learner, module, opt, scaler, train, epoch,
                                                             run.global_step, amp_dtype, dist, info)
                finally:
                    learner.bind_module(module, device, info)
                value = float("nan")
                if val is not None:
                    metrics = self._evaluate(learner, module, val) if dist.is_main else None
                    metrics = distributed.broadcast_object(metrics)
                    row.update({f"val_{k}": v for k, v in metrics.items()})
                    value = metrics[self.monitor]
                row["lr"] = opt.param_groups[0]["lr"]
                row["seconds"] = round(time.perf_counter() - t0, 3)
                run.history.append(row)
                run.epoch = epoch + 1

                if val is None or self._improved(value, run.best):
                    run.best = {"epoch": epoch, "value": None if val is None else value}
                    run.stale = 0
                    best_weights = {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}
                    if writes:
                        save_checkpoint(ckpt_dir / BEST, {**run.best, "monitor": self.monitor, "module": best_weights})  # type: ignore[operator]
                else:
                    run.stale += 1
                if val is not None and c.patience is not None and run.stale >= c.patience and run.epoch >= c.min_epochs:
                    run.finished = True
                    if dist.is_main:
                        log.info("early stopping after epoch %d: no %s improvement for %d epochs",
                                 epoch, self.monitor, run.stale)
                if dist.is_main:
                    self._log_epoch(row, run.best)
                if writes:
                    save_checkpoint(ckpt_dir / LAST, {  # type: ignore[operator]
                        "run": asdict(run), "module": module.state_dict(), "optimizer": opt.state_dict(),
                        "scaler": scaler.state_dict(), "rng": get_rng_state(), "data_info": info,
                        "trainer": self._config(), "world_size": dist.world,
                    })
                    write_metrics_csv(run.history, self.run_dir / METRICS_FILE)  # type: ignore[operator]
                    if time.perf_counter() - last_plot >= PLOT_INTERVAL_S:
                        plot_curves(run.history, self.run_dir / CURVES_FILE, monitor=self.monitor)  # type: ignore[operator]
                        last_plot = time.perf_counter()

        if writes and run.history:
            plot_curves(run.history, self.run_dir / CURVES_FILE, monitor=self.monitor)  # type: ignore[operator]
        if best_weights is not None:
            module.load_state_dict(best_weights)
        elif val is not None and dist.is_main:
            log.warning("%s was never finite on the validation data; keeping the last epoch's weights", self.monitor)
        if c.channels_last:
            module = module.to(memory_format=torch.contiguous_format)
        learner.bind_module(module, device, info)
        module.eval()
        distributed.barrier()  # rank 0's files are complete before any rank goes on
        best = run.best if best_weights is not None else None
        return TrainResult(module=module, device=device, data_info=info, history=run.history, monitor=self.monitor,
                           best_epoch=None if best is None else best["epoch"],
                           best_value=None if best is None else best["value"], resumed_from=resumed_from)

    # -- internals ------------------------------------------------------------------------
    def _config(self) -> dict[str, Any]:
        config = {k: v for k, v in self.config.as_dict().items() if k != "device"}
        config.update(optimizer=check_optimizer(self.config.optimizer), scheduler=self.schedule.name,
                      scheduler_params=dict(self.schedule.params))
        return {**config, "monitor": self.monitor, "monitor_mode": self.monitor_mode}

    def _amp_dtype(self, device: torch.device) -> torch.dtype | None:
        """The autocast dtype of the training steps, or ``None`` (no autocast)."""
        c = self.config
        if c.amp is False or (c.amp == "auto" and device.type != "cuda"):
            return None
        if c.amp_dtype == "float16":
            return torch.float16
        if c.amp_dtype == "bfloat16":
            return torch.bfloat16
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16

    def _training_module(self, module: torch.nn.Module, device: torch.device,
                         dist: distributed.DistInfo) -> torch.nn.Module:
        """What the training steps call: ``module`` compiled and/or wrapped in DDP as configured.

        All of them share ``module``'s parameters; checkpoints and the result hold ``module`` itself.
        DDP registers the parameters that require gradients when it is built, so the wrapper is
        rebuilt (on every rank alike) when a learner freezes or unfreezes some between epochs.
        """
        c = self.config
        if not dist.enabled and c.torch_compile is False:
            return module
        trainable = tuple(p.requires_grad for p in module.parameters())
        if self._wrapped is not None and self._wrapped[0] == trainable:
            return self._wrapped[1]
        out = module
        if dist.enabled:
            out = distributed.DDP(module, device_ids=[device.index] if device.type == "cuda" else None)
        if c.torch_compile is not False:
            out = torch.compile(out, **({} if c.torch_compile is True else {"mode": c.torch_compile}))
        self._wrapped = (trainable, out)
        return out

    def _load_resume_state(self, ckpt_dir: Path | None) -> dict[str, Any] | None:
        if ckpt_dir is None:
            return None
        return load_checkpoint(ckpt_dir / LAST) if resolve_resume(self.resume, ckpt_dir / LAST) else None

    def _improved(self, value: float, best: dict[str, Any] | None) -> bool:
        if math.isnan(value):
            return False
        if best is None or best["value"] is None:
            return True
        return value > best["value"] if self.monitor_mode == "max" else value < best["value"]

    def _train_epoch(self, learner: Trainable, module: torch.nn.Module, opt: torch.optim.Optimizer,
                     scaler: torch.amp.GradScaler, train: Any, epoch: int, global_step: int,
                     amp_dtype: torch.dtype | None, dist: distributed.DistInfo,
                     info: dict[str, Any]) -> tuple[dict[str, Any], int]:
        """One epoch of optimiser steps: the epoch's history row (mean loss and logs over all ranks' steps) and the new global step.

        With several processes every step agrees across ranks before its update: a non-finite
        loss on any rank stops all of them, the learning-rate scale of a :class:`StepOutput`
        (nnPU's ascent factor γ) is the ranks' mean, and every rank back-propagates (a constant
        loss through a zero-weighted term over all parameters) so that DDP's gradient all-reduce
        sees every parameter once per step.
        """
        module.train()
        device = next(module.parameters()).device
        batches = learner.train_batches(train, epoch, epoch_generator(self.config.random_state, epoch))
        n_steps = len(batches) if hasattr(batches, "__len__") else None
        if dist.enabled and n_steps is not None:
            lengths = distributed.all_gather_object(n_steps)
            if len(set(lengths)) > 1:
                raise TrainingError(f"{type(learner).__name__}.train_batches gave the ranks different numbers of "
                                    f"batches in epoch {epoch} ({lengths}); take each rank's share with "
                                    "weakseg.engine.distributed.rank_share")
        if n_steps is None and self.schedule.needs_epoch_length and not self._warned_length:
            log.warning("%s.train_batches has no len(): the %s schedule updates once per epoch",
                        type(learner).__name__, self.schedule.name)
            self._warned_length = True
        params = [p for p in module.parameters() if p.requires_grad]
        # the steps go through the DDP / compiled wrapper; train_batches saw the plain module
        learner.bind_module(self._training_module(module, device, dist), device, info)
        loss_sum, n_done, last_finite = 0.0, 0, None
        log_sums: dict[str, float] = {}
        with self._progress(epoch, n_steps, dist.is_main) as advance:
            for step, batch in enumerate(batches):
                factor = self.schedule.factor(epoch, step, n_steps, global_step)
                with torch.autocast(device_type=device.type, dtype=amp_dtype or torch.bfloat16, enabled=amp_dtype is not None):
                    out = learner.training_step(batch)
                if not isinstance(out, StepOutput):
                    out = StepOutput(loss=out)
                loss = out.loss
                if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
                    raise TrainingError(
                        f"{type(learner).__name__}.training_step must return a scalar tensor or StepOutput, "
                        f"got {type(loss).__name__}"
                    )
                value = float(loss.detach())
                lr_scale, bad_rank = float(out.lr_scale), None
                if dist.enabled:  # one small all-reduce per step: finiteness and the learning-rate scale
                    finite, scale_sum = distributed.all_reduce_sum(
                        [1.0 if math.isfinite(value) else 0.0, lr_scale], device)
                    lr_scale = scale_sum / dist.world
                    if finite < dist.world and math.isfinite(value):
                        bad_rank = "another rank"
                if not math.isfinite(value) or bad_rank is not None:
                    where = f"epoch {epoch}, step {step} (global step {global_step})"
                    prev = "none yet" if last_finite is None else f"{last_finite:.6g}"
                    shown = f"{value}" if bad_rank is None else f"non-finite on {bad_rank}"
                    raise NonFiniteLossError(
                        f"loss is {shown} at {where}; last finite loss: {prev}. Lower the learning rate, "
                        f"set grad_clip, or check the inputs of this batch"
                    )
                last_finite = value
                opt.zero_grad(set_to_none=True)
                if dist.enabled:  # every parameter gets a gradient on every rank, whatever the step used
                    loss = loss + 0.0 * sum(p.reshape(-1)[0] for p in params)
                if loss.requires_grad:  # a batch that yields a constant loss (e.g. nothing to learn) is skipped
                    scaler.scale(loss).backward()
                    if self.config.grad_clip is not None:
                        scaler.unscale_(opt)
                        torch.nn.utils.clip_grad_norm_(module.parameters(), float(self.config.grad_clip))
                    for group in opt.param_groups:
                        group["lr"] = group["initial_lr"] * factor * lr_scale
                    scaler.step(opt)
                    scaler.update()
                for group in opt.param_groups:
                    group["lr"] = group["initial_lr"] * factor
                global_step += 1
                loss_sum += value
                n_done += 1
                for key, v in out.logs.items():
                    v = float(v.detach()) if isinstance(v, torch.Tensor) else float(v)
                    log_sums[key] = log_sums.get(key, 0.0) + v
                advance(value)
        if n_done == 0:
            raise TrainingError(f"{type(learner).__name__}.train_batches yielded no batch in epoch {epoch}")
        if dist.enabled:
            # buffers (batch-norm running statistics) last moved with each rank's own batch: rank 0's for all
            distributed.broadcast_buffers(module)
            # the epoch's means over every rank's steps
            gathered = distributed.all_gather_object((loss_sum, n_done, log_sums))
            loss_sum, n_done = sum(g[0] for g in gathered), sum(g[1] for g in gathered)
            log_sums = {k: sum(g[2].get(k, 0.0) for g in gathered) for k in dict.fromkeys(k for g in gathered for k in g[2])}
        row: dict[str, Any] = {"epoch": epoch, "train_loss": loss_sum / n_done}
        row.update({f"train_{k}": s / n_done for k, s in log_sums.items()})
        return row, global_step

    def _evaluate(self, learner: Trainable, module: torch.nn.Module, val: Any) -> dict[str, float]:
        module.eval()
        with torch.no_grad():
            metrics = learner.evaluate(val)
        if self.monitor not in metrics:
            raise TrainingError(
                f"{type(learner).__name__}.evaluate returned no {self.monitor!r} (the monitored metric); "
                f"it returned {sorted(metrics)}"
            )
        return {k: float(v) for k, v in metrics.items()}

    def _log_epoch(self, row: dict[str, Any], best: dict[str, Any] | None) -> None:
        """One compact INFO line per epoch (epoch/max, train loss, monitored metric, best, seconds); the rest at DEBUG.

        Epochs are counted from 1 here, as in the progress bar (``metrics.csv`` and checkpoints count from 0).
        """
        parts = [f"epoch {row['epoch'] + 1}/{self.max_epochs}", f"train_loss {row['train_loss']:.4g}"]
        key = f"val_{self.monitor}"
        if key in row:
            parts.append(f"{key} {row[key]:.4g}")
            if best is not None and best["value"] is not None:
                parts.append(f"best {best['value']:.4g} at epoch {best['epoch'] + 1}")
        parts.append(f"{row['seconds']:.1f} s")
        log.info("%s", ", ".join(parts))
        shown = ", ".join(f"{k}={v:.4g}" for k, v in row.items() if k not in ("epoch",) and isinstance(v, float))
        best_note = f" (best epoch {best['epoch']})" if best is not None else ""
        log.debug("epoch %d: %s%s", row["epoch"], shown, best_note)

    def _progress(self, epoch: int, total: int | None, main: bool = True):
        return _EpochBar(f"epoch {epoch + 1}/{self.max_epochs}", total,
                         main and (sys.stderr.isatty() if self.progress is None else bool(self.progress)))


class _Determinism:
    """``deterministic=True``: deterministic torch algorithms for the run (restored after); otherwise
    cuDNN benchmarks its convolution kernels on CUDA (fastest for fixed tile sizes)."""

    def __init__(self, deterministic: bool, device: torch.device) -> None:
        self.deterministic, self.cuda = deterministic, device.type == "cuda"

    def __enter__(self) -> None:
        import os

        self._saved = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
                       torch.backends.cudnn.benchmark)
        if self.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS reproducibility (CUDA >= 10.2)
            torch.use_deterministic_algorithms(True)
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
        elif self.cuda:
            torch.backends.cudnn.benchmark = True

    def __exit__(self, *exc: Any) -> None:
        algorithms, torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = self._saved
        torch.use_deterministic_algorithms(algorithms)


class _ChannelsLastInputs:
    """While active, 4-D tensor arguments of ``module``'s forward are made channels-last (``None``: no-op)."""

    def __init__(self, module: torch.nn.Module | None) -> None:
        self.module, self.handle = module, None

    @staticmethod
    def _hook(_module: torch.nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(a.contiguous(memory_format=torch.channels_last) if isinstance(a, torch.Tensor) and a.dim() == 4
                     else a for a in args)

    def __enter__(self) -> None:
        if self.module is not None:
            self.handle = self.module.register_forward_pre_hook(self._hook)

    def __exit__(self, *exc: Any) -> None:
        if self.handle is not None:
            self.handle.remove()


class _EpochBar:
    """A transient rich progress bar over one epoch's steps with the running mean loss (no-op when disabled).

    Each finished epoch is summarised by a log line (logger ``weakseg.engine.trainer``) instead.
    """

    def __init__(self, description: str, total: int | None, enabled: bool) -> None:
        self.description, self.total, self.enabled = description, total, enabled
        self._bar: Any = None
        self._sum, self._n = 0.0, 0

    def __enter__(self):
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TextColumn("loss {task.fields[loss]}"),
                                 console=Console(stderr=True), transient=True)
            self._bar.__enter__()
            self._task = self._bar.add_task(self.description, total=self.total, loss="-")
        return self._advance

    def _advance(self, loss: float) -> None:
        self._sum += loss
        self._n += 1
        if self._bar is not None:
            self._bar.update(self._task, advance=1, loss=f"{self._sum / self._n:.4f}")

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)


__all__ = ["NonFiniteLossError", "Trainer", "TrainingError", "resolve_device"]
