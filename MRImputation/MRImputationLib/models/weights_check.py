"""Does a weights file fit the network its configuration describes? Answered before anything is built.

A bundle's `model` configuration and its `generator.safetensors` are both data from disk. If they
disagree (a tensor of another shape, one missing, one extra), building the network and loading
the weights would fail deep in torch with a traceback, or first allocate whatever the wrong shapes
ask for. Here the shapes the configuration implies come from the family's network built on torch's
meta device (no memory, no computation), and the file's come from its safetensors header alone
(the 8-byte length and the JSON header, no tensor read); any difference is an InputError naming
the file and the first differences.
"""

from __future__ import annotations

import json

from ..core.errors import InputError
from .family import FamilyConfig, family_of

MAX_HEADER_BYTES = 100 * 1024 * 1024  # safetensors' own limit on its JSON header


def header_shapes(data: bytes, where: str) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape, from the JSON header of safetensors bytes (InputError when it is not one)."""
    length = int.from_bytes(data[:8], "little") if len(data) >= 8 else -1
    if not 0 < length <= min(MAX_HEADER_BYTES, len(data) - 8):
        raise InputError(f"{where}: not a readable safetensors file (its header is cut short); export it again.")
    try:
        header = json.loads(data[8: 8 + length].decode("utf-8"))
        return {name: tuple(int(d) for d in entry["shape"]) for name, entry in header.items() if name != "__metadata__"}
    except (UnicodeDecodeError, ValueError, TypeError, KeyError, AttributeError):
        raise InputError(f"{where}: not a readable safetensors file (its header is not valid); export it again.") from None


def expected_shapes(config: FamilyConfig) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape of the state dict of the network that imputes, built on the meta device."""
    import torch

    with torch.device("meta"):
        network = family_of(config).build_inference_network(config)
    return {name: tuple(tensor.shape) for name, tensor in network.state_dict().items()}


def check_weights_fit(config: FamilyConfig, data: bytes, where: str) -> None:
    """InputError naming `where` unless the safetensors `data` holds exactly the tensors `config` implies."""
    found, wanted = header_shapes(data, where), expected_shapes(config)
    differences = [f"{name} is missing" for name in wanted if name not in found]
    differences += [f"{name} is not part of this network" for name in found if name not in wanted]
    differences += [f"{name} has shape {list(found[name])}, the configuration needs {list(shape)}"
                    for name, shape in wanted.items() if name in found and found[name] != shape]
    if differences:
        shown = "; ".join(differences[:4]) + (f"; and {len(differences) - 4} more" if len(differences) > 4 else "")
        raise InputError(f"{where}: the weights do not fit the network bundle.json describes ({config.name}): "
                         f"{shown}. The bundle is inconsistent; export or download it again.")
