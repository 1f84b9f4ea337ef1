"""modeldeploy plugin: English sentiment analysis with a DistilBERT SST-2 classifier."""

import modeldeploy
from modeldeploy.tasks import TextClassificationWrapper


class SentimentWrapper(TextClassificationWrapper):
    name = "sentiment"
    default_source = "distilbert-base-uncased-finetuned-sst-2-english"
    description = "Is an English text positive or negative? One label and its probability per text."
    example = "I love how easy this was to deploy!"


@modeldeploy.hookimpl
def register_models(register):
    register(SentimentWrapper)
