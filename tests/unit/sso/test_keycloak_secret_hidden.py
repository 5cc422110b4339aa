"""A server that echoes the request in its error page (a wrong base_url, a proxy's error page: seen with a small
echo server in front of citydc) must not make citydc print the client secret or the access token."""

from __future__ import annotations

import httpx
import pytest

from citydc.sso.keycloak import Keycloak, KeycloakError

# Long enough to be cut by the 200-character limit of an error text, and with characters the form encodes.
SECRET = "s3cr3t+/=&value-" + "x" * 180


def echo(status_of_token: int) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/token"):
            if status_of_token != 200:
                return httpx.Response(status_of_token, text="bad request: " + request.content.decode())
            return httpx.Response(200, json={"access_token": "tok-abcdef-123456", "expires_in": 300})
        return httpx.Response(500, text="upstream said: " + request.headers.get("authorization", ""))
    return httpx.MockTransport(handle)


def error_of(call) -> str:
    with pytest.raises(KeycloakError) as caught:
        call()
    return str(caught.value)


@pytest.mark.parametrize("status", [400, 401, 502])
def test_a_token_error_page_echoing_the_form_does_not_show_the_secret(status):
    kc = Keycloak("http://kc.example", "citydc-audit", SECRET, transport=echo(status))
    text = error_of(kc.token)
    assert f"refused (HTTP {status}: bad request: grant_type=client_credentials" in text
    assert "client_secret=***" in text
    assert SECRET[:8] not in text and "s3cr3t" not in text


def test_an_api_error_page_echoing_the_bearer_token_does_not_show_it():
    kc = Keycloak("http://kc.example", "citydc-audit", SECRET, transport=echo(200))
    text = error_of(lambda: kc.get("edge"))
    assert text == "GET /admin/realms/edge: HTTP 500: upstream said: Bearer ***"
