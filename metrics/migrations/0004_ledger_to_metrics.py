"""The Realtime cost ledger's models move from fallback to metrics: state only, the tables stay."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('metrics', '0003_history_and_token_expiry'),
        ('fallback', '0005_one_decision_per_session'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='CostBucket',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('minute', models.DateTimeField(unique=True, verbose_name='minute')),
                        ('usd', models.DecimalField(decimal_places=6, default=0, max_digits=14, verbose_name='USD')),
                    ],
                    options={
                        'verbose_name': 'cost per minute',
                        'verbose_name_plural': 'cost per minute',
                        'db_table': 'fallback_costbucket',
                        'ordering': ['-minute'],
                    },
                ),
                migrations.CreateModel(
                    name='CostReservation',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('session_id', models.CharField(max_length=64, unique=True, verbose_name='session id')),
                        ('usd', models.DecimalField(decimal_places=6, max_digits=14, verbose_name='reserved USD')),
                        ('consumed_usd', models.DecimalField(decimal_places=6, default=0, max_digits=14, verbose_name='spent so far, USD')),
                        ('created_at', models.DateTimeField(db_index=True, verbose_name='reserved at')),
                        ('expires_at', models.DateTimeField(db_index=True, verbose_name='expires at')),
                        ('settled_at', models.DateTimeField(blank=True, null=True, verbose_name='settled at')),
                    ],
                    options={
                        'verbose_name': 'cost reservation',
                        'verbose_name_plural': 'cost reservations',
                        'db_table': 'fallback_costreservation',
                        'ordering': ['-created_at'],
                    },
                ),
            ],
            database_operations=[],
        ),
    ]
