"""The cost ledger's models move to metrics (state only, the tables stay); two unused fallback reasons go."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('fallback', '0005_one_decision_per_session'),
        ('metrics', '0004_ledger_to_metrics'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(name='CostBucket'),
                migrations.DeleteModel(name='CostReservation'),
            ],
            database_operations=[],
        ),
        migrations.AlterField(
            model_name='fallbackevent',
            name='reason',
            field=models.CharField(choices=[('CONNECTION_ERROR', 'connection error'), ('UPSTREAM_ERROR', 'upstream error'), ('LATENCY', 'latency'), ('COST_LIMIT', 'cost limit'), ('EMERGENCY_STOP', 'emergency stop')], max_length=20, verbose_name='reason'),
        ),
    ]
