"""The unsubscribe pages: a confirmation with one button (GET), and the answer after it (POST), in the rule's
language. Small, accessible (a language attribute, a real form and button, readable without styles or scripts),
and safe: everything shown is escaped, nothing is loaded from elsewhere."""

from __future__ import annotations

import html

# language -> (title, question with {email}, button, done with {email}, already with {email}, not found)
TEXTS: dict[str, tuple[str, str, str, str, str, str]] = {
    "en": (
        "Unsubscribe",
        "Stop all emails from us to {email}?",
        "Unsubscribe",
        "{email} is unsubscribed. You will get no more emails from us.",
        "{email} was already unsubscribed. You will get no more emails from us.",
        "This link is not valid. Nothing has changed.",
    ),
    "de": (
        "Abmelden",
        "Keine E-Mails mehr von uns an {email} senden?",
        "Abmelden",
        "{email} ist abgemeldet. Sie erhalten keine E-Mails mehr von uns.",
        "{email} war bereits abgemeldet. Sie erhalten keine E-Mails mehr von uns.",
        "Dieser Link ist ungültig. Es wurde nichts geändert.",
    ),
    "fr": (
        "Se désabonner",
        "Ne plus envoyer d'e-mails à {email} ?",
        "Se désabonner",
        "{email} est désabonné. Vous ne recevrez plus d'e-mails de notre part.",
        "{email} était déjà désabonné. Vous ne recevrez plus d'e-mails de notre part.",
        "Ce lien n'est pas valide. Rien n'a été modifié.",
    ),
    "es": (
        "Darse de baja",
        "¿Dejar de enviar correos a {email}?",
        "Darse de baja",
        "{email} se ha dado de baja. No recibirá más correos nuestros.",
        "{email} ya estaba dado de baja. No recibirá más correos nuestros.",
        "Este enlace no es válido. No se ha cambiado nada.",
    ),
    "it": (
        "Annulla l'iscrizione",
        "Non inviare più email a {email}?",
        "Annulla l'iscrizione",
        "L'iscrizione di {email} è stata annullata. Non riceverai più email da noi.",
        "L'iscrizione di {email} era già stata annullata. Non riceverai più email da noi.",
        "Questo link non è valido. Non è stato modificato nulla.",
    ),
    "ja": (
        "配信停止",
        "{email} へのメール配信を停止しますか?",
        "配信を停止する",
        "{email} への配信を停止しました。今後メールは送信されません。",
        "{email} への配信はすでに停止されています。今後メールは送信されません。",
        "このリンクは無効です。何も変更されていません。",
    ),
    "nl": (
        "Afmelden",
        "Geen e-mails meer naar {email} sturen?",
        "Afmelden",
        "{email} is afgemeld. U ontvangt geen e-mails meer van ons.",
        "{email} was al afgemeld. U ontvangt geen e-mails meer van ons.",
        "Deze link is ongeldig. Er is niets gewijzigd.",
    ),
    "pt": (
        "Cancelar a inscrição",
        "Deixar de enviar e-mails para {email}?",
        "Cancelar a inscrição",
        "A inscrição de {email} foi cancelada. Não receberá mais e-mails nossos.",
        "A inscrição de {email} já estava cancelada. Não receberá mais e-mails nossos.",
        "Este link não é válido. Nada foi alterado.",
    ),
}

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;line-height:1.5;"
    "color:#1a1a1a}button{font-size:1rem;padding:.6rem 1.2rem;border:2px solid #1a1a1a;background:#fff;"
    "border-radius:4px;cursor:pointer}button:focus{outline:3px solid #1a5fb4;outline-offset:2px}"
)


def language_of(language: str) -> str:
    return language if language in TEXTS else "en"


def _page(language: str, title: str, body: str) -> str:
    return (
        f'<!DOCTYPE html>\n<html lang="{html.escape(language)}">\n<head>\n<meta charset="utf-8">\n'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">\n<meta name="robots" content="noindex">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n<main>\n"
        f"<h1>{html.escape(title)}</h1>\n{body}</main>\n</body>\n</html>\n"
    )


def confirm(language: str, email: str, action: str) -> str:
    """The GET page: the question and one button that POSTs to `action`. It changes nothing by itself."""
    lang = language_of(language)
    title, question, button, *_ = TEXTS[lang]
    body = (
        f'<form method="post" action="{html.escape(action)}">\n'
        f"<p id=\"question\">{html.escape(question.format(email=email))}</p>\n"
        f'<button type="submit" aria-describedby="question">{html.escape(button)}</button>\n</form>\n'
    )
    return _page(lang, title, body)


def done(language: str, email: str, *, already: bool) -> str:
    """The answer to the POST: the address is unsubscribed (now, or it was before)."""
    lang = language_of(language)
    title, _q, _b, now_text, before_text, _bad = TEXTS[lang]
    text = (before_text if already else now_text).format(email=email)
    return _page(lang, title, f'<p role="status">{html.escape(text)}</p>\n')


def not_found(language: str = "en") -> str:
    lang = language_of(language)
    title, *_rest, bad = TEXTS[lang]
    return _page(lang, title, f"<p>{html.escape(bad)}</p>\n")
