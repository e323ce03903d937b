"""Strong entity tags for tasks, derived from the version every change increments."""


def etag(version: int) -> str:
    return f'"{version}"'


def _strong_versions(header: str) -> frozenset[int]:
    """The versions named by strong tags; weak (W/) or foreign tags never match."""
    versions = set()
    for tag in header.split(","):
        tag = tag.strip()
        if len(tag) >= 3 and tag[0] == tag[-1] == '"' and tag[1:-1].isdigit():
            versions.add(int(tag[1:-1]))
    return frozenset(versions)


def if_match_versions(header: str | None) -> frozenset[int] | None:
    """None when the write is unconditional (no header, or `*`: any current version)."""
    if header is None or header.strip() == "*":
        return None
    return _strong_versions(header)


def none_match(header: str | None, version: int) -> bool:
    """True when If-None-Match names the current version (or `*`): answer 304."""
    if header is None:
        return False
    if header.strip() == "*":
        return True
    # If-None-Match uses the weak comparison: W/"3" matches "3".
    return version in _strong_versions(header.replace('W/"', '"'))
