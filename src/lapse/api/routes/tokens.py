"""API tokens: create (the secret is shown once), list, revoke. Admin scope."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from lapse.api.deps import AdminToken, ServicesDep, StoreDep
from lapse.api.schemas import TokenCreate, TokenCreated, TokenOut, TokensOut
from lapse.errors import NotFound

router = APIRouter(prefix="/v1/tokens", tags=["tokens"])


@router.get("", response_model=TokensOut, summary="List API tokens")
def list_tokens(store: StoreDep, _: AdminToken) -> TokensOut:
    """Every token, revoked ones included; never the secrets."""
    return TokensOut(items=[TokenOut.of(t) for t in store.list_tokens()])


@router.post(
    "",
    response_model=TokenCreated,
    status_code=status.HTTP_201_CREATED,
    summary="Create an API token",
)
def create_token(body: TokenCreate, services: ServicesDep, _: AdminToken) -> TokenCreated:
    """Create a token; its secret is in this response only (it is stored hashed)."""
    scopes = list(dict.fromkeys(body.scopes))
    info, secret = services.store.create_token(
        name=body.name, scopes=scopes, now=services.clock.now()
    )
    return TokenCreated(**TokenOut.of(info).model_dump(), secret=secret)


@router.delete("/{token_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Revoke an API token")
def revoke_token(token_id: str, request: Request, services: ServicesDep, _: AdminToken) -> Response:
    """Revoke the token: requests with it are refused from now on."""
    if not any(t.id == token_id for t in services.store.list_tokens()):
        raise NotFound(f"no API token {token_id!r}")
    services.store.revoke_token(token_id, services.clock.now())
    request.app.state.tokens.forget(token_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
