"""Networks, all from MONAI, plus saving and loading without pickle."""
from __future__ import annotations

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


def build_from_spec(spec: dict) -> torch.nn.Module:
    if spec["kind"] == "unet":
        return build_unet(spec["in_channels"], spec["n_classes"], spec["features"])
    raise ValueError(f"model spec: unknown kind '{spec['kind']}'")


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
