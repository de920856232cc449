"""VGG19 feature stack in plain torch, for the RSA baseline (no torchvision).

The layer list is torchvision's VGG19 ``features`` (configuration "E": 3x3
convolutions with padding 1, each followed by ReLU, and 2x2 max-pools), with the
same module indices, so the state-dict keys ``features.<i>.weight/bias`` of
torchvision's ImageNet file (``vgg19-dcbac81e.pth``, or a safetensors export of
it) load directly with ``weights_only=True``. Those weights cannot be
downloaded here: save them on a machine with torchvision
(``torchvision.models.vgg19(weights="IMAGENET1K_V1").state_dict()``) and pass
the file with ``--vgg-weights``.

Responses follow the original's VGG script: the 20x40 model
frames are zero-padded to 40x40 (10 rows above and below), repeated to 3
channels and ImageNet-normalised; the outputs of the 16 post-convolution ReLUs
(module indices 1, 3, 6, ..., 35) are flattened per frame.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

VGG19_CONFIG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
                512, 512, 512, 512, "M", 512, 512, 512, 512, "M")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _layer_names() -> list[str]:
    names, block, conv = [], 1, 1
    for item in VGG19_CONFIG:
        if item == "M":
            block, conv = block + 1, 1
        else:
            names.append(f"conv{block}_{conv}")
            conv += 1
    return names


LAYER_NAMES = _layer_names()  # conv1_1 ... conv5_4, 16 names


class VGG19Features(nn.Module):
    """torchvision-compatible ``features``; ``forward`` returns the 16 post-ReLU maps."""

    def __init__(self):
        super().__init__()
        layers, channels = [], 3
        for item in VGG19_CONFIG:
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(channels, item, kernel_size=3, padding=1), nn.ReLU()]
                channels = item
        self.features = nn.Sequential(*layers)
        self.relu_indices = [i for i, layer in enumerate(layers) if isinstance(layer, nn.ReLU)]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, H, W) -> 16 tensors (B, C_l, H_l, W_l); the final pool is skipped."""
        outputs = []
        for i, layer in enumerate(self.features[:self.relu_indices[-1] + 1]):
            x = layer(x)
            if i in self.relu_indices:
                outputs.append(x)
        return outputs


def load_vgg19(path: str | Path) -> VGG19Features:
    """A ``VGG19Features`` with the ``features.*`` weights of a torchvision VGG19
    state dict (.pth/.pt via ``torch.load(weights_only=True)``, or .safetensors);
    other keys (the classifier) are ignored."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"VGG19 weights {path} not found: they cannot be downloaded here; save torchvision's "
                         f"vgg19 ImageNet state dict (vgg19-dcbac81e.pth) elsewhere and give its path")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # any unreadable file: pickle, zip or safetensors errors
        raise ValueError(f"{path}: cannot read it as a weights file ({type(err).__name__}): give torchvision's "
                         f"vgg19 state dict as .pth or .safetensors") from err
    net = VGG19Features()
    features = {k: v for k, v in state.items() if k.startswith("features.")} if isinstance(state, dict) else {}
    expected = net.state_dict()
    wrong = [k for k in expected if k not in features or features[k].shape != expected[k].shape]
    if wrong:
        raise ValueError(f"{path}: not a torchvision VGG19 state dict ({wrong[0]} missing or mis-shaped): "
                         f"give vgg19-dcbac81e.pth or its safetensors export")
    net.load_state_dict(features)
    return net.eval()


def vgg_inputs(frames: np.ndarray) -> torch.Tensor:
    """(T, H, W) frames, H <= W -> (T, 3, W, W): zero rows added equally above
    and below (10 each for 20x40), the frame copied to 3 channels, then ImageNet
    normalisation (x - mean_c) / std_c."""
    frames = torch.as_tensor(np.asarray(frames, dtype=np.float32))
    height, width = frames.shape[1:]
    top = (width - height) // 2
    square = nn.functional.pad(frames, (0, 0, top, width - height - top))
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (square[:, None].expand(-1, 3, -1, -1) - mean) / std


@torch.no_grad()
def vgg_frame_features(net: VGG19Features, frames: np.ndarray, device: torch.device | str = "cpu") -> list[np.ndarray]:
    """(T, H, W) frames -> 16 arrays (T, C_l * H_l * W_l) float32 of flattened post-ReLU maps."""
    outputs = net.to(device)(vgg_inputs(frames).to(device))
    return [o.flatten(1).cpu().numpy() for o in outputs]
