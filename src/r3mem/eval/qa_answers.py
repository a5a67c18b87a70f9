"""The answer columns of `r3mem eval qa`: grounded `ask` beside free generation over the same recall,
on SQuAD questions and on unanswerable variants of them.

Each article's paragraphs are stored in a namespace of their own (a fresh SQLite store), one
record a paragraph, as `eval locomo` stores one a turn: the hierarchy `r3mem add` also builds
(sentence and entity records) costs about twenty adds a paragraph. `r3mem` answers as
`MemoryStore.ask` does (its recall, then `eval.answering` as `eval locomo` scores it);
`r3mem_free` reads the same recalled records with the free reader. The
unanswerable variant asks each question in the next article's namespace, which does not hold its
answer: the right outcome is an abstention, and a memory that answers there invents.
"""

from __future__ import annotations

from pathlib import Path

from r3mem.api import R3Mem
from r3mem.errors import InvalidInput
from r3mem.eval import answering
from r3mem.store import MemoryStore, Namespace
from r3mem.store.location import open_backend

ANSWER_METHODS = ("r3mem", "r3mem_free")
ASK_TOP_K = 3  # what `MemoryStore.ask` recalls by default
LEVELS = ("document",)  # one record a paragraph


class ArticleMemory:
    """One store, one namespace per article, each filled the first time it is asked about."""

    def __init__(self, r3: R3Mem, articles: list[list[str]], folder: Path) -> None:
        if len(articles) < 2:
            raise InvalidInput("the answer methods need at least two articles (an unanswerable variant "
                               "asks one article's question of another)")
        self.r3, self.articles = r3, articles
        self.store = MemoryStore(open_backend(f"sqlite:///{folder / 'qa-answers.sqlite3'}"), r3)
        self.filled: set[int] = set()

    def namespace(self, article: int) -> Namespace:
        namespace = Namespace(user=f"article-{article}")
        if article not in self.filled:
            for paragraph in self.articles[article]:
                self.store.add(namespace, text=paragraph, levels=LEVELS)
            self.filled.add(article)
        return namespace

    def other(self, article: int) -> int:
        """The article whose namespace an unanswerable variant is asked in."""
        return (article + 1) % len(self.articles)

    def answer(self, method: str, question: str, answers: list[str], article: int) -> answering.Scored:
        hits = self.store.recall(question, self.namespace(article), top_k=ASK_TOP_K)  # best first, as `ask` reads
        return answering.answer(self.r3, method, question, answers, "\n".join(h.text for h in hits), hits)

    def close(self) -> None:
        self.store.close()
