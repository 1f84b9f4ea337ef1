"""modeldeploy plugin: named-entity recognition (persons, organisations, locations, misc)."""

import modeldeploy
from modeldeploy.tasks import TokenClassificationWrapper


class NerWrapper(TokenClassificationWrapper):
    name = "ner"
    default_source = "dslim/bert-base-NER"
    description = "Finds people, organisations, places and other names, with character offsets."
    example = "Angela Merkel met Emmanuel Macron in Paris to talk about Airbus."


@modeldeploy.hookimpl
def register_models(register):
    register(NerWrapper)
