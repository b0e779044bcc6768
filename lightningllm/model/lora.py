"""LoRA: low-rank adapters on a frozen ``GPT``'s linears, with merge, unmerge and peft-named adapter files.

``apply_lora(gpt, LoRAConfig(r=8, alpha=16, targets=("attn.*",)))`` wraps each chosen
``nn.Linear`` inside ``gpt.blocks`` in a :class:`LoRALinear`: the original layer stays as ``base``
(the very same weight tensors, frozen), and the adapter adds ``B(A(dropout(x))) * scaling`` with
``A`` of shape (r, in) and ``B`` of shape (out, r), ``B`` starting at zero so the wrapped model
computes exactly what the base model did. Every other parameter is frozen, so ``param_groups``
and the optimizer see only the adapters. ``merge_lora`` folds ``B @ A * scaling`` into the base
weights for inference, ``unmerge_lora`` restores them bit-identically, and ``merged_state_dict``
gives plain ``GPT`` weights with the adapters folded in (what export needs) without touching the
model. ``save_adapter`` writes peft's two files, ``adapter_config.json`` and
``adapter_model.safetensors``, with peft's tensor names (``base_model.model.<module
path>.lora_A.weight``); ``load_adapter`` checks them against the model before applying them.
"""

from __future__ import annotations

import fnmatch
import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from lightningllm.model.gpt import GPT

ADAPTER_CONFIG_FILE = "adapter_config.json"
ADAPTER_WEIGHTS_FILE = "adapter_model.safetensors"
PEFT_PREFIX = "base_model.model."
"""peft names a tensor ``base_model.model.<module path in the base model>.lora_A.weight``."""


@dataclass
class LoRAConfig:
    """Which linears get adapters, and their rank, scale and dropout."""

    r: int = 8
    """Rank of each adapter: ``A`` is (r, in_features), ``B`` is (out_features, r)."""
    alpha: float = 16.0
    """Scale of the adapter's output: ``alpha / r`` (or ``alpha / sqrt(r)`` with ``rslora``)."""
    dropout: float = 0.0
    """Dropout on the adapter's input (the base layer sees the input unchanged)."""
    targets: tuple[str, ...] = ("attn.qkv", "attn.proj")
    """Linears inside ``GPT.blocks`` to adapt, as shell-style patterns matched against the end of
    each linear's dotted path: ``attn.qkv`` (fused query/key/value), ``attn.proj`` (attention
    output), ``mlp.*`` (``fc``/``proj``, or ``gate``/``up``/``proj`` for SwiGLU), ``proj``
    (both output projections), ``blocks.0.attn.qkv`` (one layer). Each must match something."""
    rslora: bool = False
    """Rank-stabilized LoRA: scale by ``alpha / sqrt(r)`` instead of ``alpha / r``."""

    def __post_init__(self) -> None:
        if isinstance(self.targets, str):
            self.targets = (self.targets,)
        self.targets = tuple(self.targets)
        if isinstance(self.r, bool) or not isinstance(self.r, int) or self.r < 1:
            raise ValueError(f"lora.r must be a positive integer, got {self.r!r}")
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) or not math.isfinite(self.alpha):
            raise ValueError(f"lora.alpha must be a finite number, got {self.alpha!r}")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise ValueError(f"lora.dropout must be in [0, 1), got {self.dropout!r}")
        if not self.targets or not all(isinstance(t, str) and t for t in self.targets):
            raise ValueError(f"lora.targets must be one or more non-empty module-name patterns, got {self.targets!r}")
        if not isinstance(self.rslora, bool):
            raise ValueError(f"lora.rslora must be true or false, got {self.rslora!r}")

    @property
    def scaling(self) -> float:
        return self.alpha / (math.sqrt(self.r) if self.rslora else self.r)


class LoRALinear(nn.Module):
    """An ``nn.Linear`` (kept as ``base``, frozen) plus a trainable low-rank update ``B @ A * scaling``."""

    def __init__(self, base: nn.Linear, r: int, alpha: float, dropout: float = 0.0, rslora: bool = False):
        super().__init__()
        self.base = base
        self.r = r
        self.scaling = alpha / (math.sqrt(r) if rslora else r)
        factory = {"device": base.weight.device, "dtype": base.weight.dtype}
        self.lora_A = nn.Linear(base.in_features, r, bias=False, **factory)
        self.lora_B = nn.Linear(r, base.out_features, bias=False, **factory)
        self.dropout = nn.Dropout(dropout)
        self.merged = False
        self.disabled = False
        """While true (``adapters_disabled``), the layer computes its base layer alone."""
        self._unmerged_weight: torch.Tensor | None = None
        self.reset_lora_parameters()

    def reset_lora_parameters(self) -> None:
        """peft's init: ``A`` Kaiming-uniform (as ``nn.Linear``'s), ``B`` zero, so the update starts at zero."""
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)

    @property
    def weight(self) -> torch.Tensor:
        """The base layer's weight (out, in), so code that reads ``layer.weight`` keeps working."""
        return self.base.weight

    def delta_weight(self) -> torch.Tensor:
        """The adapter's update to the base weight, ``B @ A * scaling``: (out, in)."""
        return (self.lora_B.weight @ self.lora_A.weight) * self.scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (..., in) -> (..., out). Merged, the base layer already holds the update."""
        y = self.base(x)
        if self.merged or self.disabled:
            return y
        # In place, the scale folded in: no extra (..., out) tensors beside the base layer's output.
        return y.add_(self.lora_B(self.lora_A(self.dropout(x))), alpha=self.scaling)

    @torch.no_grad()
    def merge(self) -> None:
        """Add the update into ``base.weight`` in place (a no-op if merged already).

        The unmerged weight is kept aside (one copy of this layer's weight) so ``unmerge`` restores it
        bit-identically: subtracting the update again would be off by float rounding.
        """
        if self.merged:
            return
        self._unmerged_weight = self.base.weight.detach().clone()
        self.base.weight.add_(self.delta_weight().to(self.base.weight.dtype))
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Put back the base weight as it was before ``merge`` (a no-op if not merged)."""
        if not self.merged:
            return
        self.base.weight.copy_(self._unmerged_weight)
        self._unmerged_weight = None
        self.merged = False

    def merged_weight(self) -> torch.Tensor:
        """``base.weight`` with the update folded in, as a new tensor; the layer is left as it is."""
        if self.merged:
            return self.base.weight.detach().clone()
        return (self.base.weight + self.delta_weight().to(self.base.weight.dtype)).detach()

    def extra_repr(self) -> str:
        return f"r={self.r}, scaling={self.scaling:g}, merged={self.merged}"


# --- applying adapters to a GPT ----------------------------------------------------------------
def target_linears(gpt: GPT, config: LoRAConfig) -> dict[str, nn.Linear]:
    """The ``nn.Linear`` layers of ``gpt.blocks`` that ``config.targets`` selects, by dotted path in ``gpt``.

    A pattern matches a linear when it matches (``fnmatch``) one of the path's dotted endings:
    ``proj`` matches ``blocks.0.attn.proj`` and ``blocks.0.mlp.proj``; ``attn.*`` matches both
    attention linears. Raises ``ValueError`` naming a pattern that matches no linear.
    """
    linears = {
        f"blocks.{name}": module
        for name, module in gpt.blocks.named_modules()
        if isinstance(module, nn.Linear) and not _inside_lora(name)
    }
    for pattern in config.targets:
        if not any(_matches(path, pattern) for path in linears):
            kinds = sorted({path.split(".", 2)[2] for path in linears})
            raise ValueError(f"lora.targets: {pattern!r} matches no linear layer of the model; its linears are {kinds}")
    return {path: layer for path, layer in linears.items() if any(_matches(path, p) for p in config.targets)}


def _matches(path: str, pattern: str) -> bool:
    parts = path.split(".")
    return any(fnmatch.fnmatchcase(".".join(parts[i:]), pattern) for i in range(len(parts)))


def _inside_lora(name: str) -> bool:
    return any(part in ("lora_A", "lora_B", "base") for part in name.split("."))


def apply_lora(gpt: GPT, config: LoRAConfig) -> GPT:
    """Wrap the targeted linears of ``gpt`` in :class:`LoRALinear` and freeze everything else, in place.

    After this only ``lora_A``/``lora_B`` weights have ``requires_grad``; the base weights are the
    same tensor objects as before. Returns ``gpt``. Refuses a model that has adapters already.
    """
    if lora_layers(gpt):
        raise ValueError("apply_lora: the model has LoRA adapters already; apply them once")
    chosen = target_linears(gpt, config)
    for param in gpt.parameters():
        param.requires_grad_(False)
    for path, linear in chosen.items():
        parent_path, _, name = path.rpartition(".")
        wrapped = LoRALinear(linear, config.r, config.alpha, config.dropout, config.rslora)
        setattr(gpt.get_submodule(parent_path), name, wrapped)
    return gpt


def lora_layers(gpt: nn.Module) -> dict[str, LoRALinear]:
    """The model's :class:`LoRALinear` layers by dotted path (the path of the linear they wrap)."""
    return {name: module for name, module in gpt.named_modules() if isinstance(module, LoRALinear)}


def merge_lora(gpt: nn.Module) -> None:
    """Fold every adapter into its base weight (see :meth:`LoRALinear.merge`)."""
    for layer in lora_layers(gpt).values():
        layer.merge()


def unmerge_lora(gpt: nn.Module) -> None:
    """Restore every base weight exactly as before :func:`merge_lora`."""
    for layer in lora_layers(gpt).values():
        layer.unmerge()


@contextmanager
def adapters_disabled(gpt: nn.Module) -> Iterator[None]:
    """Within the block, ``gpt`` computes its base model alone (the adapters skipped, not removed): the
    frozen reference of preference tuning and RL, with no second copy of the weights. Refuses a merged model,
    whose base weights hold the adapters."""
    layers = list(lora_layers(gpt).values())
    if any(layer.merged for layer in layers):
        raise ValueError("adapters_disabled: the adapters are merged into the base weights; unmerge_lora first")
    for layer in layers:
        layer.disabled = True
    try:
        yield
    finally:
        for layer in layers:
            layer.disabled = False


def trainable_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) distinct parameter counts; tied weights counted once."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def lora_state_dict(gpt: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter weights alone, under peft's names: ``base_model.model.<path>.lora_A.weight`` (r, in)
    and ``...lora_B.weight`` (out, r)."""
    state = {}
    for path, layer in lora_layers(gpt).items():
        state[f"{PEFT_PREFIX}{path}.lora_A.weight"] = layer.lora_A.weight.detach()
        state[f"{PEFT_PREFIX}{path}.lora_B.weight"] = layer.lora_B.weight.detach()
    return state


def merged_state_dict(gpt: nn.Module) -> dict[str, torch.Tensor]:
    """Plain ``GPT`` weights with every adapter folded in, under the names of an unwrapped ``GPT``.

    ``GPT(gpt.config).load_state_dict(merged_state_dict(gpt))`` builds the merged model without
    adapters (what export needs). The model itself is not changed; tied weights stay one tensor.
    """
    layers = lora_layers(gpt)
    state: dict[str, torch.Tensor] = {}
    for name, tensor in gpt.state_dict().items():
        module_path, _, leaf = name.rpartition(".")
        if module_path in layers or module_path.rpartition(".")[2] in ("lora_A", "lora_B"):
            continue  # the adapter's own weights; merged below
        if module_path.endswith(".base") and module_path[: -len(".base")] in layers:
            path = module_path[: -len(".base")]
            state[f"{path}.{leaf}"] = layers[path].merged_weight() if leaf == "weight" else tensor
        else:
            state[name] = tensor
    return state


def merge_lora_state(state: dict[str, torch.Tensor], config: LoRAConfig) -> dict[str, torch.Tensor]:
    """A state dict of a model with adapters (``<path>.base.weight``, ``<path>.lora_A.weight``, ...) as the
    plain ``GPT`` state dict with each adapter folded into its weight: ``W + B @ A * scaling``.

    What reading a LoRA checkpoint for inference or export needs, without building the wrapped model.
    Tensors are not changed in place. Raises ``ValueError`` naming a layer whose adapter is incomplete.
    """
    merged: dict[str, torch.Tensor] = {}
    adapters = {name.removesuffix(".lora_A.weight") for name in state if name.endswith(".lora_A.weight")}
    for path in sorted(adapters):
        names = [f"{path}.base.weight", f"{path}.lora_A.weight", f"{path}.lora_B.weight"]
        missing = [name for name in names if name not in state]
        if missing:
            raise ValueError(f"LoRA weights of {path} are incomplete (missing {missing})")
        base, a, b = (state[name] for name in names)
        if a.shape[0] != config.r:
            raise ValueError(f"LoRA weights of {path} have rank {a.shape[0]}, but the adapter config says r={config.r}")
        merged[f"{path}.weight"] = base + ((b.float() @ a.float()) * config.scaling).to(base.dtype)
    for name, tensor in state.items():
        module_path, _, leaf = name.rpartition(".")
        owner = module_path.rpartition(".")[0]
        if owner in adapters and module_path.endswith((".lora_A", ".lora_B")):
            continue
        if owner in adapters and module_path.endswith(".base"):
            if leaf != "weight":
                merged[f"{owner}.{leaf}"] = tensor  # the base layer's bias
            continue
        merged[name] = tensor
    return merged


# --- adapter files (peft's layout) ---------------------------------------------------------------
def save_adapter(
    gpt: nn.Module, config: LoRAConfig, directory: str | Path, base_model_name_or_path: str | None = None
) -> None:
    """Write ``adapter_config.json`` and ``adapter_model.safetensors`` (the adapters only) to ``directory``.

    ``target_modules`` lists the exact module paths that carry adapters, so the file says what was
    adapted whatever patterns chose them. Adapters of a merged model are saved as trained.
    """
    from safetensors.torch import save

    layers = lora_layers(gpt)
    if not layers:
        raise ValueError("save_adapter: the model has no LoRA adapters (call apply_lora first)")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    peft_config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model_name_or_path,
        "r": config.r,
        "lora_alpha": config.alpha,
        "lora_dropout": config.dropout,
        "target_modules": list(layers),
        "use_rslora": config.rslora,
        "bias": "none",
        "fan_in_fan_out": False,
        "modules_to_save": None,
        "init_lora_weights": True,
        "inference_mode": True,
    }
    tensors = {name: tensor.cpu().contiguous() for name, tensor in lora_state_dict(gpt).items()}
    (directory / ADAPTER_CONFIG_FILE).write_text(json.dumps(peft_config, indent=2) + "\n", encoding="utf-8")
    (directory / ADAPTER_WEIGHTS_FILE).write_bytes(save(tensors, metadata={"format": "pt"}))


def read_adapter_config(directory: str | Path) -> LoRAConfig:
    """The ``LoRAConfig`` of a folder written by :func:`save_adapter` (or by peft for this model)."""
    path = Path(directory) / ADAPTER_CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no adapter config here (save_adapter writes {ADAPTER_CONFIG_FILE})")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: must hold a JSON object")
    if data.get("peft_type") != "LORA":
        raise ValueError(f"{path}: peft_type must be 'LORA', got {data.get('peft_type')!r}")
    if data.get("bias", "none") != "none":
        raise ValueError(f"{path}: bias {data['bias']!r} is not supported; only 'none'")
    if data.get("modules_to_save"):
        raise ValueError(f"{path}: modules_to_save is not supported, got {data['modules_to_save']!r}")
    if data.get("fan_in_fan_out", False):
        raise ValueError(f"{path}: fan_in_fan_out is not supported for this model's nn.Linear layers")
    missing = [key for key in ("r", "lora_alpha", "target_modules") if key not in data]
    if missing:
        raise ValueError(f"{path}: missing key(s) {missing}")
    targets = data["target_modules"]
    try:
        return LoRAConfig(
            r=data["r"],
            alpha=data["lora_alpha"],
            dropout=data.get("lora_dropout", 0.0),
            targets=tuple(targets) if isinstance(targets, list) else targets,
            rslora=data.get("use_rslora", False),
        )
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None


def load_adapter(gpt: GPT, directory: str | Path, map_location: str | torch.device = "cpu") -> LoRAConfig:
    """Apply the adapters saved in ``directory`` to ``gpt`` (in place) and return their config.

    The files are checked against the model before it is changed: the config's targets must exist
    in it, and the tensor names and shapes must be exactly those it expects. Each problem is a
    one-line ``ValueError`` naming the file.
    """
    from safetensors import SafetensorError, safe_open

    directory = Path(directory)
    config = read_adapter_config(directory)
    config_path, weights_path = directory / ADAPTER_CONFIG_FILE, directory / ADAPTER_WEIGHTS_FILE
    try:
        chosen = target_linears(gpt, config)
    except ValueError as err:
        raise ValueError(f"{config_path}: {err}") from None
    expected = {}
    for path, linear in chosen.items():
        expected[f"{PEFT_PREFIX}{path}.lora_A.weight"] = (config.r, linear.in_features)
        expected[f"{PEFT_PREFIX}{path}.lora_B.weight"] = (linear.out_features, config.r)
    if not weights_path.is_file():
        raise FileNotFoundError(f"{weights_path}: no adapter weights here")
    try:
        with safe_open(str(weights_path), framework="pt", device=str(map_location)) as file:
            found = {name: tuple(file.get_slice(name).get_shape()) for name in file.keys()}
            if set(found) != set(expected):
                missing, extra = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
                raise ValueError(
                    f"{weights_path}: tensor names do not fit the model and {config_path.name} "
                    f"(missing {missing[:3]}, unexpected {extra[:3]})"
                )
            for name, shape in expected.items():
                if found[name] != shape:
                    raise ValueError(
                        f"{weights_path}: {name} has shape {list(found[name])}, the model needs {list(shape)}"
                    )
            tensors = {name: file.get_tensor(name) for name in expected}
    except SafetensorError as err:
        raise ValueError(f"{weights_path}: not a readable safetensors file ({err})") from None
    apply_lora(gpt, config)
    with torch.no_grad():
        for path, layer in lora_layers(gpt).items():
            layer.lora_A.weight.copy_(tensors[f"{PEFT_PREFIX}{path}.lora_A.weight"])
            layer.lora_B.weight.copy_(tensors[f"{PEFT_PREFIX}{path}.lora_B.weight"])
    return config
