"""Chat templates: the Jinja2 template of a chat model's tokenizer_config.json
(``chat_template``) rendered over a list of messages, the way Hugging Face
``transformers`` renders it, so that a model sees the prompt format it was
trained on.

The environment is what such templates are written against: a sandbox (a
template is code from a checkpoint, so it must not reach Python internals),
``trim_blocks`` and ``lstrip_blocks``, the ``loopcontrols`` extension
(``break``, ``continue``), a ``tojson`` filter that keeps non-ASCII text
as it is, and the globals ``raise_exception(message)`` and
``strftime_now(format)``. A ``{% generation %}`` block (which marks the
assistant's part for training masks) renders its body.

jinja2 is an optional dependency (``pip install "attnkit[hf]"``), imported
on first use.
"""

from __future__ import annotations

import datetime
import functools
import json


class ChatTemplateError(ValueError):
    """A chat template that fails to render: its own ``raise_exception``
    (a conversation the template refuses, such as roles out of order) or
    a malformed template."""


def _jinja():
    try:
        import jinja2
        import jinja2.ext
        import jinja2.sandbox
    except ImportError:
        raise ImportError(
            'apply_chat_template needs the jinja2 package: pip install jinja2 (or pip install "attnkit[hf]")'
        ) from None
    return jinja2


@functools.lru_cache(maxsize=16)
def _compile(template: str):
    jinja2 = _jinja()

    class GenerationBlock(jinja2.ext.Extension):
        """``{% generation %}...{% endgeneration %}``: renders the body."""

        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

        def _render(self, caller):
            return caller()

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(format):
        return datetime.datetime.now().strftime(format)

    environment = jinja2.sandbox.ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[GenerationBlock, jinja2.ext.loopcontrols]
    )
    environment.filters["tojson"] = tojson
    environment.globals["raise_exception"] = raise_exception
    environment.globals["strftime_now"] = strftime_now
    try:
        return environment.from_string(template)
    except jinja2.exceptions.TemplateSyntaxError as error:
        raise ChatTemplateError(f"apply_chat_template: the chat template does not parse: {error}") from None


def render_chat_template(
    template: str,
    messages: list,
    *,
    add_generation_prompt: bool = False,
    special_tokens: dict | None = None,
    tools: list | None = None,
    documents: list | None = None,
    **variables,
) -> str:
    """The text of ``messages`` (a list of dicts with at least "role" and
    "content") in the format of ``template``.

    - ``add_generation_prompt``: end with the header of an assistant turn,
      so that the model's continuation is the reply.
    - ``special_tokens``: the tokenizer's special tokens by role
      (``bos_token``, ``eos_token``, ...), which templates write in.
    - ``tools``, ``documents`` and any other keyword: template variables,
      as transformers passes them.
    """
    if not isinstance(template, str):
        raise TypeError(f"apply_chat_template: the chat template expected a str, got {type(template).__name__}")
    if not isinstance(messages, (list, tuple)):
        raise TypeError(
            f"apply_chat_template: argument 'messages' expected a list of dicts, got {type(messages).__name__}"
        )
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise TypeError(
                f"apply_chat_template: message {index} expected a dict with 'role' and 'content', "
                f"got {type(message).__name__}"
            )
    jinja2 = _jinja()
    context = dict(special_tokens or {})
    context.update(variables)
    try:
        return _compile(template).render(
            messages=[dict(message) for message in messages],
            add_generation_prompt=bool(add_generation_prompt),
            tools=tools,
            documents=documents,
            **context,
        )
    except jinja2.exceptions.TemplateError as error:
        raise ChatTemplateError(f"apply_chat_template: the chat template refused the messages: {error}") from None


__all__ = ["ChatTemplateError", "render_chat_template"]
