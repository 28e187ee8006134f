"""Rendering within the render limits (Settings limits.render_time and limits.message_size, and the sandbox's own):
hostile templates are stopped quickly, in little memory, with a reason that blocks the enrollment; ordinary ones
render as before."""

from __future__ import annotations

import time
import tracemalloc

import pytest

from outreach.engine import render
from outreach.rules import loader, model, templates, timing, validate
from tests.conftest import FIXTURES

pytestmark = pytest.mark.unit

HOSTILE = FIXTURES / "hostile" / "templates.yaml"


def _hostile() -> list[tuple[model.Template, str]]:
    docs, problems = loader.read_file(str(HOSTILE))
    assert problems == []
    return [(model.Template(model.Source(str(HOSTILE), d.line, ""), d.data["name"], d.data["subject"], d.data["text"]),
             d.data["description"]) for d in docs]  # fmt: skip


def _merge(first_name: str = "Jo") -> dict[str, object]:
    return render.context({"first_name": first_name, "email": "jo@example.org"}, sender=None, owner=None,
                          organization=None, unsubscribe_url=None)  # fmt: skip


@pytest.mark.parametrize(("template", "reason"), _hostile(), ids=[t.name for t, _ in _hostile()])
def test_a_hostile_template_is_stopped_within_the_limits_with_its_reason(template: model.Template, reason: str) -> None:
    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(render.RenderError) as failed:
            render.render(template, _merge(), model.Limits())
        took = time.monotonic() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert failed.value.reason.startswith(f"template {template.name} ")
    assert reason in failed.value.reason
    assert took < 5  # the render time is 1 s; the rest is a busy machine's margin
    assert peak < 64 * 1024 * 1024  # a message is at most 1 MiB: nothing near the gigabytes asked for is made


def test_validate_flags_the_hostile_templates_whose_values_are_written_in_them_and_only_those() -> None:
    result = validate.validate([str(FIXTURES / "base"), str(HOSTILE)])
    docs = loader.read_file(str(HOSTILE))[0]
    flagged = {next(d.data["name"] for d in docs if d.line <= e.line and e.line - d.line < 6) for e in result.errors}
    assert {str(e.code) for e in result.errors} == {"template-limit"}
    assert flagged == {"first-name-repeated", "power-tower", "a-billion-characters", "a-billion-items"}


def test_the_render_time_and_the_message_size_come_from_settings() -> None:
    loops = next(t for t, _ in _hostile() if t.name == "nested-ranges")
    started = time.monotonic()
    with pytest.raises(render.RenderError, match=r"took longer than 2 s to render \(Settings limits.render_time\)"):
        render.render(loops, _merge(), model.Limits(render_time=timing.Duration(seconds=2)))
    assert 2 <= time.monotonic() - started < 6
    big = dataclass_template("{{ 'x' * 20000 }}")
    assert len(render.render(big, _merge(), model.Limits()).text) == 20000
    with pytest.raises(render.RenderError, match=r"more than a message may hold \(10240 bytes"):
        render.render(big, _merge(), model.Limits(message_size=10240))


def test_the_size_counts_subject_text_and_html_together_in_utf8_bytes() -> None:
    template = dataclass_template("{{ 'é' * 3000 }}", subject="{{ 'x' * 3000 }}", html="<p>{{ 'y' * 1000 }}</p>")
    assert render.render(template, _merge(), model.Limits(message_size=10240)).text == "é" * 3000  # 6000 bytes
    with pytest.raises(render.RenderError, match=r"renders more than 10240 bytes"):
        render.render(dataclass_template("{{ 'é' * 3000 }}", subject="{{ 'x' * 3000 }}",
                                         html="<p>{{ 'y' * 2000 }}</p>"), _merge(), model.Limits(message_size=10240))  # fmt: skip


@pytest.mark.parametrize("text", [
    "{{ 2 ** 100 }} {{ 7 * 6 }} {{ 'ab' * 3 }} {{ '-' * 40 }} {{ [1, 2] * 2 }} {{ 10 - 3 }} {{ 'a' + 'b' }}",
    "{{ '%s has %d' % ('Jo', 3) }} {{ '{} {}'.format(1, 'b') }} {{ 'x'|center(9) }} {{ 'a-b'.replace('-', '+') }}",
    "{% for x in [3, 1, 2]|sort %}{{ loop.index }}{{ x }}{% if loop.last %}!{% endif %}{% endfor %}",
    "{% set x %}hello {{ record.first_name }}{% endset %}{{ x|upper }} {{ record.first_name ~ '!' }}",
    "{% macro hi(n) %}Hi {{ n }}{% endmacro %}{{ hi('Bo') }} {{ {'a': 1}|tojson }} {{ range(3)|list }}",
    "{{ [[1], [2, 3]]|sum(start=[]) }} {{ [1, 2]|batch(1)|list }} {{ ['a', 'b']|join(', ') }} {{ 3.14159|round(2) }}",
    "{% for a in [[1, 2], [3]] recursive %}{% if a is iterable %}{{ loop(a) }}{% else %}{{ a }}{% endif %}{% endfor %}",
])  # fmt: skip
def test_ordinary_templates_render_as_jinja_renders_them(text: str) -> None:
    import jinja2.sandbox

    expected = jinja2.sandbox.SandboxedEnvironment().from_string(text).render(record={"first_name": "Jo"})
    assert render.render(dataclass_template(text), _merge(), model.Limits()).text == expected


def test_html_stays_escaped_through_the_checked_joins() -> None:
    out = render.render(dataclass_template("x", html="<p>{{ record.first_name ~ '<b>' }}</p>"), _merge("<i>"))
    assert out.html == "<p>&lt;i&gt;&lt;b&gt;</p>"


def test_validate_reads_the_limits_from_settings_and_bounds_the_render_time() -> None:
    settings = "kind: Settings\nrecord_fields: {first_name: string}\nlimits: {message_size: 20000, render_time: 3s}\n"
    template = "kind: Template\nname: t\nsubject: Hi\ntext: \"{{ 'x' * 30000 }}{{ 'y' * 15000 }}\"\n"
    result = validate.validate_texts({"s.yaml": settings, "t.yaml": template})
    assert [(d.line, str(d.code)) for d in result.errors] == [(4, "template-limit")]
    assert "30000 characters long, more than a message may hold (20000 bytes" in result.errors[0].message
    limits = validate.validate_texts({"s.yaml": settings}).ruleset
    assert limits is not None and limits.settings.limits.message_size == 20000
    assert limits.settings.limits.render_time == timing.Duration(seconds=3)
    slow = validate.validate_texts({"s.yaml": settings.replace("3s", "1m")})
    assert [(d.path, str(d.code)) for d in slow.errors] == [("limits.render_time", "schema-range")]
    small = validate.validate_texts({"s.yaml": settings.replace("20000", str(templates.MIN_MESSAGE_SIZE - 1))})
    assert [(d.path, str(d.code)) for d in small.errors] == [("limits.message_size", "schema-range")]


def dataclass_template(text: str, *, subject: str = "Hi", html: str | None = None) -> model.Template:
    return model.Template(model.Source("t.yaml", 1, ""), "t", subject, text, html)
