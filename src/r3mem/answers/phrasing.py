"""Chat replies built from a grounded answer: the user's own facts told back in the second person.

The reply never says more than the supporting record: it is that record's sentence holding the
answer, turned from "I"/"my" to "you"/"your", or the answer span alone when the sentence is not
in the first person. An abstention says so and names the closest record.
"""

from __future__ import annotations

import re

from r3mem.answers.grounded import Answered

_ASKING = ("what who whom whose where when why how which do does did is are was were can could will would have has "
           "had should shall may might am")
_QUESTION_WORDS = frozenset(_ASKING.split())
_ROLE = re.compile(r"^(user|assistant|system|tool): ", re.IGNORECASE)
_SWAP = {"i": "you", "me": "you", "my": "your", "mine": "yours", "myself": "yourself", "am": "are",
         "i'm": "you're", "i've": "you've", "i'll": "you'll", "i'd": "you'd", "we": "you", "us": "you",
         "our": "your", "ours": "yours"}
_FIRST_PERSON = re.compile(r"\b(" + "|".join(re.escape(w) for w in _SWAP if w != "am") + r")\b", re.IGNORECASE)
_SWAPPABLE = re.compile(r"\bI was\b|\b(" + "|".join(re.escape(w) for w in _SWAP) + r")\b", re.IGNORECASE)
ACKNOWLEDGE = "Noted; I'll remember that."


def is_question(message: str) -> bool:
    first = message.strip().split(maxsplit=1)[0].lower() if message.strip() else ""
    return message.rstrip().endswith("?") or first in _QUESTION_WORDS


def second_person(sentence: str) -> str:
    """'I live in Lyon.' -> 'You live in Lyon.'; 'My dog is called Rex.' -> 'Your dog is called Rex.'"""
    def swap(m: re.Match[str]) -> str:
        word = m.group(0)
        return "you were" if word.lower() == "i was" else _SWAP[word.lower()]

    swapped = _SWAPPABLE.sub(swap, sentence)
    return swapped[:1].upper() + swapped[1:]


def _sentence(text: str, start: int, end: int) -> str:
    """The sentence of `text` holding characters start:end."""
    left = max(text.rfind(stop, 0, start) for stop in ".!?\n")
    rights = [i for i in (text.find(stop, end) for stop in ".!?\n") if i >= 0]
    return text[left + 1 : (min(rights) + 1 if rights else len(text))].strip()


def reply(result: Answered) -> str:
    if result.abstained:
        if not result.sources:
            return "I don't remember anything about that."
        closest = _ROLE.sub("", result.sources[0].text).strip()
        return f"I don't remember anything that answers that. The closest I remember: \"{second_person(closest)}\""
    source = result.sources[0]
    assert source.span is not None  # an answer always carries its span
    sentence = _ROLE.sub("", _sentence(source.text, *source.span))
    if result.answer != source.text[source.span[0] : source.span[1]]:  # a date read from the words
        return f'{result.answer}, from "{second_person(sentence) if _FIRST_PERSON.search(sentence) else sentence}"'
    if _FIRST_PERSON.search(sentence):
        return second_person(sentence)
    return f"{result.answer}."
