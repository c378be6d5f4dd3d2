"""attnkit.data.chat: chat templates rendered as transformers renders them
(the environment's settings, filters and globals), and the refusals. The
comparison with transformers' own rendering is in test_hf_llama.py."""

from __future__ import annotations

import pytest

jinja2 = pytest.importorskip("jinja2", reason="needs jinja2 (the hf extra: pip install '.[hf]')")

from attnkit.data.chat import ChatTemplateError, render_chat_template  # noqa: E402

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def test_chatml_with_and_without_the_generation_prompt():
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    text = render_chat_template(CHATML, messages)
    assert text == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
    assert render_chat_template(CHATML, messages, add_generation_prompt=True) == text + "<|im_start|>assistant\n"


def test_block_whitespace_is_trimmed_and_special_tokens_are_in_reach():
    # trim_blocks and lstrip_blocks: a block tag's own line leaves nothing behind.
    template = """{{ bos_token }}
{% for message in messages %}
    {% if message['role'] == 'user' %}
[INST] {{ message['content'] }} [/INST]
    {% else %}
{{ message['content'] }}{{ eos_token }}
    {% endif %}
{% endfor %}"""
    messages = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    text = render_chat_template(template, messages, special_tokens={"bos_token": "<s>", "eos_token": "</s>"})
    assert text == "<s>\n[INST] a [/INST]\nb</s>\n"


def test_filters_globals_and_extensions():
    template = (
        "{% for m in messages %}{% if loop.index > 2 %}{% break %}{% endif %}{{ m | tojson }};{% endfor %}"
        "{% generation %}[{{ tools | length }}]{% endgeneration %}{{ strftime_now('%Y') | length }}"
    )
    messages = [{"role": "user", "content": "é"}, {"role": "user", "content": "<b>"}, {"role": "user", "content": "x"}]
    text = render_chat_template(template, messages, tools=[{"name": "f"}])
    # tojson keeps non-ASCII text and does not HTML-escape (jinja2's own filter does both)
    assert text == '{"role": "user", "content": "é"};{"role": "user", "content": "<b>"};[1]4'


def test_the_template_may_refuse_a_conversation():
    template = (
        "{% if messages[0]['role'] != 'user' %}{{ raise_exception('Conversations must start with a user') }}"
        "{% endif %}ok"
    )
    assert render_chat_template(template, [{"role": "user", "content": ""}]) == "ok"
    with pytest.raises(ChatTemplateError, match="refused the messages: Conversations must start with a user"):
        render_chat_template(template, [{"role": "assistant", "content": ""}])


def test_the_sandbox_keeps_templates_away_from_python_internals():
    with pytest.raises(ChatTemplateError):
        render_chat_template("{{ messages.__class__.__mro__[1].__subclasses__() }}", [])


def test_bad_input():
    with pytest.raises(ChatTemplateError, match="does not parse"):
        render_chat_template("{% for %}", [])
    with pytest.raises(TypeError, match="argument 'messages' expected a list of dicts"):
        render_chat_template(CHATML, "hello")
    with pytest.raises(TypeError, match="message 1 expected a dict"):
        render_chat_template(CHATML, [{"role": "user", "content": "a"}, "b"])
