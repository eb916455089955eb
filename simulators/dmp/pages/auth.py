"""The patient's login: INS and password, then the one-time code the host sends (or the
terminal shows); the web session is renewed once logged in. And logout."""

from __future__ import annotations

from bifente.simulators.dmp.codes import Reason, Refused
from bifente.simulators.dmp.pages.context import PageContext, Route
from bifente.simulators.dmp.pages.labels import message
from bifente.simulators.dmp.pages.layout import Page, csrf_field, redirect, render
from bifente.simulators.dmp.pages.session import cookie
from bifente.simulators.dmp.server import Request, Response

__all__ = ["AuthPages"]


class AuthPages:
    """Login in two steps (INS and password, then a one-time code) and logout."""

    def __init__(self, ctx: PageContext) -> None:
        self.ctx = ctx

    def routes(self) -> list[Route]:
        """The pages' (method, pattern, handler)."""
        return [
            ("GET", "/patient", self.root),
            ("GET", "/patient/", self.root),
            ("GET", "/patient/login", self.login_form),
            ("POST", "/patient/login", self.login_submit),
            ("GET", "/patient/code", self.code_form),
            ("POST", "/patient/code", self.code_submit),
            ("POST", "/patient/logout", self.logout),
        ]

    def root(self, req: Request) -> Response:
        """/patient/: the documents when logged in, else the login page."""
        found = self.ctx.sessions.find(req)
        return redirect("/patient/documents" if found and found[1].token
                        else "/patient/login")

    def login_form(self, req: Request, status: int = 200) -> Response:
        """Step 1: INS and password."""
        sid, web, new = self.ctx.sessions.ensure(req)
        body = (
            '<p>Connectez-vous avec votre INS (numéro de sécurité sociale, 15 caractères) et le '
            "mot de passe remis à la création de votre DMP. Un code à usage unique vous sera "
            "ensuite envoyé.</p>"
            f'<form method="post" action="/patient/login" class="card">{csrf_field(web)}'
            '<label for="ins">INS</label>'
            '<input id="ins" name="ins" inputmode="numeric" autocomplete="username" required '
            'maxlength="15" pattern="[0-9ABab]{15}">'
            '<label for="password">Mot de passe</label>'
            '<input id="password" name="password" type="password" '
            'autocomplete="current-password" required maxlength="64">'
            '<button type="submit">Continuer</button></form>')
        return render(req, Page("Connexion à mon DMP", body, status), web,
                      cookie(sid) if new else None)

    def login_submit(self, req: Request) -> Response:
        """INS + password -> a one-time code is sent; then the code page."""
        try:
            _sid, web, fields = self.ctx.sessions.form(req)
        except Refused as refusal:
            if refusal.told is Reason.UNAUTHENTICATED:  # no session yet: show the form again
                return self.ctx.to_login(req, "Session expirée : recommencez.")
            raise
        ins = str(fields.get("ins", "")).strip().upper()
        try:
            started = self.ctx.patients.start_login(ins, str(fields.get("password", "")))
        except Refused as refusal:
            web.say(message(refusal), error=True)
            return self.login_form(req, 401 if refusal.told is not Reason.LOGIN_LOCKED else 429)
        web.login, web.token = started.login, None
        if started.code_sent_via == "terminal":
            web.say("Saisissez le code à usage unique affiché sur le terminal de "
                    "votre professionnel de santé.")
        else:
            via = {"outbox": "votre messagerie sécurisée de santé"}.get(
                started.code_sent_via, started.code_sent_via)
            web.say(f"Un code à usage unique vous a été envoyé ({via}).")
        return redirect("/patient/code")

    def code_form(self, req: Request, status: int = 200) -> Response:
        """Step 2: the one-time code."""
        found = self.ctx.sessions.find(req)
        if found is None or found[1].login is None:
            return self.ctx.to_login(req, "Saisissez d'abord votre INS et votre mot de passe.")
        web = found[1]
        body = (
            "<p>Saisissez le code à 6 chiffres reçu dans votre messagerie sécurisée de santé "
            "(ou affiché sur le terminal). Il est valable 10 minutes.</p>"
            f'<form method="post" action="/patient/code" class="card">{csrf_field(web)}'
            '<label for="code">Code à usage unique</label>'
            '<input id="code" name="code" inputmode="numeric" autocomplete="one-time-code" '
            'required maxlength="6" pattern="[0-9]{6}">'
            '<button type="submit">Valider</button></form>'
            '<p><a href="/patient/login">Recommencer la connexion</a></p>')
        return render(req, Page("Code de connexion", body, status), web)

    def code_submit(self, req: Request) -> Response:
        """The code opens the patient's session; the web session id is renewed."""
        sid, web, fields = self.ctx.sessions.form(req)
        if web.login is None:
            return self.ctx.to_login(req, "Saisissez d'abord votre INS et votre mot de passe.")
        try:
            opened = self.ctx.patients.finish_login(web.login, str(fields.get("code", "")).strip())
        except Refused as refusal:
            web.say(message(refusal), error=True)
            return self.code_form(req, 401)
        self.ctx.sessions.drop(sid)
        new_sid, new_web = self.ctx.sessions.new()
        new_web.token = opened.token
        new_web.say("Vous êtes connecté.")
        return redirect("/patient/documents", cookie(new_sid))

    def logout(self, req: Request) -> Response:
        """End the API session and the web session."""
        sid, web, _fields = self.ctx.sessions.form(req)
        if web.token:
            self.ctx.patients.logout(web.token)
        self.ctx.sessions.drop(sid)
        new_sid, new_web = self.ctx.sessions.new()
        new_web.say("Vous êtes déconnecté.")
        return redirect("/patient/login", cookie(new_sid))
