"""What a model name may look like: one rule for plugins, manifests and store keys.

A leaf module, so the store (below the plugin layer) and plugin discovery share the rule without
either importing the other.
"""

from __future__ import annotations

import re

#: Lowercase letters and digits first, then also ``_``, ``.`` and ``-``; at most 64 characters.
MODEL_NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}\Z")  # \Z: no trailing newline either
