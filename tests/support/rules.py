"""Rules other teams put in the zone, for tests of what the portal's rules meet there (FACTS.md §14)."""

from __future__ import annotations

from typing import Any

from cloudflare.models import RuleSpec


class SkipRemaining(RuleSpec):
    """A `skip` rule that skips all remaining custom rules (`action_parameters: {"ruleset": "current"}`).

    The portal never writes one, so RuleSpec carries no action_parameters; the request body is completed here.
    """

    def __init__(self, *, ref: str, expression: str, description: str = "") -> None:
        super().__init__(ref=ref, expression=expression, description=description, action="skip")

    def to_api(self) -> dict[str, Any]:
        return {**super().to_api(), "action_parameters": {"ruleset": "current"}}


# An operator's "skip everything for the monitoring range".
MONITORING = "198.51.100.0/24"
MONITORING_SKIP = SkipRemaining(ref="ops_monitoring_skip", expression=f"ip.src in {{{MONITORING}}}")
