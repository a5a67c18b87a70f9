"""The lexical index: SQLite FTS5 (`bm25()`) and PostgreSQL full-text search (tsvector + GIN).

Both index `record_index.body` (`r3mem.store.index`) and are kept by the database itself in the
transaction that writes the row: FTS5 through triggers on `record_index`, PostgreSQL through a
generated `tsvector` column. Nothing is rebuilt per query. SQLite stems with Porter; PostgreSQL
uses its `english` configuration (stemming and stop words), and the query side drops the same
kind of stop words on SQLite, so question words ("what", "did") do not match every record.

Scores differ between the engines: SQLite's is BM25; PostgreSQL's is `ts_rank(..., 0)`, a sum
over query words of a saturating function of each word's count, without length normalisation
(normalising by length let a one-word entity outrank the sentence holding every query word) and
without inverse document frequency, which its full-text search does not keep. Cover density
(`ts_rank_cd`) ranked worse on LoCoMo and costs ~17x more per match, which at 100k records is
most of a recall (docs/store.md). So fused recall uses the lexical *rank*, not the score
(`r3mem.store.fusion`), and LoCoMo figures are measured on SQLite. Collection statistics (document
frequencies) are those of the whole store, not of one namespace: the usual choice of a shared
index, and it lets a namespace's scores move slightly when another namespace grows.
"""

from __future__ import annotations

from r3mem.bm25 import words

# A short English stop list (PostgreSQL's `english` drops these and more): words that match
# nearly every record add time, not ranking.
STOP_WORDS = frozenset((
    "a", "about", "after", "again", "all", "am", "an", "and", "any", "are", "as", "at", "be", "been", "before",
    "being", "both", "but", "by", "can", "could", "did", "do", "does", "doing", "down", "during", "each", "few",
    "for", "from", "further", "had", "has", "have", "having", "he", "her", "here", "hers", "herself", "him",
    "himself", "his", "how", "i", "if", "in", "into", "is", "it", "its", "itself", "just", "me", "more", "most",
    "my", "myself", "no", "nor", "not", "now", "of", "off", "on", "once", "only", "or", "other", "our", "ours",
    "out", "over", "own", "same", "she", "should", "so", "some", "such", "than", "that", "the", "their",
    "theirs", "them", "themselves", "then", "there", "these", "they", "this", "those", "through", "to", "too",
    "under", "until", "up", "very", "was", "we", "were", "what", "when", "where", "which", "while", "who",
    "whom", "why", "will", "with", "would", "you", "your", "yours", "yourself",
))
MAX_TERMS = 32  # a longer query is cut: each term is one posting list to merge

SQLITE_DDL = [
    """CREATE VIRTUAL TABLE IF NOT EXISTS record_fts USING fts5(
        body, content='record_index', content_rowid='doc', tokenize='porter unicode61 remove_diacritics 2')""",
    """CREATE TRIGGER IF NOT EXISTS record_index_ai AFTER INSERT ON record_index BEGIN
        INSERT INTO record_fts (rowid, body) VALUES (new.doc, new.body); END""",
    """CREATE TRIGGER IF NOT EXISTS record_index_ad AFTER DELETE ON record_index BEGIN
        INSERT INTO record_fts (record_fts, rowid, body) VALUES ('delete', old.doc, old.body); END""",
    """CREATE TRIGGER IF NOT EXISTS record_index_au AFTER UPDATE OF body ON record_index BEGIN
        INSERT INTO record_fts (record_fts, rowid, body) VALUES ('delete', old.doc, old.body);
        INSERT INTO record_fts (rowid, body) VALUES (new.doc, new.body); END""",
]
POSTGRES_DDL = [
    "ALTER TABLE record_index ADD COLUMN IF NOT EXISTS tsv tsvector "
    "GENERATED ALWAYS AS (to_tsvector('english', body)) STORED",
    "CREATE INDEX IF NOT EXISTS record_index_tsv ON record_index USING GIN (tsv)",
]

# {where} is the records filter (alias r); the first parameter is the query, the last the limit.
# Both engines first rank inside the lexical index alone (no join per match: 3x faster at 100k
# records), keep the best OVERFETCH and filter those; only when the filter leaves fewer than
# asked of a longer list do they rank every match joined to its record. Both stages order by
# the same score and tie-break, so the answer is the one ranking every match would give.
OVERFETCH = 1000
SQLITE_SEARCH_TOP = (
    "SELECT i.record_id, -t.rank AS s FROM (SELECT rowid, rank FROM record_fts WHERE record_fts MATCH ? "
    f"ORDER BY rank LIMIT {OVERFETCH}) t JOIN record_index i ON i.doc = t.rowid JOIN records r ON r.id = i.record_id "
    "WHERE {where} ORDER BY t.rank, i.doc LIMIT ?"
)
SQLITE_SEARCH = (
    "SELECT i.record_id, -bm25(record_fts) AS s FROM record_fts "
    "JOIN record_index i ON i.doc = record_fts.rowid JOIN records r ON r.id = i.record_id "
    "WHERE record_fts MATCH ? AND {where} ORDER BY s DESC, i.doc LIMIT ?"
)
SQLITE_MATCHES = f"SELECT COUNT(*) FROM (SELECT 1 FROM record_fts WHERE record_fts MATCH ? LIMIT {OVERFETCH + 1}) m"
POSTGRES_SEARCH_TOP = (
    "SELECT t.record_id, t.s FROM (SELECT i.doc, i.record_id, ts_rank(i.tsv, q.query, 0) AS s "
    "FROM record_index i, websearch_to_tsquery('english', ?) AS q(query) WHERE i.tsv @@ q.query "
    f"ORDER BY s DESC, i.doc LIMIT {OVERFETCH}) t JOIN records r ON r.id = t.record_id "
    "WHERE {where} ORDER BY t.s DESC, t.doc LIMIT ?"
)
POSTGRES_SEARCH = (
    "SELECT i.record_id, ts_rank(i.tsv, q.query, 0) AS s "
    "FROM record_index i JOIN records r ON r.id = i.record_id, "
    "websearch_to_tsquery('english', ?) AS q(query) "
    "WHERE i.tsv @@ q.query AND {where} ORDER BY s DESC, i.doc LIMIT ?"
)
# Before that, PostgreSQL ranks only the records holding two or more distinct query lexemes,
# found by the GIN index (an OR of every pair): `ts_rank(..., 0)` adds 0.1 * (1 + 1/4 + 1/9 ...)
# / 1.645 per lexeme found, between 0.061 and 0.1, so each such record outranks every record
# holding one (to_tsvector gives every position the same weight). When those leave k records in
# scope, they are the answer ranking every match would give; a question naming a speaker matches
# most of a conversation, and this reads a tenth of the rows. The lexemes are read back from
# `websearch_to_tsquery`'s own output (each quoted, quotes doubled), so pairs match what it matches.
POSTGRES_SEARCH_PAIRS = (
    "WITH q AS (SELECT websearch_to_tsquery('english', ?) AS query), "
    "items AS (SELECT DISTINCT m[1] AS lexeme "
    "FROM q, regexp_matches(q.query::text, '(''[^'']*(''''[^'']*)*'')', 'g') AS m), "
    "p AS (SELECT string_agg(a.lexeme || ' & ' || b.lexeme, ' | ')::tsquery AS query "
    "FROM items a JOIN items b ON a.lexeme < b.lexeme) "
    "SELECT t.record_id, t.s FROM (SELECT i.doc, i.record_id, ts_rank(i.tsv, q.query, 0) AS s "
    f"FROM record_index i, q, p WHERE i.tsv @@ p.query ORDER BY s DESC, i.doc LIMIT {OVERFETCH}) t "
    "JOIN records r ON r.id = t.record_id WHERE {where} ORDER BY t.s DESC, t.doc LIMIT ?"
)
MAX_PAIR_TERMS = 16  # past this many query words, their pairs (n * (n - 1) / 2) cost more than they save
# The shortcuts above rank the whole store's matches before the namespace filter, so their cost
# grows with other namespaces' records: one tenant's bulk would slow every other tenant's recall.
# A scope of at most SCOPED_MAX records is ranked on its own rows instead (its records by the
# namespace index, then their index rows, then the match), at a cost that is its own alone; the
# order and scores are those of POSTGRES_SEARCH.
SCOPED_MAX = 5000
SCOPE_SIZE = f"SELECT COUNT(*) FROM (SELECT 1 FROM records r WHERE {{where}} LIMIT {SCOPED_MAX + 1}) m"
POSTGRES_SEARCH_SCOPED = (  # params: *where, query, limit
    "WITH mine AS MATERIALIZED (SELECT r.id FROM records r WHERE {where}) "
    "SELECT i.record_id, ts_rank(i.tsv, q.query, 0) AS s FROM mine JOIN record_index i ON i.record_id = mine.id, "
    "websearch_to_tsquery('english', ?) AS q(query) WHERE i.tsv @@ q.query ORDER BY s DESC, i.doc LIMIT ?"
)
POSTGRES_MATCHES = (
    "SELECT COUNT(*) FROM (SELECT 1 FROM record_index WHERE tsv @@ websearch_to_tsquery('english', ?) "
    f"LIMIT {OVERFETCH + 1}) m"
)


def terms(query: str) -> list[str]:
    """The query's distinct content words, in order (lowercase `\\w+` runs, stop words out)."""
    seen: dict[str, None] = {}
    for word in words(query):
        if word not in STOP_WORDS:
            seen.setdefault(word, None)
    return list(seen)[:MAX_TERMS]


def fts5_match(words_: list[str]) -> str:
    """An FTS5 MATCH expression: any of the words (each quoted, so none is read as syntax)."""
    return " OR ".join(f'"{w}"' for w in words_)


def websearch_text(words_: list[str]) -> str:
    """PostgreSQL `websearch_to_tsquery` input: any of the words (it never raises on any input)."""
    return " or ".join(words_)
