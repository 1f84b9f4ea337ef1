"""Translation: a sequence-to-sequence model (Marian and kin) through ``model.generate()``."""

from __future__ import annotations

from .seq2seq import Seq2SeqWrapper


class TranslationWrapper(Seq2SeqWrapper):
    """Generated text under ``translation_text``, the key transformers' translation pipeline used."""

    task = "translation"
    output_key = "translation_text"
