"""API tokens get an expiry and a scope.

Tokens made before this migration were promised to last for ever. They get API_TOKEN_DEFAULT_DAYS from the
moment of the migration, not from their creation: counting from created_at would switch off, at deploy time
and without warning, every script using a token older than that, while counting from now gives their owners
the same notice a new token has (the tokens page shows the date). They stay read-write, as they were.
"""

from datetime import timedelta

from django.conf import settings
from django.db import migrations, models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps
from django.utils import timezone


def give_existing_tokens_the_default_lifetime(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    ApiToken = apps.get_model("certificates", "ApiToken")
    expires_at = timezone.now() + timedelta(days=settings.API_TOKEN_DEFAULT_DAYS)
    ApiToken.objects.filter(expires_at__isnull=True).update(expires_at=expires_at)


class Migration(migrations.Migration):
    dependencies = [
        ("certificates", "0002_workers_allowlists_firewall"),
    ]

    operations = [
        migrations.AddField(
            model_name="apitoken",
            name="scope",
            field=models.CharField(
                choices=[("read_only", "read-only"), ("read_write", "read-write")], default="read_write", max_length=10
            ),
        ),
        migrations.AddField(
            model_name="apitoken",
            name="expires_at",
            field=models.DateTimeField(null=True),
        ),
        migrations.RunPython(give_existing_tokens_the_default_lifetime, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="apitoken",
            name="expires_at",
            field=models.DateTimeField(),
        ),
    ]
