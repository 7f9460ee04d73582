"""Instance encoders for MIL: a registry of small CNNs, any timm backbone, and precomputed features.

An encoder maps a batch of instances to feature vectors, ``(n, C, H, W)`` → ``(n, out_dim)``
(or ``(n, D)`` → ``(n, D)`` for ``"features"``). Every encoder exposes:

``out_dim``      feature size;
``input_kind``   ``"image"`` or ``"features"``;
``mean``/``std`` per-channel normalisation applied to ``[0, 1]`` images before the encoder.

Names resolve in this order: a registered encoder (:func:`list_encoders`), then any timm model
name (built with ``num_classes=0``, i.e. globally pooled features). Weights never download:
:func:`create_encoder` loads a local ``pretrained_path`` file, or looks a timm model's weights up in
the local Hugging Face / torch hub caches, and raises :class:`EncoderWeightsError` naming the
paths it tried otherwise. ``random_init=True`` skips weights explicitly (tests, demos, and
encoders trained end to end). A weight file must fit the encoder: a missing key, an extra key
other than a classification head's (:data:`HEAD_PREFIXES`), a shape that differs, or a file that
is not a weights-only state dict is an :class:`EncoderWeightsError` naming the file and the keys.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn as nn

from .errors import EncoderWeightsError, WeaksegError
from .registry import Registry

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

ENCODERS: Registry[nn.Module] = Registry("encoder", entry_point_group="weakseg.encoders")


def register_encoder(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering an encoder factory ``f(in_chans, input_size, **kw) -> nn.Module``."""
    return ENCODERS.register(name)


def list_encoders(pattern: str = "*") -> list[str]:
    """Registered encoder names (any timm model name is accepted as well)."""
    return ENCODERS.list(pattern)


class FeatureEncoder(nn.Module):
    """Identity over precomputed ``(n, D)`` features (read from the feature cache)."""

    input_kind = "features"

    def __init__(self, in_dim: int) -> None:
        super().__init__()
        self.out_dim = int(in_dim)
        self.mean: tuple[float, ...] = ()
        self.std: tuple[float, ...] = ()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class ConvTrunk(nn.Module):
    """A small CNN trunk (convolutions + pooling) flattened to ``out_dim`` features."""

    input_kind = "image"

    def __init__(self, layers: nn.Sequential, in_chans: int, input_size: int, mean: tuple[float, ...],
                 std: tuple[float, ...]) -> None:
        super().__init__()
        self.layers = layers
        self.mean, self.std = mean, std
        try:
            with torch.no_grad():
                self.out_dim = int(self.layers(torch.zeros(1, in_chans, input_size, input_size)).flatten(1).shape[1])
        except RuntimeError as err:  # the trunk's kernels do not fit the input
            raise WeaksegError(f"{input_size}-px instances are too small for this encoder ({err})") from None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x).flatten(1)


@register_encoder("features")
def _features(in_dim: int, **_: object) -> nn.Module:
    return FeatureEncoder(in_dim)


@register_encoder("lenet_mnist")
def lenet_mnist(in_chans: int = 1, input_size: int = 28, **_: object) -> nn.Module:
    """LeNet-5-style trunk of Ilse et al. (2018) for MNIST-bags: conv5-20, pool, conv5-50, pool.

    On 28×28 digits it yields 50·4·4 = 800 features (the paper's FC-500 is the MIL projection).
    Inputs smaller than 16 px (e.g. scikit-learn's 8×8 digits) use padding 2 so both 5×5
    convolutions fit.
    """
    pad = 2 if input_size < 16 else 0
    layers = nn.Sequential(
        nn.Conv2d(in_chans, 20, 5, padding=pad), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(20, 50, 5, padding=pad), nn.ReLU(), nn.MaxPool2d(2),
    )
    return ConvTrunk(layers, in_chans, input_size, mean=(0.5,) * in_chans, std=(0.5,) * in_chans)


@register_encoder("colon27")
def colon27(in_chans: int = 3, input_size: int = 27, **_: object) -> nn.Module:
    """Colon-histology trunk of Ilse et al. (2018) for 27×27 patches: conv4-36, pool, conv3-48, pool.

    On 27×27 patches it yields 48·5·5 = 1,200 features (the paper's FC-512 layers form the MIL
    projection).
    """
    layers = nn.Sequential(
        nn.Conv2d(in_chans, 36, 4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(36, 48, 3), nn.ReLU(), nn.MaxPool2d(2),
    )
    return ConvTrunk(layers, in_chans, input_size, mean=IMAGENET_MEAN, std=IMAGENET_STD)


class TimmEncoder(nn.Module):
    """A timm backbone with its classifier removed (global-pooled features).

    A ``pretrained_path`` file must fit the architecture: every parameter and buffer present, nothing else
    beyond a classification head (:data:`HEAD_PREFIXES` and the model's own classifier names);
    see :func:`load_encoder_state`.
    """

    input_kind = "image"

    def __init__(self, name: str, in_chans: int = 3, pretrained_path: str | os.PathLike | None = None,
                 **kwargs: object) -> None:
        super().__init__()
        import timm

        self.model = timm.create_model(name, num_classes=0, in_chans=in_chans, pretrained=False, **kwargs)
        cfg = self.model.pretrained_cfg
        self.mean = tuple(cfg.get("mean", IMAGENET_MEAN))[:in_chans]
        self.std = tuple(cfg.get("std", IMAGENET_STD))[:in_chans]
        self.out_dim = int(self.model.num_features)
        if pretrained_path is not None:
            path = Path(pretrained_path)
            state = _timm_filter(self.model, read_state_dict(path, name), path, name)
            state = _adapt_input_conv(self.model, state, in_chans)
            classifiers = cfg.get("classifier") or ()
            heads = (classifiers,) if isinstance(classifiers, str) else tuple(classifiers)
            load_encoder_state(self.model, state, path, name, extra_heads=tuple(f"{c}." for c in heads))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def _timm_filter(model: nn.Module, state: dict[str, torch.Tensor], path: Path, name: str) -> dict[str, torch.Tensor]:
    """Apply the model module's ``checkpoint_filter_fn`` (timm's conversion of original checkpoints), if any."""
    import sys

    fn = getattr(sys.modules.get(type(model).__module__), "checkpoint_filter_fn", None)
    if fn is None:
        return state
    try:
        try:
            return fn(state, model)
        except TypeError:  # older filters take the state dict only
            return fn(state)
    except Exception as err:  # a filter meeting keys it does not know
        raise EncoderWeightsError(f"{path}: not a checkpoint of encoder {name!r} "
                                  f"(timm's conversion failed: {type(err).__name__}: {err})") from None


def _adapt_input_conv(model: nn.Module, state: dict[str, torch.Tensor], in_chans: int) -> dict[str, torch.Tensor]:
    """Pretrained RGB stem weights summed/repeated for ``in_chans`` input channels (as timm does)."""
    first = model.pretrained_cfg.get("first_conv")
    if in_chans == 3 or not first:
        return state
    from timm.models import adapt_input_conv

    for conv in (first,) if isinstance(first, str) else first:
        key = f"{conv}.weight"
        if key in state and state[key].ndim == 4 and state[key].shape[1] != in_chans:
            state[key] = adapt_input_conv(in_chans, state[key])
    return state


def is_timm_model(name: str) -> bool:
    """True when ``name`` is a timm architecture."""
    import timm

    return bool(timm.is_model(name))


def _cache_candidates(name: str) -> list[Path]:
    """Local files that may hold timm's default pretrained weights for ``name`` (no network)."""
    import timm

    cfg = timm.models.get_pretrained_cfg(name) if hasattr(timm.models, "get_pretrained_cfg") else None
    if cfg is None:
        return []
    out: list[Path] = []
    hf_id = getattr(cfg, "hf_hub_id", None)
    if hf_id:
        hub = Path(os.environ.get("HF_HUB_CACHE") or Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub")
        repo = hub / ("models--" + hf_id.split("@")[0].replace("/", "--")) / "snapshots"
        for fname in ("model.safetensors", "pytorch_model.bin"):
            out.extend(sorted(repo.glob(f"*/{fname}")) or [repo / "<revision>" / fname])
    url = getattr(cfg, "url", None)
    if url:
        torch_home = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch"))
        out.append(torch_home / "hub" / "checkpoints" / url.rsplit("/", 1)[-1])
    return out


def resolve_weights(name: str, pretrained_path: str | os.PathLike | None) -> Path:
    """The local weight file for encoder ``name``: ``pretrained_path`` if given, else an offline cache hit."""
    if pretrained_path is not None:
        path = Path(pretrained_path)
        if not path.is_file():
            raise EncoderWeightsError(
                f"{path}: weight file for encoder {name!r} not found; pass an existing local checkpoint "
                "(a state dict saved with torch.save or .safetensors) or use random init explicitly"
            )
        return path
    tried = _cache_candidates(name) if is_timm_model(name) else []
    for path in tried:
        if path.is_file():
            return path
    where = ", ".join(str(p) for p in tried) or "no cache location known for this encoder"
    raise EncoderWeightsError(
        f"no local pretrained weights for encoder {name!r} (looked in: {where}); nothing is downloaded: "
        "pass a local file with --pretrained-path PATH (pretrained_path=...), or --random-init (random_init=True)"
    )


def checkpoint_digest(path: str | os.PathLike | None) -> str:
    """Short SHA-256 of a weight file (``"random-init"`` for none): part of feature-cache keys."""
    if path is None:
        return "random-init"
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


#: state-dict key prefixes a checkpoint may hold beyond the encoder's own: classification heads of the
#: pretraining task (an encoder is built without its classifier). Any other extra key, and any missing
#: one, means the file does not belong to this architecture and is an error naming the keys.
HEAD_PREFIXES = ("fc.", "head.", "head_dist.", "heads.", "classifier.", "last_linear.")
#: keys a checkpoint may lack (BatchNorm's step counter, absent from some older checkpoints)
OPTIONAL_SUFFIXES = ("num_batches_tracked",)
#: wrappers checkpoints put the state dict in (training scripts, Lightning, DataParallel)
_WRAPPERS = ("state_dict", "model", "module", "network")


def read_state_dict(path: str | os.PathLike, name: str) -> dict[str, torch.Tensor]:
    """Tensors of a weight file (``torch.save`` state dict, possibly wrapped, or ``.safetensors``).

    Unreadable files, pickled objects (never loaded: ``weights_only=True``) and files that hold
    no state dict are :class:`EncoderWeightsError` naming the file.
    """
    from .engine.checkpoint import read_torch_file

    path = Path(path)
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file

            state: object = load_file(str(path))
        except Exception as err:  # safetensors raises its own error types for damaged files
            raise EncoderWeightsError(f"{path}: unreadable safetensors file ({type(err).__name__}: {err})") from None
    else:
        state = read_torch_file(path, what=f"weight file of encoder {name!r}", error=EncoderWeightsError)
    for _ in range(2):  # {"state_dict": {...}}, {"model": {"module": ...}}
        if isinstance(state, dict):
            inner = next((state[k] for k in _WRAPPERS if isinstance(state.get(k), dict)), None)
            if inner is not None:
                state = inner
    if not isinstance(state, dict) or not state or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise EncoderWeightsError(f"{path}: not a state dict (a mapping of parameter names to tensors) "
                                  f"for encoder {name!r}")
    if all(k.startswith("module.") for k in state):  # saved from DataParallel / DDP
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def _keys(keys: list[str], limit: int = 6) -> str:
    shown = ", ".join(keys[:limit])
    return f"[{shown}{f', … ({len(keys)} keys)' if len(keys) > limit else ''}]"


def load_encoder_state(module: nn.Module, state: dict[str, torch.Tensor], path: str | os.PathLike, name: str,
                       *, extra_heads: tuple[str, ...] = ()) -> None:
    """Load ``state`` into ``module``; a key set or shape that does not fit is an error naming the file.

    Allowed differences: extra keys of a classification head (:data:`HEAD_PREFIXES` plus
    ``extra_heads``) and missing :data:`OPTIONAL_SUFFIXES` buffers. Anything else (a checkpoint of
    another architecture, a truncated or unrelated file) raises :class:`EncoderWeightsError` listing
    the missing and unexpected keys, so features are never computed from half-random weights.
    """
    allowed = tuple(dict.fromkeys(HEAD_PREFIXES + tuple(extra_heads)))
    own = module.state_dict()
    missing = [k for k in own if k not in state and not k.endswith(OPTIONAL_SUFFIXES)]
    unexpected = [k for k in state if k not in own and not k.startswith(allowed)]
    if missing or unexpected:
        parts = ([f"missing keys {_keys(missing)}"] if missing else []) + (
            [f"unexpected keys {_keys(unexpected)}"] if unexpected else [])
        raise EncoderWeightsError(
            f"{path}: not a checkpoint of encoder {name!r}: {'; '.join(parts)} (only classifier-head keys "
            f"{', '.join(p + '*' for p in allowed)} may be extra)")
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
             if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if wrong:
        raise EncoderWeightsError(f"{path}: not a checkpoint of encoder {name!r}: tensor shapes differ "
                                  f"({'; '.join(wrong[:4])}{' …' if len(wrong) > 4 else ''})")
    module.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)


def create_encoder(
    name: str,
    *,
    in_chans: int = 3,
    input_size: int = 224,
    in_dim: int | None = None,
    pretrained_path: str | os.PathLike | None = None,
    random_init: bool = True,
    **kwargs: object,
) -> nn.Module:
    """Build encoder ``name`` for instances of shape ``(in_chans, input_size, input_size)`` or ``(in_dim,)``.

    With ``random_init=False`` weights come from ``pretrained_path`` or the offline caches
    (:func:`resolve_weights`); a given ``pretrained_path`` is always loaded.
    """
    weights = None if (random_init and pretrained_path is None) else resolve_weights(name, pretrained_path)
    if name in ENCODERS:
        if name == "features":
            if in_dim is None:
                raise WeaksegError("encoder 'features' needs the feature dimension (in_dim)")
            return FeatureEncoder(in_dim)
        enc = ENCODERS.create(name, in_chans=in_chans, input_size=input_size, **kwargs)
        if weights is not None:
            load_encoder_state(enc, read_state_dict(weights, name), weights, name)
        return enc
    if not is_timm_model(name):
        ENCODERS.get(name)  # raises "unknown encoder" with a suggestion
    if weights is not None and weights.suffix not in (".safetensors", ".bin", ".pth", ".pt"):
        raise EncoderWeightsError(f"{weights}: unsupported weight file type for timm model {name!r}")
    return TimmEncoder(name, in_chans=in_chans, pretrained_path=weights, **kwargs)


def normalize_images(x: torch.Tensor, encoder: nn.Module) -> torch.Tensor:
    """uint8 ``(n, H, W, C)`` or float ``(n, C, H, W)`` in ``[0, 1]`` → normalised float ``(n, C, H, W)``."""
    if x.dtype == torch.uint8:
        x = x.permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(encoder.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(encoder.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - mean) / std
