"""The client's request bodies: a `Decoding` goes out as the API's own decoding fields, unchanged."""

import pytest

from r3mem.client import calls
from r3mem.decode.options import DEFAULT_DECODING, Decoding
from r3mem.errors import InvalidInput
from r3mem.service.schemas import AskRequest, RecallRequest
from r3mem.store import Namespace

ALICE = Namespace(user="alice")


@pytest.mark.parametrize("decoding", [DEFAULT_DECODING, Decoding(beams=3, samples=2, guidance=1.5),
                                      Decoding(beams=1, guidance=0.0), Decoding(spread=0.5, bag=0.0)])
def test_a_decoding_sent_is_the_decoding_the_service_reads(decoding):
    recall = calls.recall("tea", ALICE, decoding=decoding).json
    ask = calls.ask("tea?", ALICE, decoding=decoding).json
    assert recall is not None and ask is not None
    assert {k: recall[k] for k in ("beams", "samples", "guidance", "spread", "bag")} == {
        "beams": decoding.beams, "samples": decoding.samples, "guidance": decoding.guidance,
        "spread": decoding.spread, "bag": decoding.bag}
    assert RecallRequest.model_validate(recall).decoding() == decoding
    assert AskRequest.model_validate(ask).decoding() == decoding


def test_every_decoding_field_is_an_api_field():
    """A new `Decoding` field must reach the service: the schema has to name it too."""
    import dataclasses

    assert {f.name for f in dataclasses.fields(Decoding)} <= set(RecallRequest.model_fields)


def test_anything_but_a_decoding_is_refused():
    with pytest.raises(InvalidInput, match="decoding must be a Decoding"):
        calls.ask("tea?", ALICE, decoding={"beams": 2})  # type: ignore[arg-type]
