"""Translation of texts of any length with a sequence-to-sequence model (Marian and kin).

A Marian model reads at most ``max_length`` tokens (512 for opus-mt) and was trained on single
sentences; fed a longer text, ``encode()`` would truncate it and the end of the text would be
missing from the translation without a word. So each text is translated in pieces:

1. :func:`split_sentences` cuts it after ``.``, ``!``, ``?`` or ``…`` followed by whitespace, and at
   every line break, but not after common abbreviations (``Dr.``, ``e.g.``, ``U.S.``), initials or
   list numbers, nor inside numbers (``3.14`` has no whitespace after its dot). It needs no
   language data and keeps the whitespace between sentences.
2. :func:`plan_chunks` packs consecutive sentences of one line into chunks of at most
   ``max_input_tokens`` tokens (half the model's ``max_length`` unless configured, so the
   translation, often longer than its source, fits the same limit); a sentence
   longer than that is cut at word boundaries, and a word longer than that between characters.
3. The chunks of every text of the batch are translated together, ``batch_size`` chunks per
   ``generate()`` call, shortest first so that chunks of a similar length share the padding, with
   the generation settings of :class:`~modeldeploy.tasks.Seq2SeqWrapper` applying to each chunk
   (the checkpoint's own generation config, e.g. opus-mt's beams, where config.yaml sets nothing).
4. Each text's chunk translations are joined in order with the whitespace that separated the
   chunks in the original, so paragraphs and line breaks survive.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from .. import testing
from ..errors import ConfigError, InvalidInputError
from .seq2seq import Seq2SeqWrapper

#: A period after one of these (lower-cased) words does not end a sentence. Erring this way is
#: cheap: a missed split only puts two sentences in one chunk, a wrong one translates two halves
#: of a sentence apart.
ABBREVIATIONS = frozenset({
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "vs", "cf", "no", "nos", "fig", "figs",
    "approx", "ca", "vol", "pp", "ed", "eds", "lt", "sgt", "capt", "rev", "gov", "inc", "ltd", "corp",
    "co", "dept", "jan", "feb", "aug", "sept", "oct", "nov", "dec",
})
_SENTENCE_END = re.compile(r"(\.{3,}|[.!?…]+)[\"'”’»)\]]*$")
_DOTTED = re.compile(r"^(?:[^\W\d_]\.)+[^\W\d_]$")  # U.S, e.g, a.m (the last dot is the candidate)
_INITIAL = re.compile(r"^[^\W\d_]$")  # J. K. Rowling
_LIST_NUMBER = re.compile(r"^\d{1,3}$")  # "1. Install it" at the start of a sentence
_OPENERS = "\"'“‘«(["
_WORD = re.compile(r"(\S+)(\s*)")
#: Fewer input tokens than this cannot hold a useful piece of a sentence.
MIN_INPUT_TOKENS = 8


@dataclass(frozen=True)
class Segment:
    """A sentence, a chunk or a word of a text, and the whitespace that followed it there."""

    text: str
    separator: str = ""


def split_sentences(text: str) -> list[Segment]:
    """The sentences of ``text`` (outer whitespace dropped) with the whitespace after each.

    Joining ``s.text + s.separator`` over the result gives back ``text.strip()``: nothing is
    lost, so a translation can be reassembled with the original layout.
    """
    text = text.strip()
    sentences: list[Segment] = []
    start = 0
    for gap in re.finditer(r"\s+", text):
        sentence = text[start : gap.start()]
        if "\n" in gap.group() or _ends_sentence(sentence):
            sentences.append(Segment(sentence, gap.group()))
            start = gap.end()
    if start < len(text):
        sentences.append(Segment(text[start:]))
    return sentences


def _ends_sentence(sentence: str) -> bool:
    """Whether the whitespace after ``sentence`` (which has no line break) ends it."""
    end = _SENTENCE_END.search(sentence)
    if end is None:
        return False
    if end.group(1) != ".":
        return True  # "!", "?", "…", "..." or a mix: no abbreviation ends like that
    before = sentence[: end.start()]
    words = before.split()
    word = words[-1].lstrip(_OPENERS) if words else ""
    if word.lower() in ABBREVIATIONS or _DOTTED.match(word) or _INITIAL.match(word):
        return False
    return not (len(words) == 1 and _LIST_NUMBER.match(word))


def plan_chunks(text: str, count_tokens: Callable[[str], int], max_tokens: int) -> list[Segment]:
    """Cut ``text`` into chunks of whole sentences whose model input fits ``max_tokens``.

    ``count_tokens(t)`` is the length in tokens of the model's input for ``t`` alone (prefix and
    special tokens included). Sentences are packed greedily and never across a line break; a
    sentence that does not fit alone is cut between words, and a word between characters. Each
    chunk's separator is the whitespace that followed it, so joining ``chunk.text +
    chunk.separator`` gives back ``text.strip()``. A blank text has no chunks.
    """

    def fits(piece: str) -> bool:
        return count_tokens(piece) <= max_tokens

    units = [unit for sentence in split_sentences(text) for unit in _fitting_units(sentence, fits)]
    overhead = count_tokens("")
    chunks: list[Segment] = []
    for group in _pack(units, lambda unit: count_tokens(unit.text) - overhead, max_tokens - overhead):
        chunks.extend(_verified(group, fits))
    return chunks


def _fitting_units(sentence: Segment, fits: Callable[[str], bool]) -> list[Segment]:
    """The sentence itself if it fits, else its words, each word that does not fit cut further."""
    if fits(sentence.text):
        return [sentence]
    words = [Segment(m.group(1), m.group(2)) for m in _WORD.finditer(sentence.text)]
    words[-1] = Segment(words[-1].text, sentence.separator)
    return [piece for word in words for piece in ([word] if fits(word.text) else _split_characters(word, fits))]


def _split_characters(word: Segment, fits: Callable[[str], bool]) -> list[Segment]:
    """A word too long for the model, cut into the longest pieces that fit, joined with ``""``."""
    pieces: list[Segment] = []
    rest = word.text
    while rest:
        size = _longest_fitting_prefix(rest, fits)
        pieces.append(Segment(rest[:size]))
        rest = rest[size:]
    pieces[-1] = Segment(pieces[-1].text, word.separator)
    return pieces


def _longest_fitting_prefix(text: str, fits: Callable[[str], bool]) -> int:
    """Length of the longest prefix that fits, at least 1: galloping, then bisection.

    Galloping keeps every probe near the answer's length, so a 100,000-character word costs a
    few short tokenizations per piece rather than tokenizing the whole word each time.
    """
    good = 1
    while good < len(text) and fits(text[: min(2 * good, len(text))]):
        good = min(2 * good, len(text))
    bad = min(2 * good, len(text)) if good < len(text) else good
    while bad - good > 1:
        middle = (good + bad) // 2
        if fits(text[:middle]):
            good = middle
        else:
            bad = middle
    return good


def _pack(units: list[Segment], cost: Callable[[Segment], int], room: int) -> list[list[Segment]]:
    """Consecutive units grouped greedily while their summed costs fit ``room``; a line break
    after a unit always closes its group, so chunks never span paragraphs or lines."""
    groups: list[list[Segment]] = []
    group: list[Segment] = []
    used = 0
    for unit in units:
        unit_cost = cost(unit)
        if group and used + unit_cost > room:
            groups.append(group)
            group, used = [], 0
        group.append(unit)
        used += unit_cost
        if "\n" in unit.separator:
            groups.append(group)
            group, used = [], 0
    if group:
        groups.append(group)
    return groups


def _verified(group: list[Segment], fits: Callable[[str], bool]) -> list[Segment]:
    """The group as one chunk, or halved until each part fits.

    Summed per-sentence token counts equal the joined text's count for SentencePiece and most
    tokenizers, but not by contract: measuring the joined text makes the limit a guarantee.
    """
    chunk = Segment("".join(unit.text + unit.separator for unit in group[:-1]) + group[-1].text,
                    group[-1].separator)
    if len(group) == 1 or fits(chunk.text):
        return [chunk]
    half = len(group) // 2
    return _verified(group[:half], fits) + _verified(group[half:], fits)


class TranslationWrapper(Seq2SeqWrapper):
    """Texts of any length -> ``{"translation_text": ...}``, translated chunk by chunk."""

    task = "translation"
    output_key = "translation_text"
    #: ``max_characters``: the longest text accepted (0: no limit). A text's cost grows with its
    #: length (every sentence is generated), so a 1 MiB body would hold the model for many minutes,
    #: long past any request timeout. 20,000 characters is about 4,000 tokens, 16 chunks of opus-mt's
    #: 256: an estimate of what two CPU cores translate within the default 60 s request timeout.
    default_settings = {**Seq2SeqWrapper.default_settings, "max_input_tokens": None, "max_characters": 20_000}
    demo_builder = staticmethod(testing.build_translation)
    #: Every tokenizer call goes through tokenize/detokenize: passes may run at once.
    concurrent_passes = True
    integer_settings = {**Seq2SeqWrapper.integer_settings, "max_input_tokens": MIN_INPUT_TOKENS, "max_characters": 0}

    @property
    def max_input_tokens(self) -> int:
        """Most tokens of one chunk: the configured limit, never above the model's ``max_length``;
        by default half of it, since a translation is often longer than its source (German runs
        about a third longer than English) and generation stops at the same ``max_length``: a
        full-length chunk could lose its last words."""
        configured = self.settings["max_input_tokens"]
        return max(MIN_INPUT_TOKENS, self.max_length // 2) if configured is None else min(configured, self.max_length)

    def prepare_data(self, item: str) -> str:
        """The text unchanged (the prefix, if any, goes before each chunk, in :meth:`chunks`), or
        InvalidInputError for a text over ``max_characters``, refused before any work is queued."""
        limit = self.settings["max_characters"]
        if limit and len(item) > limit:
            raise InvalidInputError(
                f"text of {len(item)} characters is over the {limit} that model {self.name!r} translates per text "
                f"(setting 'max_characters'); send it in parts"
            )
        return item

    def chunks(self, text: str, count_tokens: Callable[[str], int] | None = None) -> list[Segment]:
        """The chunks ``text`` is translated in, each within :attr:`max_input_tokens`."""
        count_tokens = count_tokens or self._token_counter()
        if count_tokens("") >= self.max_input_tokens:
            raise ConfigError(
                f"setting 'max_input_tokens' of model {self.name!r} ({self.max_input_tokens}) leaves no room "
                f"for text after the prefix {self.prefix!r}"
            )
        return plan_chunks(text, count_tokens, self.max_input_tokens)

    def _token_counter(self) -> Callable[[str], int]:
        """Token count of the model input for a text (prefix and special tokens included),
        remembered per text: the same sentence is measured once however often it is packed."""
        counts: dict[str, int] = {}

        def count_tokens(text: str) -> int:
            if text not in counts:
                counts[text] = len(self.tokenize(self.prefix + text, verbose=False)["input_ids"])
            return counts[text]

        return count_tokens

    def predict_batch(self, items: list[str]) -> list[dict[str, str]]:
        count_tokens = self._token_counter()
        plans = [self.chunks(item, count_tokens) for item in items]
        chunks = [chunk.text for plan in plans for chunk in plan]
        translated = iter(self._translate(chunks, [count_tokens(chunk) for chunk in chunks]))
        return [
            {self.output_key: "".join(next(translated) + chunk.separator for chunk in plan)} for plan in plans
        ]

    def _translate(self, chunks: list[str], lengths: list[int]) -> list[str]:
        """Every chunk translated, ``batch_size`` per ``generate()`` call, shortest first."""
        order = sorted(range(len(chunks)), key=lengths.__getitem__)
        size = self.settings["batch_size"]
        translations = [""] * len(chunks)
        kwargs = self.generation_kwargs()
        for start in range(0, len(order), size):
            batch = order[start : start + size]
            encoded = self.encode([self.prefix + chunks[i] for i in batch])
            generated = self.model.generate(**encoded, **kwargs)
            texts = self.detokenize(
                generated, skip_special_tokens=True, clean_up_tokenization_spaces=True
            )
            for i, text in zip(batch, texts):
                translations[i] = text.strip()
        return translations
