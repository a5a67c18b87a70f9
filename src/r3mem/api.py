"""`R3Mem`: load a base model and checkpoint, compress text to memory, expand it back."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel

from r3mem.base_model import BaseModel, load_base_model
from r3mem.checkpoint import Checkpoint, read_checkpoint, save_checkpoint
from r3mem.config import MemoryConfig
from r3mem.context_memory import ContextConfig, ContextReader
from r3mem.decode.expand import expand_batch
from r3mem.decode.options import DEFAULT_DECODING, Decoding
from r3mem.decode.reader import merged_reader, reader_dtype
from r3mem.errors import CheckpointMismatch, InvalidInput
from r3mem.memory_file import Memory
from r3mem.memory_net import MemoryNetwork
from r3mem.retrieval_key import KeyHead
from r3mem.verify import Reconstruction, digest_rows
from r3mem.weights import load_trainable_state, trainable_state

SHIPPED_CHECKPOINT = Path(__file__).resolve().parents[2] / "checkpoints" / "smollm2-135m-r3mem"
_EXPAND_BATCH = 8  # segments expanded together; bounded so RAM stays flat for long texts


def default_checkpoint() -> Path | None:
    """`$R3MEM_CHECKPOINT`, else the checkpoint shipped in the repository, else None."""
    env = os.environ.get("R3MEM_CHECKPOINT")
    if env:
        return Path(env)
    return SHIPPED_CHECKPOINT if (SHIPPED_CHECKPOINT / "config.json").is_file() else None


def pick_device(device: str | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class R3Mem:
    """A memory network bound to its tokenizer, with the identity of what made it."""

    def __init__(self, base: BaseModel, network: MemoryNetwork, checkpoint_fingerprint: str,
                 context_reader: ContextReader | None = None, key_head: KeyHead | None = None) -> None:
        self.base = base
        self.network = network.eval()
        # Maps memory into the plain LM's input space for the long-context LM (r3mem.context_lm);
        # untrained (nearest-token prefix) when the checkpoint has none.
        reader = context_reader or ContextReader(network.hidden_size, ContextConfig())
        self.context_reader = reader.to(network.initial_memory.device).eval()
        # The retrieval key trained for recall (r3mem.retrieval_key); None keys records by their memory.
        self.key_head = key_head
        self.tokenizer = base.tokenizer
        self.checkpoint_fingerprint = checkpoint_fingerprint
        self._expansion_reader: PreTrainedModel | None = None

    @classmethod
    def load(
        cls,
        model: str | None = None,
        checkpoint: str | Path | None = None,
        device: str | None = None,
    ) -> R3Mem:
        """Load a base model (default: SmolLM2-135M-Instruct) and a checkpoint.

        With no checkpoint, the shipped one is used when it matches the base model;
        otherwise the network is untrained (`trained` is False) and says so.
        """
        base = load_base_model(model)
        path = Path(checkpoint) if checkpoint is not None else None
        if path is None and model is None:
            path = default_checkpoint()
        return cls.from_base(base, path, device)

    @classmethod
    def from_base(
        cls,
        base: BaseModel,
        checkpoint: Path | Checkpoint | None = None,
        device: str | None = None,
        config: MemoryConfig | None = None,
    ) -> R3Mem:
        """Build from an already loaded base model (tests, training, other models); `checkpoint`
        is a directory, or a checkpoint the caller has already read (and may need more of)."""
        fingerprint = f"untrained-seed{(config or MemoryConfig()).init_seed}"
        state = None
        if isinstance(checkpoint, Checkpoint):
            checkpoint.require_base(base.fingerprint, f"with weights {checkpoint.fingerprint}")
        elif checkpoint is not None:
            checkpoint = read_checkpoint(checkpoint, expect_fingerprint=base.fingerprint)
        if checkpoint is not None:
            config, state, fingerprint = checkpoint.config, checkpoint.state, checkpoint.fingerprint
        network = MemoryNetwork(base.model, config or MemoryConfig())
        if state is not None:
            load_trainable_state(network, state)
        reader, key_head = None, None
        if isinstance(checkpoint, Checkpoint) and checkpoint.path is not None:
            reader = ContextReader.load(checkpoint.path, network.hidden_size)
            key_head = KeyHead.load(checkpoint.path)
        if os.environ.get("R3MEM_CONTEXT_READER"):  # a reader in training, beside the shipped weights
            reader = ContextReader.load(os.environ["R3MEM_CONTEXT_READER"], network.hidden_size)
        return cls(base, network.to(pick_device(device)), fingerprint, reader, key_head)

    @property
    def trained(self) -> bool:
        return not self.checkpoint_fingerprint.startswith("untrained")

    @property
    def hidden_size(self) -> int:
        return self.network.hidden_size

    def token_embeddings(self) -> torch.Tensor:
        """(V, d) float32 CPU copy of the base model's input embeddings (what memory slots pool)."""
        from r3mem.base_model import embedding_table

        return embedding_table(self.network.causal_lm).detach().float().cpu()

    @property
    def config(self) -> MemoryConfig:
        return self.network.config

    @property
    def device(self) -> torch.device:
        return self.network.initial_memory.device

    def save_checkpoint(self, path: str | Path, info: dict | None = None, half: bool = False) -> str:
        """Write the trainable state; `half` stores fp16 (half the size, for shipping in git)."""
        state = trainable_state(self.network)
        if half:
            state = {k: v.to(torch.float16) for k, v in state.items()}
        self.checkpoint_fingerprint = save_checkpoint(
            path, self.config, state, self.base.name, self.base.fingerprint, info
        )
        return self.checkpoint_fingerprint

    # -- text <-> tokens ------------------------------------------------------
    def tokenize(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def detokenize(self, ids: list[int]) -> str:
        text = self.tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        return cast(str, text)  # a flat id list decodes to one string

    def segments(self, ids: list[int]) -> Iterator[list[int]]:
        step = self.config.segment_len
        for start in range(0, len(ids), step):
            yield ids[start : start + step]

    # -- long-context LM --------------------------------------------------------
    def generate(self, prompt: str, history: str = "", max_new_tokens: int = 64, window: int = 512,
                 budget: int = 64) -> str:
        """Continue `prompt` after `history` with the plain base LM reading `window` positions: the
        last `window - budget` raw tokens, and `budget` memory vectors of everything older
        (`r3mem.long_context`), so what fell out of the window still informs the answer."""
        from r3mem.long_context import LongContext  # it builds on this class

        context = LongContext(self, window, budget)
        context.append(history)
        return context.generate(prompt, max_new_tokens)

    # -- compress / expand ----------------------------------------------------
    @torch.no_grad()
    def compress(self, text: str, ratio: float = 4, progress: bool = False) -> Memory:
        """Fold `text` into one memory snapshot per segment, recurrently.

        RAM stays bounded by the snapshots: activations exist for one segment at a time.
        """
        if not isinstance(text, str):
            raise InvalidInput(f"text must be a str, got {type(text).__name__}")
        m = self.config.memory_tokens_for(ratio)
        ids = self.tokenize(text)
        if not ids:
            raise InvalidInput("nothing to compress: the text is empty")
        chunks = list(self.segments(ids))
        tensors = (torch.tensor(c, device=self.device) for c in chunks)
        snapshots = []
        bar = tqdm(total=len(ids), unit="tok", desc="compress", disable=not progress, leave=False)
        for chunk, snapshot in zip(chunks, self.network.compress(tensors, m), strict=True):
            snapshots.append(snapshot.to(torch.float16).cpu())
            bar.update(len(chunk))
        bar.close()
        return Memory(
            snapshots=torch.stack(snapshots),
            token_counts=[len(c) for c in chunks],
            segment_len=self.config.segment_len,
            model_fingerprint=self.base.fingerprint,
            checkpoint_fingerprint=self.checkpoint_fingerprint,
            model_name=self.base.name,
            segment_digests=digest_rows(chunks),
        )

    def compress_units(self, texts: list[str], ratio: float = 4) -> list[Memory]:
        """A memory per short text, each of its own length over `ratio` vectors, in shared passes
        (`r3mem.short_memory`); a text longer than a segment is compressed recurrently."""
        from r3mem.short_memory import compress_units

        return compress_units(self, texts, ratio)

    def query_nll(self, memories: list[torch.Tensor], query: str) -> list[float]:
        """Mean NLL of `query`'s tokens read after each (m, d) memory: lower = the memory predicts it."""
        from r3mem.short_memory import query_nll

        return query_nll(self, memories, query)

    def key_vectors(self, texts: list[str], role: str) -> list:
        """Retrieval keys of `texts` by the trained key head (`role` "record" or "query"), or [] without one."""
        if self.key_head is None:
            return []
        from r3mem.retrieval_key import encode_keys

        return list(encode_keys(self.network, self.tokenizer, self.key_head, texts, role))

    def check_compatible(self, memory: Memory) -> None:
        """Refuse a memory written by another base model or checkpoint."""
        if memory.model_fingerprint != self.base.fingerprint:
            raise CheckpointMismatch(
                f"memory was written by base model {memory.model_name or '?'} "
                f"({memory.model_fingerprint}), not the loaded one ({self.base.fingerprint})"
            )
        if memory.checkpoint_fingerprint != self.checkpoint_fingerprint:
            raise CheckpointMismatch(
                f"memory was written by checkpoint {memory.checkpoint_fingerprint}, "
                f"not the loaded one ({self.checkpoint_fingerprint})"
            )

    @torch.no_grad()
    def expand_ids(self, memory: Memory, segment: int | None = None, progress: bool = False,
                   decoding: Decoding = DEFAULT_DECODING) -> list[list[int]]:
        """Regenerate token ids of every segment (or one) from its snapshot, decoded as `decoding`
        says (`r3mem.decode.options.Decoding`: beams, samples, pool guidance, spread, bag).

        Pool guidance holds each chunk of a segment to the tokens its memory slot pools
        (`r3mem.decode.pool_guidance`; `guidance` 0 turns it off): it keeps an expansion in step
        with its source. With `samples` > 0 each segment is chosen among the beams and that many
        samples by cycle consistency (`r3mem.decode.cycle_decoding`), and a candidate matching the
        segment's source digest wins outright.
        """
        self.check_compatible(memory)
        if not isinstance(decoding, Decoding):
            raise InvalidInput(f"decoding must be a Decoding, got {type(decoding).__name__}")
        if segment is not None and not -len(memory) <= segment < len(memory):
            raise InvalidInput(f"segment {segment} out of range: the memory has {len(memory)} segment(s)")
        order = [segment % len(memory)] if segment is not None else list(range(len(memory)))
        reads = None
        if decoding.samples:  # snapshots[i] was written from snapshots[i - 1]: the recurrence compress() ran
            initial = self.network.initial(1, memory.memory_tokens)[0].detach().cpu()
            reads = torch.stack([memory.snapshots[i - 1].float() if i > 0 else initial for i in order])
        return self.expand_snapshots(memory.snapshots[order], [memory.token_counts[i] for i in order],
                                     reads, progress, decoding,
                                     None if memory.segment_digests is None else memory.segment_digests[order])

    @torch.no_grad()
    def expand_snapshots(self, snapshots: torch.Tensor, token_counts: list[int], read_memories: torch.Tensor | None,
                         progress: bool = False, decoding: Decoding = DEFAULT_DECODING,
                         digests: torch.Tensor | None = None) -> list[list[int]]:
        """Regenerate `token_counts[i]` ids from each snapshot (S, m, d), in bounded batches.

        `read_memories` (S, m, d) are the memories each snapshot was written from and `digests`
        (S, 8) their sources' digests; only cycle-consistent selection (`samples` > 0) reads them,
        and needs the former.
        """
        if decoding.samples and read_memories is None:
            raise InvalidInput("cycle-consistent selection (samples > 0) needs the memories each snapshot was "
                               "written from")
        out: list[list[int]] = []
        reader = None if decoding.samples else self.expansion_reader  # sampling reads through the adapter
        bar = tqdm(total=len(token_counts), unit="seg", desc="expand", disable=not progress, leave=False)
        for start in range(0, len(token_counts), _EXPAND_BATCH):
            rows = slice(start, start + _EXPAND_BATCH)
            counts = token_counts[rows]
            reads = None if read_memories is None else read_memories[rows].to(self.device, torch.float32)
            out.extend(expand_batch(self.network, snapshots[rows].to(self.device, torch.float32), counts, decoding,
                                    reads, None if digests is None else digests[rows], reader))
            bar.update(len(counts))
        bar.close()
        return out

    @property
    def expansion_reader(self) -> PreTrainedModel:
        """The LM with the expand adapter merged in (`r3mem.decode.reader`), made on first use: a
        process that never expands does not pay for the copy. In bfloat16 where this CPU multiplies
        it natively, unless `$R3MEM_EXPAND_DTYPE` says otherwise (`reader_dtype`)."""
        if self._expansion_reader is None:
            self._expansion_reader = merged_reader(self.network, reader_dtype(self.device.type))
        return self._expansion_reader

    def expand(self, memory: Memory, segment: int | None = None, progress: bool = False,
               decoding: Decoding = DEFAULT_DECODING) -> str:
        """Reconstruct the text (or one segment of it) from memory alone."""
        parts = self.expand_ids(memory, segment, progress, decoding)
        return self.detokenize([t for part in parts for t in part])

    def expand_verified(self, memory: Memory, segment: int | None = None, progress: bool = False,
                        decoding: Decoding = DEFAULT_DECODING) -> Reconstruction:
        """`expand`, checked: each regenerated segment against its source digest (`r3mem.verify`),
        so a caller knows which parts are the original text and which are the model's best guess."""
        parts = self.expand_ids(memory, segment, progress, decoding)
        order = [segment % len(memory)] if segment is not None else list(range(len(memory)))
        return Reconstruction(self.detokenize([t for part in parts for t in part]), order,
                              [memory.verify(i, ids) for i, ids in zip(order, parts, strict=True)])
