"""One routing decision per session: keep each session's first decision, then make session_id unique."""

from django.db import migrations, models


def keep_first_decisions(apps, schema_editor):
    """Reconnects used to be decided again; their later rows go (the first is the session's decision)."""
    RoutingDecision = apps.get_model("fallback", "RoutingDecision")
    first_ids = (
        RoutingDecision.objects.values("session_id").annotate(first=models.Min("id")).values_list("first", flat=True)
    )
    RoutingDecision.objects.exclude(id__in=list(first_ids)).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("fallback", "0004_rolloutconfig_auto_promote"),
    ]

    operations = [
        migrations.RunPython(keep_first_decisions, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="routingdecision",
            name="session_id",
            field=models.CharField(max_length=64, unique=True, verbose_name="session id"),
        ),
    ]
