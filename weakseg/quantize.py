"""int8 post-training quantization of segmentation backbones for CPU inference (``weakseg predict --quantize int8``).

Two modes, both with :mod:`torch.ao.quantization` on the ``x86`` (fbgemm) backend:

``"dynamic"``  ``nn.Linear`` layers with int8 weights and activations quantized on the fly
               (``quantize_dynamic``). Only TransUNet has Linear layers (its ViT blocks);
               the convolutional backbones have none and are refused in this mode.
``"static"``   (what ``--quantize int8`` uses) convolutions with int8 weights *and* activations,
               the activation ranges calibrated on a few tiles (FX graph mode ``prepare_fx`` →
               calibration → ``convert_fx``; conv-BN-ReLU fused). Backbone ``forward`` methods
               check their input shapes in Python, which FX cannot trace, so the largest
               traceable submodules are quantized (the timm encoder, each decoder block, the
               head); the glue between them runs in float. Linear layers left in float are then
               quantized dynamically (TransUNet's transformer). Weight-standardised convolutions
               and GroupNorm (TransUNet's ResNetV2 stem and stages) have no int8 kernels and stay
               in float.

:func:`quantize_module` returns a quantized copy (the float module is left as it is) and refuses
with a :class:`~weakseg.errors.WeaksegError` naming the backbone and the reason where int8 is not
possible: no int8 CPU engine, nothing quantizable in the mode asked for, a module that cannot run
on CPU, or a quantized copy whose output is not finite. :func:`quantize_learner` does it for a
fitted segmentation learner, calibrating on its own preprocessing of real tiles.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from .errors import WeaksegError

MODES = ("dynamic", "static")
#: the values ``weakseg predict --quantize`` accepts
QUANTIZE_CHOICES = ("int8",)
#: tiles drawn (evenly over the bags) to calibrate static quantization in :func:`quantize_learner`
N_CALIBRATION_TILES = 16
ENGINE = "x86"


def check_quantize(quantize: str | None) -> str | None:
    """``None`` or one of :data:`QUANTIZE_CHOICES` (``weakseg predict --quantize``), else a :class:`WeaksegError`."""
    if quantize is not None and quantize not in QUANTIZE_CHOICES:
        raise WeaksegError(f"--quantize must be one of {', '.join(QUANTIZE_CHOICES)}, got {quantize!r}")
    return quantize


def _check_engine(name: str) -> None:
    engines = torch.backends.quantized.supported_engines
    engine = ENGINE if ENGINE in engines else "fbgemm" if "fbgemm" in engines else None
    if engine is None:
        raise WeaksegError(f"backbone {name!r} cannot be quantized here: this torch build has no x86/fbgemm int8 "
                           f"engine (supported: {', '.join(engines) or 'none'})")
    torch.backends.quantized.engine = engine


def _is_float_module(module: nn.Module) -> bool:
    return any(p.is_floating_point() for p in module.parameters())


def quantize_module(module: nn.Module, calibration_tiles: torch.Tensor | Sequence[torch.Tensor] | None = None,
                    mode: str = "dynamic", *, name: str | None = None) -> nn.Module:
    """An int8 copy of ``module`` for CPU inference (eval mode; see the module doc for the modes).

    ``calibration_tiles``: what ``module`` is called with at inference, already normalised
    (float ``(B, 3, H, W)``, or a list of such batches); needed by ``"static"``. ``name``
    (default: the module's class) names the backbone in errors.
    """
    name = name or type(module).__name__
    if mode not in MODES:
        raise WeaksegError(f"quantization mode must be one of {MODES}, got {mode!r}")
    _check_engine(name)
    module = copy.deepcopy(module).cpu().eval()  # the copy is quantized in place from here on
    n_linear = sum(isinstance(m, nn.Linear) for m in module.modules())
    if mode == "dynamic":
        if not n_linear:
            raise WeaksegError(f"backbone {name!r} cannot be quantized dynamically: dynamic int8 covers Linear layers "
                               "and it has none (all convolutions); use mode 'static' (calibrated)")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.ao.quantization.quantize_dynamic(module, {nn.Linear}, dtype=torch.qint8, inplace=True)
    if calibration_tiles is None:
        raise WeaksegError(f"backbone {name!r}: static quantization needs calibration tiles")
    batches = [calibration_tiles] if isinstance(calibration_tiles, torch.Tensor) else list(calibration_tiles)
    if not batches or any(not isinstance(b, torch.Tensor) or b.dim() != 4 or not b.is_floating_point() for b in batches):
        raise WeaksegError(f"backbone {name!r}: calibration tiles must be float (B, C, H, W) tensors")
    batches = [b.cpu().float() for b in batches]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's FX-mode deprecation notices
        quantized = _static(module, batches, name)
        if any(isinstance(m, nn.Linear) for m in quantized.modules()):
            quantized = torch.ao.quantization.quantize_dynamic(quantized, {nn.Linear}, dtype=torch.qint8, inplace=True)
    with torch.inference_mode():
        out = quantized(batches[0][:1])
    if not torch.isfinite(out).all():
        raise WeaksegError(f"backbone {name!r}: the int8 model's output is not finite; it cannot be quantized this way")
    return quantized


# -- static (FX graph mode) over the largest traceable submodules ----------------------------------
class _Call(nn.Module):
    """Calls ``inner`` with the tensor arguments only: the ``None`` arguments of the recorded call are fixed
    (FX traces ``if skip is not None`` with the concrete ``None``)."""

    def __init__(self, inner: nn.Module, none_at: tuple[int, ...], n_args: int) -> None:
        super().__init__()
        self.inner, self.none_at, self.n_args = inner, none_at, n_args

    def forward(self, *args: Any) -> Any:
        if len(args) < self.n_args:
            args = (*args, *([None] * (self.n_args - len(args))))
        if tuple(i for i, a in enumerate(args) if a is None) != self.none_at:
            raise RuntimeError("quantized submodule called with other optional arguments than at calibration")
        return self.inner(*(a for a in args if a is not None))


class _Bind(nn.Module):
    """The traced side of :class:`_Call`: tensor arguments in, the original call rebuilt."""

    def __init__(self, module: nn.Module, none_at: tuple[int, ...], n_args: int) -> None:
        super().__init__()
        self.module, self.none_at, self.n_args = module, none_at, n_args

    def _call(self, tensors: tuple) -> Any:
        it = iter(tensors)  # a Python tuple of proxies while FX traces (proxies themselves cannot be iterated)
        return self.module(*(None if i in self.none_at else next(it) for i in range(self.n_args)))


class _Bind1(_Bind):
    def forward(self, a: torch.Tensor) -> Any:
        return self._call((a,))


class _Bind2(_Bind):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> Any:
        return self._call((a, b))


class _Bind3(_Bind):
    def forward(self, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> Any:
        return self._call((a, b, c))


_BIND = {1: _Bind1, 2: _Bind2, 3: _Bind3}  # FX traces no *args: one class per number of tensor arguments


def _record_inputs(module: nn.Module, batch: torch.Tensor) -> dict[str, tuple]:
    """Positional arguments of each submodule's first call during ``module(batch)``."""
    seen: dict[str, tuple] = {}
    handles = []
    for qual, sub in module.named_modules():
        if qual:
            def hook(_m, args, qual=qual):
                seen.setdefault(qual, args)
            handles.append(sub.register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            module(batch)
    finally:
        for h in handles:
            h.remove()
    return seen


def _set_submodule(root: nn.Module, qual: str, new: nn.Module) -> None:
    parent, _, leaf = qual.rpartition(".")
    root.get_submodule(parent)._modules[leaf] = new


def _static(module: nn.Module, batches: list[torch.Tensor], name: str) -> nn.Module:
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    qmap = get_default_qconfig_mapping(torch.backends.quantized.engine)
    inputs = _record_inputs(module, batches[0][:1])
    prepared: list[str] = []

    def visit(qual: str, sub: nn.Module) -> None:
        args = inputs.get(qual)
        example = tuple(a for a in args if a is not None) if args is not None else ()
        if (len(example) in _BIND and _is_float_module(sub)
                and all(a is None or isinstance(a, torch.Tensor) for a in args)):
            none_at = tuple(i for i, a in enumerate(args) if a is None)
            bound = _BIND[len(example)](copy.deepcopy(sub), none_at, len(args))  # a failed prepare leaves sub intact
            try:
                ready = prepare_fx(bound, qmap, example_inputs=example)
                with torch.no_grad():
                    ready(*example)  # a trace that took the wrong branch fails here, not later
            except Exception:  # noqa: BLE001 (untraceable: try its children)
                pass
            else:
                _set_submodule(module, qual, _Call(ready, none_at, len(args)))
                prepared.append(qual)
                return
        for child_name, child in list(sub.named_children()):
            visit(f"{qual}.{child_name}" if qual else child_name, child)

    for child_name, child in list(module.named_children()):
        visit(child_name, child)
    if not prepared:
        raise WeaksegError(f"backbone {name!r} cannot be quantized statically: FX could trace none of its submodules")
    with torch.no_grad():
        for batch in batches:
            module(batch)
    for qual in prepared:
        call = module.get_submodule(qual)
        call.inner = convert_fx(call.inner)
    return module


# -- learners --------------------------------------------------------------------------------
def _calibration_tiles(bags: Sequence[str | Path], n: int) -> np.ndarray:
    """``n`` tiles spread evenly over the bags' tiles (uint8 ``(n, T, T, 3)``)."""
    from .bags import Bag

    counts = []
    for path in bags:
        with Bag(path) as bag:
            counts.append(len(bag))
    total = sum(counts)
    if total == 0:
        raise WeaksegError("no tiles in the bags to calibrate int8 quantization on")
    picks = np.unique(np.linspace(0, total - 1, min(n, total)).round().astype(np.int64))
    tiles, start = [], 0
    for path, count in zip(bags, counts):
        rows = picks[(picks >= start) & (picks < start + count)] - start
        if len(rows):
            with Bag(path) as bag:
                tiles.append(bag.read_tiles(rows))
        start += count
    return np.concatenate(tiles)


def quantize_learner(learner: Any, bags: Sequence[str | Path] | np.ndarray, quantize: str = "int8",
                     mode: str = "static") -> Any:
    """Replace a fitted segmentation learner's module (``learner.module_``) by its int8 copy, on CPU.

    ``bags``: bag paths to draw :data:`N_CALIBRATION_TILES` calibration tiles from, or uint8
    ``(n, T, T, 3)`` tiles. Calibration sees exactly what :meth:`predict_tiles` feeds the module
    (stain normalisation, backbone normalisation, padding). Returns the learner.
    """
    from .learners.nuclei import HoverNetLearner
    from .learners.seg import SegLearner

    if check_quantize(quantize) is None:
        raise WeaksegError("quantize_learner needs quantize='int8'")
    if not isinstance(learner, (SegLearner, HoverNetLearner)):
        raise WeaksegError(f"--quantize int8 applies to segmentation and HoVer-Net learners (nnpu_seg, supervised_seg, "
                           f"hovernet_seg, hovernet_pu), not {getattr(learner, 'name', '') or type(learner).__name__}")
    learner._check_fitted()
    tiles = bags if isinstance(bags, np.ndarray) else _calibration_tiles(list(bags), N_CALIBRATION_TILES)
    module = learner.module_
    if getattr(learner, "device_", torch.device("cpu")).type != "cpu":
        module = module.cpu()
        learner.device_ = torch.device("cpu")
    seen: list[torch.Tensor] = []
    handle = module.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().clone()))
    try:
        learner.predict_tiles(tiles, **({"tta": False} if isinstance(learner, SegLearner) else {}))
    finally:
        handle.remove()
    quantized = quantize_module(module, seen, mode=mode, name=learner.backbone)
    learner.module_ = quantized
    learner.quantized_ = f"{quantize}-{mode}"
    return learner


__all__ = ["MODES", "N_CALIBRATION_TILES", "QUANTIZE_CHOICES", "check_quantize", "quantize_learner", "quantize_module"]
