"""Task base classes shared by plugins: a model plugin subclasses one and sets its attributes."""

from .classification import TextClassificationWrapper
from .seq2seq import Seq2SeqWrapper
from .token_classification import TokenClassificationWrapper

__all__ = ["Seq2SeqWrapper", "TextClassificationWrapper", "TokenClassificationWrapper"]
