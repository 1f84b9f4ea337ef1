"""Task base classes shared by plugins: a model plugin subclasses one and sets its attributes."""

from ..wrapper import ModelWrapper
from .classification import TextClassificationWrapper
from .embeddings import SentenceEmbeddingWrapper
from .seq2seq import Seq2SeqWrapper
from .token_classification import TokenClassificationWrapper
from .translation import TranslationWrapper

#: Every task the core supports, by its task tag: the base class a plugin of that task subclasses.
TASKS: dict[str, type[ModelWrapper]] = {
    base.task: base
    for base in (TextClassificationWrapper, TokenClassificationWrapper, Seq2SeqWrapper, TranslationWrapper,
                 SentenceEmbeddingWrapper)
}

__all__ = ["TASKS", "Seq2SeqWrapper", "SentenceEmbeddingWrapper", "TextClassificationWrapper",
           "TokenClassificationWrapper", "TranslationWrapper"]
