"""Who said a record, whether the question is about that person, and whose things it speaks of.

Conversation logs store a turn as `[stamp] Name: text` (`r3mem eval locomo`, chat exports). A
question about one participant ("What did Caroline realize after her race?") is answered by that
participant's own turns; a turn by someone else that merely holds the words is the classic trap
of adversarial questions, which ask about one person what another said. `author_named` is the
test that tells the two apart (a turn failing it is no answer); `possession_held` the confidence
feature that checks a question's "Caroline's grandma" against whose grandma the record speaks of
("my grandma" said by Caroline, "your grandma" said to her). `own_things_mentioned` is the rule for
what a user asks of their own memory: "What is my dog called?" is no question a record that never
mentions a dog can answer, however confidently a reader copies "My cat is called Luna.".
"""

from __future__ import annotations

import re

from r3mem.answers.grounding import STOPWORDS, stem

_AUTHOR = re.compile(r"^\s*(?:\[[^\]]*\]\s*)?([A-Z][\w'.-]*(?: [A-Z][\w'.-]*)?):\s")
_NAME = re.compile(r"\b[A-Z][\w'-]*")
_POSSESSION = re.compile(r"\b(my|your|his|her|their|our|[A-Z][\w-]*'s)\s+([a-z][\w-]*)")
_PRONOUNS = ("my", "your", "his", "her", "their", "our")
_FIRST_PERSON = ("my", "our")


def author(text: str) -> str | None:
    """The first name of the speaker prefix ("Caroline" for "[...] Caroline: ..."), if any."""
    found = _AUTHOR.match(text)
    return found.group(1).split()[0] if found else None


def _named(question: str) -> set[str]:
    return {m.group(0).removesuffix("'s").removesuffix("'") for m in _NAME.finditer(question)}


def author_named(question: str, source: str, texts: list[str]) -> bool:
    """False only when the question names a speaker of the recalled records and the source's
    speaker is not among those it names; true when it names none of them (no evidence either way)."""
    asked_about = {a for a in map(author, texts) if a} & _named(question)
    return not asked_about or author(source) in asked_about


def _stems(text: str) -> set[str]:
    return {stem(w) for w in re.findall(r"[\w'-]+", text)}


def own_things_mentioned(question: str, source: str) -> bool:
    """False when the question asks about something of the asker's own ("my dog", "our flat") that
    `source` does not mention at all."""
    words = _stems(source)
    return all(stem(thing) in words for owner, thing in _POSSESSION.findall(question)
               if owner.lower() in _FIRST_PERSON and thing not in STOPWORDS)


def _speaks_of(source: str, owners: list[str], thing: str) -> bool:
    """Whether `source` has one of `owners` right before `thing` ("my grandma", "your dogs")."""
    pattern = r"\b(?:" + "|".join(owners) + r")\s+([\w'-]+)"
    return any(stem(m.group(1)) == stem(thing) for m in re.finditer(pattern, source, re.IGNORECASE))


def possession_held(question: str, source: str) -> float:
    """1 when `source` speaks of everything the question says someone has, as that person's, else 0.

    "Caroline's grandma" is held by "Caroline's grandma", by "my grandma" in Caroline's own turn and
    by "your grandma" in another speaker's; a thing whose owner is a pronoun ("my dog") need only be
    mentioned. A question naming no such thing scores 1."""
    speaker = author(source)
    words = _stems(source)
    for owner, thing in _POSSESSION.findall(question):
        if thing in STOPWORDS:  # "her own", "their first"
            continue
        if owner.lower() in _PRONOUNS:
            if stem(thing) not in words:
                return 0.0
            continue
        name = owner.removesuffix("'s")
        owners = [re.escape(owner)] + (["my", "our"] if speaker == name else ["your"] if speaker else list(_PRONOUNS))
        if not _speaks_of(source, owners, thing):
            return 0.0
    return 1.0
