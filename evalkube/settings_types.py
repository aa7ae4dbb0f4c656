"""Setting types the API and the operator share: read from the same environment variables, parsed
by the same code (the chart renders one value into both components)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator
from pydantic_settings import NoDecode

from evalkube.policy import Policy, parse_policy
from evalkube.volumes import SharedVolume, parse_shared_volumes


def split_csv(value: Any) -> Any:
    """`a, b,c` -> ["a", "b", "c"]; anything but a string passes as it is."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


#: A comma-separated list (EVALKUBE_NAMESPACES, EVALKUBE_API_NAMESPACES, ...).
CommaList = Annotated[list[str], NoDecode, BeforeValidator(split_csv)]
#: EVALKUBE_SHARED_VOLUMES: a JSON list of {claimName, mountPath, readOnly, subPath}.
SharedVolumes = Annotated[list[SharedVolume], NoDecode, BeforeValidator(parse_shared_volumes)]
#: EVALKUBE_POLICY: a JSON object (see evalkube.policy).
PolicySetting = Annotated[Policy, NoDecode, BeforeValidator(parse_policy)]
