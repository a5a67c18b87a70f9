"""Shared fixtures: a tiny random Llama with a tiny BPE tokenizer, and the real default model.

Unit tests run on the tiny model (milliseconds per step). Markers (registered in pyproject.toml):
`real_model` tests use SmolLM2-135M, which `make` installs; `postgres` tests need a server
(`make test` starts one); `slow` tests spawn processes, kill servers, fuzz or train. `make test-unit`
leaves all three out; `make test` runs everything.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from r3mem.api import R3Mem
from r3mem.base_model import BaseModel, model_fingerprint
from r3mem.config import MemoryConfig
from r3mem.store.namespace import Namespace

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CORPUS = (Path(__file__).resolve().parents[1] / "src" / "r3mem" / "data" / "demo_passage.txt").read_text()

TINY_MEMORY = MemoryConfig(segment_len=16, max_memory_tokens=8, lora_rank=4, lora_alpha=8)


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """Byte-level BPE trained on the demo passage: any UTF-8 text round-trips exactly."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<eos>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator([CORPUS], trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<eos>")


def tiny_base(seed: int = 0, hidden: int = 64, name: str = "tiny-llama", init_range: float = 0.02) -> BaseModel:
    """A 2-layer random Llama. `init_range` 0.02 is HF's default; larger values give the
    frozen tied head a usable logit scale, for tests that need the model to learn."""
    tokenizer = tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        pad_token_id=0,
        tie_word_embeddings=True,
        initializer_range=init_range,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return BaseModel(name=name, model=model, tokenizer=tokenizer, fingerprint=model_fingerprint(model))


@pytest.fixture
def tiny() -> R3Mem:
    return R3Mem.from_base(tiny_base(), device="cpu", config=TINY_MEMORY)


@pytest.fixture
def tiny_model_dir(tmp_path: Path) -> Path:
    """The tiny model saved as a local model directory, as a user would pass with --model."""
    base = tiny_base()
    path = tmp_path / "tiny-model"
    base.model.save_pretrained(path)
    base.tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def real() -> R3Mem:
    return R3Mem.load(device="cpu")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA.is_dir():
        pytest.skip(f"shared data not found at {DATA}")
    return DATA


def _postgres_url() -> str:
    url = os.environ.get("R3MEM_TEST_POSTGRES_URL")
    if not url:
        if os.environ.get("R3MEM_REQUIRE_POSTGRES"):
            pytest.fail("R3MEM_REQUIRE_POSTGRES is set but R3MEM_TEST_POSTGRES_URL is not")
        pytest.skip("no PostgreSQL: set R3MEM_TEST_POSTGRES_URL (`make test` starts one on loopback)")
    return url


@contextlib.contextmanager
def postgres_schema() -> Iterator[str]:
    """The test server's URL on a new, empty schema of its own, dropped when the block ends."""
    import psycopg

    url = _postgres_url()
    schema = f"test_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL at {url} is not reachable: {exc}")
    sep = "&" if "?" in url else "?"
    try:
        yield f"{url}{sep}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request, tmp_path: Path):
    """A fresh, empty store URL: an SQLite file, or a PostgreSQL schema of its own per test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.sqlite3'}"
        return
    with postgres_schema() as url:
        yield url


@pytest.fixture
def store(store_url: str, tiny: R3Mem):
    """A `MemoryStore` on the tiny model over each backend."""
    from r3mem.store import MemoryStore
    from r3mem.store.location import open_backend

    memory_store = MemoryStore(open_backend(store_url), tiny)
    yield memory_store
    memory_store.close()


@pytest.fixture(scope="module")
def live_servers(tmp_path_factory):
    """Live `r3mem serve` processes on the tiny model, one per backend kind, shared by a module's tests."""
    from tests.live_server import LiveServers

    servers = LiveServers(tmp_path_factory.mktemp("live"), postgres_schema)
    yield servers
    servers.close()


@pytest.fixture(params=["local", pytest.param("client", marks=pytest.mark.slow)])
def api_store(request, store_url: str):
    """`MemoryStore`'s public API, from the local `store` or from `r3mem.client` through a live
    `r3mem serve` over the same kind of backend: the store's behaviour tests run on both.

    The client holds one API key per namespace it is called with (`tests.live_server.KeyedClient`),
    and forgets those namespaces afterwards, so each test starts from an empty store."""
    if request.param == "local":
        yield request.getfixturevalue("store")
        return
    kind = "sqlite" if store_url.startswith("sqlite:") else "postgres"
    client = request.getfixturevalue("live_servers").client(kind, home=Namespace(user="alice"))
    yield client
    client.close()


# --- generated-case counts ---------------------------------------------------------------
# Property and schema tests say how many cases they actually ran, so "it passed" can be told
# apart from "it passed on three examples". Determinism in CI comes from Hypothesis's built-in
# `ci` profile (derandomize=True, no example database), which it loads when it detects CI;
# `pytest --hypothesis-profile=ci` does the same locally.


@pytest.fixture
def cases_tried(record_property):
    """A one-item list the test bumps once per generated case; reported in the terminal summary."""
    tried = [0]
    yield tried
    record_property("cases_tried", tried[0])


def pytest_terminal_summary(terminalreporter) -> None:
    counts: dict[str, int] = {}
    for reports in terminalreporter.stats.values():
        for report in reports:
            if getattr(report, "when", None) != "teardown":
                continue
            # location names the parametrised case even where a plugin left nodeids alike
            where = f"{report.nodeid.split('::')[0]}::{report.location[2]}"
            for name, value in report.user_properties:
                if name == "cases_tried":
                    counts[where] = counts.get(where, 0) + value
    if counts:
        terminalreporter.write_sep("-", "generated cases tried")
        for nodeid, value in counts.items():
            terminalreporter.write_line(f"{value:7d}  {nodeid}")
        terminalreporter.write_line(f"hypothesis cases tried: {sum(counts.values())}")


@pytest.fixture
def train_data(tmp_path):
    """A miniature shared/data for the trainer: three 'books', one held out for validation."""
    books = tmp_path / "data" / "books"
    books.mkdir(parents=True)
    for i, name in enumerate(["a.txt", "b.txt", "val.txt"]):
        (books / name).write_text(CORPUS[i * 300 :] + "\n\n" + CORPUS)
    return tmp_path / "data"
