"""modeldeploy plugin: abstractive summarization with a BART (or T5) encoder-decoder."""

import modeldeploy
from modeldeploy.tasks import Seq2SeqWrapper


class SummarizationWrapper(Seq2SeqWrapper):
    name = "summarization"
    task = "summarization"
    task_params_key = "summarization"
    output_key = "summary_text"
    default_source = "sshleifer/distilbart-cnn-12-6"
    description = "Condenses a news-style article into a few sentences."
    example = (
        "The city council approved a plan on Monday to convert three downtown parking lots into "
        "public parks. Supporters said the change would cool the area in summer and give families "
        "more green space, while some shop owners worried that customers would struggle to park. "
        "Construction is expected to begin next spring and take about a year."
    )


@modeldeploy.hookimpl
def register_models(register):
    register(SummarizationWrapper)
