"""python manage.py sync_firewall [--dry-run]: print the plan for the zone's custom rules, then apply it."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from certificates.cloudflare_client import get_zone_id
from certificates.firewall.sync import FirewallSyncError, Plan, firewall_sync
from cloudflare.errors import CloudflareError


class Command(BaseCommand):
    help = "Make the zone's custom rules (those with the portal's ref prefix) equal to the database."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="print the plan and change nothing")

    def handle(self, *args: Any, dry_run: bool, **options: Any) -> None:
        zone_id = get_zone_id()
        try:
            plan = firewall_sync(zone_id=zone_id, dry_run=dry_run)
        except (FirewallSyncError, CloudflareError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(render_plan(plan))
        if plan.is_empty:
            self.stdout.write("Nothing to change.")
        elif dry_run:
            self.stdout.write("Dry run: nothing was changed.")
        else:
            self.stdout.write(self.style.SUCCESS("Applied."))


def render_plan(plan: Plan) -> str:
    lines = [
        f"Zone {plan.zone_id}: {len(plan.add)} to add, {len(plan.update)} to update, "
        f"{len(plan.delete)} to delete, {plan.unchanged} unchanged; {plan.foreign_rules} rules not the portal's."
    ]
    for rule in plan.add:
        lines += [f"+ add {rule.ref}  ({rule.description})", f"    {rule.expression}"]
    for current, desired in plan.update:
        lines += [f"~ update {desired.ref} (rule {current.id})  ({desired.description})", f"    {desired.expression}"]
    # One name per loop: plan.add holds DesiredRules, the lists below Cloudflare's Rules.
    for deleted in plan.delete:
        lines.append(f"- delete {deleted.ref}")
    for moved in plan.moves:
        lines.append(f"^ move {moved.ref} to the top")
    for foreign in plan.foreign_above:
        skips = ", skips the remaining rules" if foreign.skips_remaining_rules else ""
        lines.append(f"! {foreign.ref} ({foreign.action}{skips}) is not the portal's and sits above its rules")
    if plan.left_out:
        users = ", ".join(str(user) for user in plan.left_out.user_ids) or "none"
        lines.append(
            f"! left out: {plan.left_out.allow_ranges} allow range(s), the allowlists of user(s) {users}: "
            f"{plan.left_out.reason}"
        )
    return "\n".join(lines)
