"""The private APIs graph/openai_chat.py builds on, checked by name: a release of openai or
Pydantic AI that moves them fails here with the name of what moved, not deep inside a turn.
The versions are bounded in pyproject.toml and pinned in requirements*.lock."""

from __future__ import annotations

import importlib
import inspect

import pytest

USED = [
    ("openai._types", "NOT_GIVEN"),
    ("openai._utils", "is_given"),
    ("openai._base_client", "make_request_options"),
    ("openai.resources.chat", "AsyncChat"),
    ("openai.resources.chat.completions", "AsyncCompletions"),
    ("pydantic_ai.models", "ModelRequestParameters"),
    ("pydantic_ai.models.openai", "OpenAIChatModel"),
]


@pytest.mark.parametrize("module, name", USED)
def test_each_private_name_the_client_uses_is_still_there(module, name):
    found = getattr(importlib.import_module(module), name, None)
    assert found is not None, (
        f"{module}.{name} is gone: graph/openai_chat.py depends on it; "
        "pin the previous release or adapt the client"
    )


def test_the_request_options_still_take_what_the_client_passes():
    from openai._base_client import make_request_options

    accepted = set(inspect.signature(make_request_options).parameters)
    assert {"extra_headers", "extra_query", "extra_body", "timeout", "security"} <= accepted, (
        f"openai._base_client.make_request_options now takes {sorted(accepted)}"
    )


def test_the_client_module_imports():
    importlib.import_module("graph.openai_chat")
