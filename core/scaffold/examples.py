"""What a generated plugin says and checks for each task: its example, description and result check.

One entry per task tag of ``modeldeploy.tasks.TASKS``; ``tests/test_scaffold.py`` generates and
tests a plugin for every task, so a task added there without an entry here fails that test.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TaskExample:
    """The task-specific parts of a generated plugin."""

    #: The wrapper's ``example``: an input that shows the task off (and that the tests run).
    example: str
    #: The wrapper's ``description`` until its author writes their own.
    description: str
    #: ``templates/check_<check>.py.tmpl``: the generated tests' ``check_result`` for this result shape.
    check: str
    #: What the plugin needs besides modeldeploy for the task's usual checkpoints (and its test model).
    dependencies: tuple[str, ...] = ()


TASK_EXAMPLES: dict[str, TaskExample] = {
    "text-classification": TaskExample(
        example="I love how easy this was to deploy.",
        description="Classifies a text: the most likely label and its probability.",
        check="label_score",
    ),
    "token-classification": TaskExample(
        example="Angela Merkel met Emmanuel Macron in Paris on Tuesday.",
        description="Finds the entities in a text: their kind, words and character offsets.",
        check="entities",
    ),
    "text2text-generation": TaskExample(
        example=("The European Central Bank kept interest rates unchanged on Thursday, saying inflation "
                 "was slowing but still too high, and that it would decide meeting by meeting."),
        description="Generates a text from a text, e.g. a short summary.",
        check="generated_text",
    ),
    "translation": TaskExample(
        example="The weather is lovely today. Shall we go for a walk by the river?",
        description="Translates a text into another language.",
        check="generated_text",
        dependencies=("sentencepiece>=0.2",),  # Marian (opus-mt) tokenizers are SentencePiece models
    ),
    "feature-extraction": TaskExample(
        example="A sentence to turn into a vector for semantic search.",
        description="Turns a text into a fixed-length vector of floats (a sentence embedding).",
        check="vector",
    ),
}
