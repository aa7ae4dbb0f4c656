"""Who is calling, and may they: Kubernetes' own authentication and authorization, per request.

The API acts for its caller and never beyond the caller's own rights. A bearer token (a
ServiceAccount's, a training pod's projected token, `kubectl create token`, whatever the cluster's
authenticator accepts) is checked with a TokenReview; HTTP Basic with the token as the password is
accepted too, so lmms-eval's own `EvalClient("http://token:<TOKEN>@evalkube:8000")` works. Each
request is then a SubjectAccessReview of that user on the real resource in the target namespace
(see PERMISSIONS in the routers), so a tenant can do through the API exactly what it could with
kubectl. Both reviews are cached briefly (bounded in size and time): a revoked token or RoleBinding
takes effect within `auth_cache_seconds`.

`EVALKUBE_API_AUTH=none` (an explicit opt-in) turns all of this off; started on a non-loopback
address it logs a warning.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from cachetools import TTLCache
from fastapi import HTTPException, Request
from kubernetes.client import AuthenticationV1Api, AuthorizationV1Api

from evalkube import resource

log = logging.getLogger(__name__)

#: Sent with every 401, so a client knows both ways in.
WWW_AUTHENTICATE = 'Bearer realm="evalkube", Basic realm="evalkube"'
ANONYMOUS = "system:anonymous"


@dataclass(frozen=True)
class Identity:
    """The caller, as the cluster's authenticator knows them."""

    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def service_account_namespace(self) -> str | None:
        """The namespace of a ServiceAccount caller (`system:serviceaccount:NS:NAME`), else None."""
        parts = self.username.split(":")
        return parts[2] if len(parts) == 4 and parts[:2] == ["system", "serviceaccount"] else None


#: Mode "none": no review; the API's own rights apply (an explicit, logged opt-in).
NOBODY = Identity(username=ANONYMOUS)


@dataclass(frozen=True)
class Permission:
    """What a route needs, as RBAC names it: `create evaljobs`, `get pods/log`, ..."""

    verb: str
    resource: str
    subresource: str = ""
    group: str = resource.GROUP

    def describe(self, namespace: str) -> str:
        what = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        group = f".{self.group}" if self.group else ""
        return f"{self.verb} {what}{group} in namespace {namespace!r}"


def unauthorized(reason: str) -> HTTPException:
    return HTTPException(status_code=401, detail=reason, headers={"WWW-Authenticate": WWW_AUTHENTICATE})


def bearer_token(request: Request) -> str | None:
    """The caller's token: `Authorization: Bearer T`, or Basic with T as the password."""
    return token_from_header(request.headers.get("authorization"))


def token_from_header(header: str | None) -> str | None:
    """The token of an Authorization header's value (see `bearer_token`); 401 if it is malformed."""
    header = header or ""
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if scheme.lower() == "basic" and value.strip():
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            raise unauthorized("malformed Basic credentials") from None
        _, _, password = decoded.partition(":")
        return password or None
    return None


@dataclass
class Auth:
    """TokenReviews and SubjectAccessReviews, cached; thread-safe (routes run in a thread pool)."""

    authn: AuthenticationV1Api
    authz: AuthorizationV1Api
    enabled: bool
    cache_seconds: float = 10.0
    cache_size: int = 4096
    timeout: float = 10.0
    _identities: TTLCache = field(init=False)
    _decisions: TTLCache = field(init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._identities = TTLCache(maxsize=self.cache_size, ttl=self.cache_seconds, timer=time.monotonic)
        self._decisions = TTLCache(maxsize=self.cache_size, ttl=self.cache_seconds, timer=time.monotonic)

    def known(self, token: str | None) -> Identity | None:
        """The token's user when that needs no review (auth off, or a cached answer), else None.

        Never blocks, so the event loop can ask first and leave only a review to a thread.
        """
        if not self.enabled:
            return NOBODY
        if not token:
            raise unauthorized(
                "a bearer token is required (Authorization: Bearer <token>, or Basic with it as password)"
            )
        with self._lock:
            cached = self._identities.get(_digest(token))
        if isinstance(cached, str):
            raise unauthorized(cached)
        return cached

    def authenticate(self, token: str | None) -> Identity:
        """The token's user; 401 without a token or with one the cluster does not accept."""
        cached = self.known(token)
        if cached is not None:
            return cached
        assert token is not None
        key = _digest(token)
        review = self.authn.create_token_review(
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}},
            _request_timeout=self.timeout,
        )
        status = review.status
        if not status or not status.authenticated or not status.user:
            reason = f"the token was not accepted: {(status and status.error) or 'not authenticated'}"
            with self._lock:
                self._identities[key] = reason
            raise unauthorized(reason)
        user = status.user
        identity = Identity(
            username=user.username or "",
            uid=user.uid or "",
            groups=tuple(user.groups or ()),
            extra=tuple(sorted((k, tuple(v)) for k, v in (user.extra or {}).items())),
        )
        with self._lock:
            self._identities[key] = identity
        return identity

    def decided(self, identity: Identity, permission: Permission, namespace: str, name: str | None = None) -> bool:
        """True when allowed with no review needed (auth off, or a cached yes); 403 on a cached no;
        False when only a review can tell. Never blocks."""
        if not self.enabled:
            return True
        with self._lock:
            allowed = self._decisions.get((identity, permission, namespace, name))
        if allowed is False:
            raise _forbidden(identity, permission, namespace)
        return bool(allowed)

    def authorize(self, identity: Identity, permission: Permission, namespace: str, name: str | None = None) -> None:
        """403 naming the missing permission unless the cluster's authorizer allows it."""
        if self.decided(identity, permission, namespace, name):
            return
        key = (identity, permission, namespace, name)
        attributes: dict[str, Any] = {
            "namespace": namespace,
            "verb": permission.verb,
            "group": permission.group,
            "resource": permission.resource,
            "subresource": permission.subresource,
        }
        if name:
            attributes["name"] = name
        spec: dict[str, Any] = {
            "user": identity.username,
            "uid": identity.uid,
            "groups": list(identity.groups),
            "resourceAttributes": attributes,
        }
        if identity.extra:
            spec["extra"] = {k: list(v) for k, v in identity.extra}
        review = self.authz.create_subject_access_review(
            {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec},
            _request_timeout=self.timeout,
        )
        allowed = bool(review.status and review.status.allowed)
        with self._lock:
            self._decisions[key] = allowed
        if not allowed:
            raise _forbidden(identity, permission, namespace)


def _digest(token: str) -> str:
    """The cache key of a token: tokens are never kept as they are."""
    return hashlib.sha256(token.encode()).hexdigest()


def _forbidden(identity: Identity, permission: Permission, namespace: str) -> HTTPException:
    return HTTPException(status_code=403, detail=f"user {identity.username!r} may not {permission.describe(namespace)}")


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def warn_if_open(enabled: bool, host: str) -> None:
    """The explicit opt-out, said loudly where it matters: anyone who can reach the API acts with its rights."""
    if not enabled and not is_loopback(host):
        log.warning(
            "EVALKUBE_API_AUTH=none on %s: every caller who can reach the API creates EvalJobs with the API's "
            "own rights; use it only behind another authenticating proxy",
            host,
        )
