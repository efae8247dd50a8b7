"""Indexes for the queries the portal runs at scale (issue #12, point 1); each is explained beside it in
certificates/models.py, and tests/certificates/test_query_plans.py checks that no hot query reads a large table
sequentially. The foreign keys' own indexes go: an index in Meta leads with each of them."""

import django.db.models.deletion
import django.db.models.fields.json
from django.conf import settings
from django.db import migrations, models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

# Admin search by the owner's email prefix (certificates.admin.owner_ids_by_email_prefix): Django's istartswith is
# UPPER("email"::text) LIKE UPPER('prefix%'); text_pattern_ops lets a LIKE prefix use the index whatever the
# database's collation. The users table belongs to django.contrib.auth, so the index is made here, by hand.
EMAIL_PREFIX_INDEX = "certificates_user_email_upper_prefix"


def _user_table(apps: StateApps) -> str:
    app_label, model_name = settings.AUTH_USER_MODEL.split(".")
    table: str = apps.get_model(app_label, model_name)._meta.db_table
    return table


def create_email_prefix_index(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return  # SQLite (development, tests without services) has no pattern opclasses and no table to speak of
    table = schema_editor.quote_name(_user_table(apps))
    schema_editor.execute(
        f"CREATE INDEX IF NOT EXISTS {EMAIL_PREFIX_INDEX} ON {table} (UPPER(email::text) text_pattern_ops)"
    )


def drop_email_prefix_index(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {EMAIL_PREFIX_INDEX}")


class Migration(migrations.Migration):
    dependencies = [
        ("certificates", "0011_reconcile_sweep"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        # Certificates.
        migrations.AddIndex(
            model_name="certificate",
            index=models.Index(fields=["created_at", "id"], name="certificate_created"),
        ),
        migrations.AddIndex(
            model_name="certificate",
            index=models.Index(fields=["status", "created_at", "id"], name="certificate_status_created"),
        ),
        migrations.AddIndex(
            model_name="certificate",
            index=models.Index(fields=["expires_on"], name="certificate_expires_on"),
        ),
        migrations.AddIndex(
            model_name="certificate",
            index=models.Index(
                condition=models.Q(("status__in", ("active", "pending_reactivation"))),
                fields=["expires_on"],
                include=("zone_id", "status"),
                name="certificate_usable_expiry",
            ),
        ),
        migrations.AddIndex(
            model_name="certificate",
            index=models.Index(
                condition=models.Q(("status__in", ("pending_revocation", "pending_reactivation"))),
                fields=["zone_id"],
                name="certificate_zone_pending",
            ),
        ),
        migrations.AddIndex(
            model_name="certificate",
            index=models.Index(
                condition=models.Q(
                    ("authority__isnull", True),
                    ("status__in", ("issuing", "unconfirmed", "active", "pending_reactivation")),
                ),
                fields=["zone_id"],
                name="certificate_zone_slots",
            ),
        ),
        migrations.AddIndex(
            model_name="certificate",
            index=models.Index(fields=["serial_number"], name="certificate_serial"),
        ),
        migrations.AddIndex(
            model_name="certificate",
            index=models.Index(
                condition=models.Q(("cloudflare_id", ""), _negated=True),
                fields=["cloudflare_id"],
                name="certificate_cloudflare_id",
            ),
        ),
        # Replaced by the partial indexes above (polling, the zone's room) and by (status, created_at, id).
        migrations.RemoveIndex(model_name="certificate", name="certificate_zone_status"),
        # Served by certificate_owner_status / certificate_owner_created and certificate_authority_status.
        migrations.AlterField(
            model_name="certificate",
            name="owner",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="certificates",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AlterField(
            model_name="certificate",
            name="authority",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="certificates",
                to="certificates.certificateauthority",
            ),
        ),
        # The audit log.
        migrations.AddIndex(
            model_name="auditevent",
            index=models.Index(fields=["created_at", "id"], name="audit_created"),
        ),
        migrations.AddIndex(
            model_name="auditevent",
            index=models.Index(fields=["action", "created_at", "id"], name="audit_action_created"),
        ),
        migrations.AddIndex(
            model_name="auditevent",
            index=models.Index(fields=["actor", "created_at"], name="audit_actor_created"),
        ),
        migrations.AddIndex(
            model_name="auditevent",
            index=models.Index(
                django.db.models.fields.json.KeyTransform("user_id", "detail"),
                models.OrderBy(models.F("created_at"), descending=True),
                condition=models.Q(("action", "allowlist.changed")),
                name="audit_allowlist_user",
            ),
        ),
        # Served by audit_actor_created and audit_certificate_created.
        migrations.AlterField(
            model_name="auditevent",
            name="actor",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AlterField(
            model_name="auditevent",
            name="certificate",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="events",
                to="certificates.certificate",
            ),
        ),
        # Tokens, allowlists, unknown certificates: the admin's lists.
        migrations.AddIndex(
            model_name="apitoken",
            index=models.Index(fields=["created_at", "id"], name="token_created"),
        ),
        migrations.AddIndex(
            model_name="allowlistentry",
            index=models.Index(fields=["network", "id"], name="allowlist_network"),
        ),
        # Served by the unique (owner, network).
        migrations.AlterField(
            model_name="allowlistentry",
            name="owner",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="allowlist",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AddIndex(
            model_name="unknowncertificate",
            index=models.Index(fields=["last_seen_at", "id"], name="unknown_certificate_last_seen"),
        ),
        # The users' email addresses, for the admin's prefix search.
        migrations.RunPython(create_email_prefix_index, drop_email_prefix_index),
    ]
