"""Secret-looking payload fields masked in the console and in API listings (issue 14,
Safety): a field whose name says token, password, secret, key, credential or authorization
shows as ``"***"`` however deep it sits. Masking is for eyes and logs: the task's stored
payload is unchanged, and the handler gets it whole.
"""

from __future__ import annotations

import re
from typing import Any

MASK = "***"
# Whole words inside a field name: "api_key", "apiKey", "x-auth-token", "db_password",
# "client_secret", "privateKey"; not "monkey", "keyboard" or "tokenizer_name".
_SECRET = re.compile(
    r"(^|[^a-z])(token|password|passwd|pwd|secret|key|credentials?|authorization|auth)([^a-z]|$)"
)
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def looks_secret(name: str) -> bool:
    """True for a field name that reads as a secret (see the module docstring)."""
    words = _CAMEL.sub("_", name).lower()
    return _SECRET.search(words) is not None


def mask_secrets(value: Any) -> Any:
    """A copy of ``value`` (JSON) with every secret-looking field's value replaced by
    :data:`MASK`, in nested objects and in objects inside lists."""
    if isinstance(value, dict):
        return {
            k: (MASK if isinstance(k, str) and looks_secret(k) else mask_secrets(v))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [mask_secrets(v) for v in value]
    return value
