"""Strong entity tags for tasks, derived from the version every change increments.

`If-Match` and `If-None-Match` are parsed strictly: `*`, or up to MAX_TAGS tags of the form
`"3"` (If-None-Match also takes `W/"3"`). Anything else is a 422 that names the header and shows
the expected form, so a client's mistake (an unquoted version, say) is never mistaken for a
conflict (412).
"""

import re

from api.problems import invalid_input, shown

MAX_TAGS = 8
MAX_HEADER_LENGTH = 256
VERSION_MAX = 2**31 - 1  # the version column is an integer
_TAG = re.compile(r'(W/)?"([0-9]{1,10})"')
# In OpenAPI: what clients should send (versions up to 9 digits, so always within VERSION_MAX).
_TAG_SCHEMA_TEXT = r'"[0-9]{1,9}"'
_WEAK_TAG_SCHEMA_TEXT = "(W/)?" + _TAG_SCHEMA_TEXT


def _tag_list_pattern(tag: str) -> str:
    return rf"^\s*(\*|{tag}(\s*,\s*{tag}){{0,{MAX_TAGS - 1}}})\s*$"


IF_MATCH_PATTERN = _tag_list_pattern(_TAG_SCHEMA_TEXT)
IF_NONE_MATCH_PATTERN = _tag_list_pattern(_WEAK_TAG_SCHEMA_TEXT)
IF_MATCH_SCHEMA = {"type": "string", "maxLength": MAX_HEADER_LENGTH, "pattern": IF_MATCH_PATTERN}
IF_NONE_MATCH_SCHEMA = {**IF_MATCH_SCHEMA, "pattern": IF_NONE_MATCH_PATTERN}
_EXPECTED = 'send ETags as the ETag header gave them, e.g. "3" (with the double quotes)'


def etag(version: int) -> str:
    return f'"{version}"'


def _versions(header: str, value: str, *, weak_allowed: bool) -> frozenset[int] | None:
    """The versions `value` names; None for `*`. Raises a 422 for anything malformed."""
    if len(value) > MAX_HEADER_LENGTH:
        raise invalid_input(
            "header", header, f"is longer than {MAX_HEADER_LENGTH} characters; {_EXPECTED}"
        )
    if value.strip() == "*":
        return None
    tags = [tag.strip() for tag in value.split(",")]
    if tags == [""]:
        raise invalid_input("header", header, f"is empty; leave the header out, or {_EXPECTED}")
    if len(tags) > MAX_TAGS:
        raise invalid_input("header", header, f"names more than {MAX_TAGS} ETags; {_EXPECTED}")
    versions = set()
    for tag in tags:
        match = _TAG.fullmatch(tag)
        if match is None:
            raise invalid_input(
                "header", header, f"has {shown(tag)}, which is not an ETag; {_EXPECTED}"
            )
        if match.group(1) and not weak_allowed:
            raise invalid_input("header", header, f"takes strong ETags only (no W/); {_EXPECTED}")
        version = int(match.group(2))
        if version > VERSION_MAX:
            raise invalid_input(
                "header", header, f"names a version this service never sent; {_EXPECTED}"
            )
        versions.add(version)
    return frozenset(versions)


def if_match_versions(header: str | None) -> frozenset[int] | None:
    """None when the write is unconditional (no header, or `*`: any current version)."""
    if header is None:
        return None
    return _versions("If-Match", header, weak_allowed=False)


def none_match(header: str | None, version: int) -> bool:
    """True when If-None-Match names the current version (or `*`): answer 304.

    If-None-Match uses the weak comparison: W/"3" matches "3".
    """
    if header is None:
        return False
    versions = _versions("If-None-Match", header, weak_allowed=True)
    return versions is None or version in versions
