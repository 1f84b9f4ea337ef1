"""modeldeploy plugin: English to German translation with a Marian (opus-mt) model."""

import modeldeploy
from modeldeploy.tasks import TranslationWrapper


class TranslationEnDeWrapper(TranslationWrapper):
    name = "translation"
    default_source = "Helsinki-NLP/opus-mt-en-de"
    description = "Translates English text into German, sentence by sentence, however long it is."
    example = "The weather is lovely today. Shall we go for a walk by the river?"


@modeldeploy.hookimpl
def register_models(register):
    register(TranslationEnDeWrapper)
