"""A memory network's trained weights as the flat tensor dict a checkpoint's weights file holds, and back.

Only what r3mem adds to the base LM: both LoRA adapters (`adapter.<name>.*`, PEFT's own state dicts),
the memory parameters and the projection (`projection.*`), all float32 here; `r3mem.checkpoint`
writes and verifies the file.
"""

from __future__ import annotations

import torch
from peft import get_peft_model_state_dict, set_peft_model_state_dict
from torch import Tensor

from r3mem.errors import CheckpointError
from r3mem.memory_net import ADAPTERS, MEMORY_PARAMS, MemoryNetwork


def trainable_state(network: MemoryNetwork) -> dict[str, Tensor]:
    """What r3mem adds to the base LM, as float32 tensors keyed `adapter.<name>.*`, the memory
    parameters and `projection.*`: the contents of a checkpoint's weights file."""
    state: dict[str, Tensor] = {}
    for name in ADAPTERS:
        for key, value in get_peft_model_state_dict(network.lm, adapter_name=name).items():
            state[f"adapter.{name}.{key}"] = value.detach().float().contiguous()
    for name in MEMORY_PARAMS:
        state[name] = getattr(network, name).detach().float().contiguous()
    for key, value in network.projection.state_dict().items():
        state[f"projection.{key}"] = value.detach().float().contiguous()
    return state


def load_trainable_state(network: MemoryNetwork, state: dict[str, Tensor]) -> None:
    """Load `trainable_state` output into `network`; any missing, extra or misshapen key is a CheckpointError."""
    expected = trainable_state(network)
    missing, extra = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or extra:
        raise CheckpointError(f"checkpoint keys differ: missing {missing[:3]}, unexpected {extra[:3]}")
    for key, value in state.items():
        if value.shape != expected[key].shape:
            raise CheckpointError(f"checkpoint tensor {key} has shape {tuple(value.shape)}, "
                                  f"expected {tuple(expected[key].shape)}")
    for name in ADAPTERS:
        prefix = f"adapter.{name}."
        sub = {k[len(prefix):]: v.float() for k, v in state.items() if k.startswith(prefix)}
        set_peft_model_state_dict(network.lm, sub, adapter_name=name)
    with torch.no_grad():
        for name in MEMORY_PARAMS:
            getattr(network, name).copy_(state[name])
        network.projection.load_state_dict(
            {k[len("projection."):]: v.float() for k, v in state.items() if k.startswith("projection.")}
        )
