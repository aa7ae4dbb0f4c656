"""Authentication (bearer tokens -> users) and the review APIs: TokenReview, SelfSubjectReview,
SubjectAccessReview, SelfSubjectAccessReview and LocalSubjectAccessReview.

Why: evalkube's API authenticates its callers with TokenReview and authorizes them with
SubjectAccessReview, and the chart's RBAC must be proven by a server that enforces it. Bodies,
status codes and messages follow pkg/registry/authentication and pkg/registry/authorization.

Tokens are opaque strings registered by the tests (a static token file, in cluster terms):
`add_token` for users, `add_service_account_token` for service accounts (the username and groups
the ServiceAccount token authenticator gives; the uid is the ServiceAccount's, if it is stored).
Tokens written into kubeconfigs by `KubeEmulator.write_kubeconfig` and not registered otherwise
are superusers (`system:masters`), so the tests' admin clients keep working under enforcement;
a registration always wins over that. Every authenticated user also gets `system:authenticated`,
as the apiserver's group adder does. Tokens are audience-agnostic, so a TokenReview's
status.audiences echoes the requested audiences (or the API's own).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from . import errors
from .rbac import (
    ANONYMOUS,
    AUTHENTICATED,
    SERVICE_ACCOUNT_PREFIX,
    SUPERUSER_GROUP,
    UNAUTHENTICATED,
    Attributes,
    RBACAuthorizer,
    UserInfo,
)

if TYPE_CHECKING:
    from .store import Store

API_AUDIENCES = ("https://kubernetes.default.svc.cluster.local",)
KUBECONFIG_USER = "kubernetes-admin"  # what kind/kubeadm name the admin kubeconfig's user
INVALID_TOKEN = "invalid bearer token"  # bearertoken.go, when no token authenticator knows the token


def unauthorized() -> errors.ApiError:
    """apierrors.NewUnauthorized("Unauthorized"), as filters.Unauthorized answers."""
    return errors.ApiError(401, "Unauthorized", "Unauthorized")


class Authenticator:
    """Bearer token -> UserInfo. Thread-safe; survives the emulator's stop/start."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users: dict[str, UserInfo] = {}
        self._service_accounts: dict[str, tuple[str, str]] = {}
        self._issued: set[str] = set()

    def add_token(
        self,
        token: str,
        username: str,
        groups: Iterable[str] = (),
        uid: str | None = None,
        extra: Mapping[str, Iterable[str]] | None = None,
    ) -> UserInfo:
        all_groups = tuple(dict.fromkeys([*groups, AUTHENTICATED]))
        user = UserInfo(username, uid or "", all_groups, {k: tuple(v) for k, v in (extra or {}).items()})
        with self._lock:
            self._service_accounts.pop(token, None)
            self._users[token] = user
        return user

    def add_service_account_token(self, token: str, namespace: str, name: str) -> None:
        with self._lock:
            self._users.pop(token, None)
            self._service_accounts[token] = (namespace, name)

    def issue(self, token: str) -> None:
        """A kubeconfig token: a superuser unless the token is (or gets) registered."""
        with self._lock:
            self._issued.add(token)

    def remove_token(self, token: str) -> None:
        with self._lock:
            self._users.pop(token, None)
            self._service_accounts.pop(token, None)
            self._issued.discard(token)

    def authenticate(self, token: str | None, store: Store) -> UserInfo | None:
        if not token:
            return None
        with self._lock:
            user = self._users.get(token)
            sa = self._service_accounts.get(token)
            issued = token in self._issued
        if user is not None:
            return user
        if sa is not None:
            namespace, name = sa
            stored = store.find("", "serviceaccounts", namespace, name)
            return UserInfo(
                f"{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}",
                (stored or {}).get("metadata", {}).get("uid", ""),
                ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", AUTHENTICATED),
            )
        if issued:
            return UserInfo(KUBECONFIG_USER, "", (SUPERUSER_GROUP, AUTHENTICATED))
        return None


ANONYMOUS_USER = UserInfo(ANONYMOUS, "", (UNAUTHENTICATED,))


def _review(body: Any, kind: str, group: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise errors.bad_request(f"the body of the request must be a {kind} object")
    spec = body.get("spec")
    if spec is not None and not isinstance(spec, dict):
        raise errors.bad_request(f"{kind}.spec must be an object")
    for key, expected in (("apiVersion", f"{group}/v1"), ("kind", kind)):
        if body.get(key) and body[key] != expected:
            raise errors.bad_request(
                f"the {key} in the data ({body[key]}) does not match the expected {key} ({expected})"
            )
    meta = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}
    kept = {k: v for k, v in meta.items() if k in ("name", "generateName", "labels", "annotations")}
    return {"kind": kind, "apiVersion": f"{group}/v1", "metadata": kept, "spec": spec or {}}


def _invalid(kind: str, group: str, causes: list[dict[str, str]]) -> errors.ApiError:
    return errors.invalid(kind, group, "", causes)


def _attributes_from_spec(spec: Mapping[str, Any], user: UserInfo, kind: str, group: str) -> Attributes:
    """AuthorizationAttributesFrom: exactly one of resourceAttributes / nonResourceAttributes."""
    resource, non_resource = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
    causes = []
    if resource is not None and non_resource is not None:
        causes.append(
            errors.cause(
                "spec.nonResourceAttributes",
                "FieldValueInvalid",
                'Invalid value: "null": cannot be specified in combination with resourceAttributes',
            )
        )
    if resource is None and non_resource is None:
        causes.append(
            errors.cause(
                "spec.resourceAttributes",
                "FieldValueInvalid",
                'Invalid value: "null": exactly one of nonResourceAttributes or resourceAttributes must be specified',
            )
        )
    if kind in ("SubjectAccessReview", "LocalSubjectAccessReview") and not user.username and not user.groups:
        causes.append(
            errors.cause(
                "spec.user", "FieldValueInvalid", 'Invalid value: "": at least one of user or group must be specified'
            )
        )
    if causes:
        raise _invalid(kind, group, causes)
    if resource is not None:
        return Attributes(
            user,
            str(resource.get("verb") or ""),
            True,
            str(resource.get("namespace") or ""),
            str(resource.get("group") or ""),
            str(resource.get("version") or ""),
            str(resource.get("resource") or ""),
            str(resource.get("subresource") or ""),
            str(resource.get("name") or ""),
        )
    return Attributes(user, str(non_resource.get("verb") or ""), False, path=str(non_resource.get("path") or ""))


def answer_review(
    kind: str,
    body: Any,
    requester: UserInfo | None,
    namespace: str | None,
    authenticator: Authenticator,
    authorizer: RBACAuthorizer,
    store: Store,
) -> dict[str, Any]:
    """The response body (201) of one review; `requester` is who sent it (None: unauthenticated)."""
    if kind in ("TokenReview", "SelfSubjectReview"):
        group = "authentication.k8s.io"
        review = _review(body, kind, group)
        if kind == "SelfSubjectReview":
            review.pop("spec", None)
            review["status"] = {"userInfo": (requester or ANONYMOUS_USER).to_json()}
            return review
        spec = review["spec"]
        token = spec.get("token")
        if not token:
            raise errors.bad_request("token is required for TokenReview in authentication")
        user = authenticator.authenticate(str(token), store)
        if user is None:
            review["status"] = {"user": {}, "error": INVALID_TOKEN}
        else:
            review["status"] = {
                "authenticated": True,
                "user": user.to_json(),
                "audiences": list(spec.get("audiences") or API_AUDIENCES),
            }
        return review
    group = "authorization.k8s.io"
    review = _review(body, kind, group)
    spec = review["spec"]
    if kind == "SelfSubjectAccessReview":
        subject = requester or ANONYMOUS_USER
    else:
        extra = spec.get("extra") or {}
        subject = UserInfo(
            str(spec.get("user") or ""),
            str(spec.get("uid") or ""),
            tuple(spec.get("groups") or ()),
            {k: tuple(v or ()) for k, v in extra.items()} if isinstance(extra, dict) else {},
        )
    attrs = _attributes_from_spec(spec, subject, kind, group)
    if kind == "LocalSubjectAccessReview":
        review["metadata"]["namespace"] = namespace
        if spec.get("nonResourceAttributes") is not None:
            raise _invalid(
                kind,
                group,
                [
                    errors.cause(
                        "spec.nonResourceAttributes",
                        "FieldValueInvalid",
                        'Invalid value: "null": disallowed on this kind of request',
                    )
                ],
            )
        if attrs.namespace != namespace:
            raise _invalid(
                kind,
                group,
                [
                    errors.cause(
                        "spec.resourceAttributes.namespace",
                        "FieldValueInvalid",
                        f'Invalid value: "{attrs.namespace}": must match metadata.namespace',
                    )
                ],
            )
    allowed, reason = authorizer.authorize(attrs)
    status: dict[str, Any] = {"allowed": allowed}
    if reason:
        status["reason"] = reason
    review["status"] = status
    return review
