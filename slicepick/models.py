"""Networks, all from MONAI, plus saving and loading without pickle."""
from __future__ import annotations

import importlib
from pathlib import Path

import torch
from monai.networks.nets import BasicUNet


def build_unet(in_channels: int, n_classes: int, features) -> torch.nn.Module:
    """2D U-Net: two conv + BN + ReLU per block, max pooling down, transposed conv up.

    ``features`` = (level 1..4 filters, bottleneck, final); paper: (32, 64, 128, 256, 512, 32).
    Input H and W must be divisible by 16.
    """
    return BasicUNet(spatial_dims=2, in_channels=in_channels, out_channels=n_classes,
                     features=tuple(int(f) for f in features), act=("relu", {"inplace": True}),
                     norm=("batch", {"affine": True}), upsample="deconv")


def unet_spec(in_channels: int, n_classes: int, features) -> dict:
    return {"kind": "unet", "in_channels": int(in_channels), "n_classes": int(n_classes),
            "features": [int(f) for f in features]}


class EnsembleMean(torch.nn.Module):
    """Members whose softmax outputs are averaged: DAL's model for evaluation and suggestion.

    ``forward`` returns the log of the mean probability, shape (B, C, H, W): its argmax is the
    argmax of the mean probability (what evaluation takes), and its softmax is the mean
    probability itself, so anything that treats a model's output as logits stays correct.
    """

    def __init__(self, members):
        super().__init__()
        self.members = torch.nn.ModuleList(members)

    def member_probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """Softmax output of every member, shape (K, B, C, H, W)."""
        return torch.stack([m(x).softmax(1) for m in self.members])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.member_probabilities(x).mean(0).clamp_min(1e-12).log()


def ensemble_spec(member_specs) -> dict:
    return {"kind": "ensemble", "members": [dict(s) for s in member_specs]}


# Kinds whose network lives beside the method that needs it (so editing it reruns that method's
# jobs only); imported when a spec asks for them, never at import time.
_METHOD_KINDS = {"unet_ll": "slicepick.strategies.ll"}


def build_from_spec(spec: dict) -> torch.nn.Module:
    """A fresh network from its spec (kinds: unet, ensemble, and those in ``_METHOD_KINDS``)."""
    kind = spec.get("kind")
    if kind == "unet":
        return build_unet(spec["in_channels"], spec["n_classes"], spec["features"])
    if kind == "ensemble":
        return EnsembleMean([build_from_spec(s) for s in spec["members"]])
    if kind in _METHOD_KINDS:
        return importlib.import_module(_METHOD_KINDS[kind]).build_from_spec(spec)
    raise ValueError(f"model spec: unknown kind '{kind}' (known: unet, ensemble, {', '.join(_METHOD_KINDS)})")


def build_seeded(spec: dict, seed: int) -> torch.nn.Module:
    """``build_from_spec`` with initial weights drawn from ``seed``; the caller's torch RNG is untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_from_spec(spec)


def save_model(path: str | Path, model: torch.nn.Module, spec: dict, **extra) -> None:
    """Weights plus the spec that rebuilds the network; loadable with ``weights_only=True``."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({"spec": spec, "state_dict": model.state_dict(), **extra}, tmp)
    tmp.replace(path)


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict]:
    payload = torch.load(path, map_location=device, weights_only=True)
    model = build_from_spec(payload["spec"])
    model.load_state_dict(payload["state_dict"])
    return model.to(device), payload


def pick_device(requested: str = "auto") -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)
