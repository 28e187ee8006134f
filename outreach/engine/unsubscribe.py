"""The unsubscribe footer a rule with `unsubscribe_link: {language: L}` adds to its mail, in that language.

The footer goes under the text and, for HTML, into a small paragraph before `</body>`. A template that already
shows the link itself (`{{ unsubscribe_url }}`) gets no second one.
"""

from __future__ import annotations

import functools
import re

import markupsafe

from outreach.engine import render

# (the sentence before the link, the link's words): short, plain, and what a reader of each language expects.
FOOTERS: dict[str, tuple[str, str]] = {
    "en": ("Don't want these emails?", "Unsubscribe"),
    "de": ("Sie möchten diese E-Mails nicht mehr erhalten?", "Abmelden"),
    "fr": ("Vous ne souhaitez plus recevoir ces e-mails ?", "Se désabonner"),
    "es": ("¿No quiere recibir más estos correos?", "Darse de baja"),
    "it": ("Non vuoi più ricevere queste email?", "Annulla l'iscrizione"),
    "ja": ("今後このメールの配信を希望されない場合:", "配信停止"),
    "nl": ("Wilt u deze e-mails niet meer ontvangen?", "Afmelden"),
    "pt": ("Não quer receber mais estes e-mails?", "Cancelar a inscrição"),
}
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)


@functools.cache
def _html_footer(language: str) -> tuple[str, str]:
    """The HTML footer of a language, before and after its link's URL (escaped as Markup.format would)."""
    sentence, words = FOOTERS.get(language, FOOTERS["en"])
    escape = markupsafe.escape
    return f'<p style="font-size:small;color:#666666">{escape(sentence)} <a href="', f'">{escape(words)}</a></p>'


def add_footer(rendered: render.Rendered, language: str, url: str) -> render.Rendered:
    """The message with the footer link added to each part that does not show the link yet."""
    sentence, words = FOOTERS.get(language, FOOTERS["en"])
    text = rendered.text
    if url not in text:
        text = f"{text.rstrip()}\n\n--\n{sentence} {words}: {url}\n"
    html = rendered.html
    if html is not None and url not in html:
        before, after = _html_footer(language)
        footer = f"{before}{markupsafe.escape(url)}{after}"
        ends = list(_BODY_END.finditer(html))
        html = f"{html[: ends[-1].start()]}{footer}{html[ends[-1].start() :]}" if ends else f"{html}\n{footer}\n"
    return render.Rendered(rendered.subject, text, html)
