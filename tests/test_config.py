import pytest

from r3mem.config import MemoryConfig
from r3mem.errors import CheckpointError, InvalidInput


@pytest.mark.parametrize(
    ("field", "value"),
    [("segment_len", 0), ("max_memory_tokens", 0), ("max_memory_tokens", 200), ("lora_rank", 0),
     ("lora_dropout", 1.0), ("target_modules", ())],
)
def test_rejects_bad_field_by_name(field, value):
    with pytest.raises(InvalidInput, match=field):
        MemoryConfig(**{field: value})


def test_ratio_maps_to_memory_tokens():
    cfg = MemoryConfig(segment_len=128, max_memory_tokens=64)
    assert [cfg.memory_tokens_for(r) for r in (2, 4, 8, 16)] == [64, 32, 16, 8]
    assert cfg.memory_tokens_for(1000) == 1
    with pytest.raises(InvalidInput, match="lowest ratio is 2"):
        cfg.memory_tokens_for(1.5)
    with pytest.raises(InvalidInput):
        cfg.memory_tokens_for(0)


def test_json_round_trip_and_unknown_field():
    cfg = MemoryConfig(lora_rank=8)
    assert MemoryConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(CheckpointError, match="bogus"):
        MemoryConfig.from_json({**cfg.to_json(), "bogus": 1})
