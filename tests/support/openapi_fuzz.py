"""Schemathesis cases of one OpenAPI operation, sent with a role's headers (shared by the
gateway and region-app fuzz tests)."""

from __future__ import annotations


def fuzz(op: object, headers: dict[str, str], calls: list[int], failures: list[tuple[str, str, int]]) -> None:
    """Schemathesis cases of one operation, sent with `headers`; 5xx answers land in `failures`."""
    from hypothesis import HealthCheck, given, settings

    @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(case=op.as_strategy())  # type: ignore[attr-defined]
    def check(case: object) -> None:
        response = case.call(headers=headers)  # type: ignore[attr-defined]
        calls.append(response.status_code)
        if response.status_code >= 500:
            failures.append((case.method, case.path, response.status_code))  # type: ignore[attr-defined]

    check()
