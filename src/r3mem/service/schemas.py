"""Request and response bodies of the HTTP API; their field docs are the OpenAPI documentation.

Shapes and types are checked here; meaning (empty text, NUL bytes, metadata size, a
valid namespace) is checked once, by the store, so the API and the CLI refuse the same
inputs with the same messages. Unknown fields are refused, so a misspelt option is an
error rather than silently ignored.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from r3mem.decode.options import (
    DEFAULT_BAG,
    DEFAULT_BEAMS,
    DEFAULT_GUIDANCE,
    DEFAULT_SAMPLES,
    DEFAULT_SPREAD,
    MAX_BAG,
    MAX_BEAMS,
    MAX_GUIDANCE,
    MAX_SAMPLES,
    Decoding,
)
from r3mem.errors import InvalidInput
from r3mem.store.namespace import ID_PATTERN, Namespace
from r3mem.store.validation import check_json

# The store's LEVELS, METHODS and ROLES, spelt out so OpenAPI lists them (a test keeps them in step).
Level = Literal["document", "paragraph", "sentence", "entity", "turn"]
Method = Literal["fused", "bm25", "dense", "bm25_dense", "memory", "key", "hybrid"]  # r3mem.store.recall.METHODS
Role = Literal["user", "assistant", "system", "tool"]
_BEAMS_DOC = ("beam width when a memory-only record's text is reconstructed: 1 is greedy (several times "
              "faster), more beams slip less")
_SAMPLES_DOC = ("samples drawn beside the beams when a memory-only record's text is reconstructed; the "
                "candidate whose re-compression lies nearest the stored memory is kept (0: the top beam)")
_GUIDANCE_DOC = ("pool guidance when a memory-only record's text is reconstructed: how strongly each chunk is "
                 "held to the tokens its memory slot pools, which keeps it in step with its source (0: off)")
_SPREAD_DOC = ("under guidance, the share (0-1) of each chunk's charge paid as it is written rather than at its "
               "last token")
_BAG_DOC = "under guidance, nats charged to a token outside its chunk's recovered bag of tokens (0: no bag)"
_ID_DOC = "1-128 letters, digits or _.@:+- starting with a letter or digit"
# Documented, not enforced here: `Namespace` checks it, with the same message as in the CLI.
_ID_SCHEMA: dict[str, Any] = {"pattern": f"^{ID_PATTERN}$"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _plain_json(cls, value: Any, info: ValidationInfo) -> Any:
        """No lone surrogate (no tokenizer or database takes one), NaN or infinity anywhere in a
        field, nested models aside: refused here with the field's name, never a 5xx further in."""
        try:
            check_json(value, str(info.field_name), strict=False)
        except InvalidInput as exc:
            raise PydanticCustomError("invalid_json_value", str(exc)) from None
        return value


class NamespaceIn(_Strict):
    """Who the memory belongs to. Writes use it exactly; reads treat unset fields as wildcards."""

    user: str | None = Field(None, max_length=128, description=f"user id: {_ID_DOC}", json_schema_extra=_ID_SCHEMA)
    agent: str | None = Field(None, max_length=128, description=f"agent id: {_ID_DOC}", json_schema_extra=_ID_SCHEMA)
    session: str | None = Field(None, max_length=128, description=f"session id: {_ID_DOC}",
                                json_schema_extra=_ID_SCHEMA)

    def value(self) -> Namespace:
        """The store's `Namespace`; raises InvalidInput when no field is set or one is malformed."""
        return Namespace(user=self.user, agent=self.agent, session=self.session)


class Message(_Strict):
    role: Role = Field("user", description="who said it")
    content: str = Field(description="what was said")


class AddRequest(_Strict):
    """Give exactly one of `text` (stored as a document hierarchy) or `messages` (one record per turn)."""

    namespace: NamespaceIn
    text: str | None = Field(None, description="a document: at most 200,000 characters, no NUL bytes")
    messages: list[Message] | None = Field(None, description="a conversation, one record per message")
    metadata: dict[str, Any] | None = Field(None, description="any JSON object, at most 16 KiB")
    store_text: bool = Field(True, description="keep the text beside its memory; false keeps memory only "
                                               "and recall reconstructs the text from it")
    levels: list[Level] | None = Field(None, description="the levels of a text's hierarchy to keep, from document, "
                                                         "paragraph, sentence, entity (default: all four)")


class UpdateRequest(_Strict):
    """Give `text` (re-compressed; a document gets a new hierarchy) and/or `metadata` (replaced whole)."""

    namespace: NamespaceIn
    text: str | None = None
    metadata: dict[str, Any] | None = None


class _Reconstructing(_Strict):
    """How a memory-only record's text is reconstructed, for the requests that return texts."""

    beams: int = Field(DEFAULT_BEAMS, ge=1, le=MAX_BEAMS, description=_BEAMS_DOC)
    samples: int = Field(DEFAULT_SAMPLES, ge=0, le=MAX_SAMPLES, description=_SAMPLES_DOC)
    guidance: float = Field(DEFAULT_GUIDANCE, ge=0, le=MAX_GUIDANCE, allow_inf_nan=False, description=_GUIDANCE_DOC)
    spread: float = Field(DEFAULT_SPREAD, ge=0, le=1, allow_inf_nan=False, description=_SPREAD_DOC)
    bag: float = Field(DEFAULT_BAG, ge=0, le=MAX_BAG, allow_inf_nan=False, description=_BAG_DOC)

    def decoding(self) -> Decoding:
        """The library's `Decoding` these fields spell, every field of it."""
        return Decoding(beams=self.beams, samples=self.samples, guidance=self.guidance, spread=self.spread,
                        bag=self.bag)


class RecallRequest(_Reconstructing):
    namespace: NamespaceIn
    query: str = Field(description="what to look for")
    top_k: int = Field(5, ge=1, le=100, description="how many records to return")
    level: Level | None = Field(None, description="only records of this level")
    method: Method = Field("fused", description="fused (default): lexical and dense evidence fused into a "
                           "calibrated P(evidence); bm25: the lexical index; dense: MiniLM cosine; bm25_dense: "
                           "reciprocal-rank fusion of both; memory: query likelihood under each record's memory; "
                           "key: memory-key similarity only; hybrid: memory and bm25 fused")
    where: dict[str, str | int | float | bool] | None = Field(
        None, description="only records whose metadata holds each of these keys with exactly this value")
    since: float | None = Field(None, allow_inf_nan=False, description="only records created at or after (Unix time)")
    until: float | None = Field(None, allow_inf_nan=False, description="only records created before (Unix time)")
    min_score: float | None = Field(None, allow_inf_nan=False, description="drop hits scored below this; with "
                                    "fused, scores estimate P(evidence), so 0.5 keeps the likely answers only")


class AskRequest(_Reconstructing):
    namespace: NamespaceIn
    question: str
    top_k: int = Field(3, ge=1, le=100, description="how many recalled records the reader sees")
    method: Method = "fused"


class ExportRequest(_Strict):
    namespace: NamespaceIn


class RecordOut(BaseModel):
    """A record without its tensors."""

    id: str
    user: str | None
    agent: str | None
    session: str | None
    level: Level
    parent_id: str | None = Field(description="the record this one was split from (a document's paragraph...)")
    text: str | None = Field(description="null when the record was stored with store_text false")
    metadata: dict[str, Any]
    memory_dtype: str
    memory_shape: list[int] = Field(description="(snapshots, memory tokens, hidden size)")
    token_count: int = Field(description="tokens of text the memory stands for")
    checkpoint: str = Field(description="fingerprint of the checkpoint that made the memory")
    created_at: float = Field(description="Unix time")
    updated_at: float = Field(description="Unix time")
    checksum: str = Field(description="SHA-256 over everything the record holds")


class HitOut(RecordOut):
    score: float = Field(description="higher is more relevant; comparable only within one response")
    text_source: Literal["stored", "reconstructed", "none"] = Field(
        description="reconstructed: expanded from memory; none: not reconstructed, as asked")


class RecordsOut(BaseModel):
    records: list[RecordOut]


class HitsOut(BaseModel):
    hits: list[HitOut]


class SourceOut(BaseModel):
    id: str
    text: str
    span: list[int] | None = Field(description="[start, end): the characters of text holding the answer; null for "
                                   "a closest record named when abstaining")


class AnswerOut(BaseModel):
    """A grounded answer: read from the recalled records and located in one, or an abstention."""

    answer: str | None = Field(description="null when nothing remembered answers the question")
    abstained: bool
    confidence: float = Field(description="estimated probability that the answer is right (0 to 1)")
    sources: list[SourceOut] = Field(description="the record and span supporting the answer; when abstaining, "
                                     "the closest records")


class EventOut(BaseModel):
    seq: int
    record_id: str
    op: Literal["add", "update", "delete", "import"]
    at: float = Field(description="Unix time")
    user: str | None
    agent: str | None
    session: str | None
    detail: dict[str, Any] = Field(description="for an update: metadata and text before and after")


class HistoryOut(BaseModel):
    events: list[EventOut]


class DeletedIdsOut(BaseModel):
    deleted: list[str] = Field(description="the record and every record under it")


class ForgottenOut(BaseModel):
    """What `forget` removed besides the records themselves."""

    records: int
    index_rows: int = Field(description="lexical index entries and dense vectors")
    events: int = Field(description="audit events, an update's old text among them")
    api_keys: int = Field(description="keys scoped inside the namespace (only with keys=true)")


class DeletedCountOut(BaseModel):
    deleted: int
    forgotten: ForgottenOut | None = Field(None, description="with forget=true: every trace removed, by kind")


class StatsOut(BaseModel):
    records: int
    by_level: dict[str, int]
    memory_bytes: int
    text_bytes: int
    checkpoints: list[str]


class ImportedOut(BaseModel):
    imported: int


class HealthOut(BaseModel):
    status: Literal["ok"]


class ErrorOut(BaseModel):
    """Every error has this body, whatever its status."""

    error: str = Field(description="one line saying what went wrong")
