"""Create the singleton rows and one row per guard; forbid UPDATE of audit rows in the database itself.

DELETE is refused by the model and its queryset only: the test runner's flush must still empty the table.
"""

from django.db import migrations

GUARDS = ["cost", "error_rate", "latency", "connection"]

SQLITE_NO_UPDATE = """
CREATE TRIGGER fallback_auditentry_no_update BEFORE UPDATE ON fallback_auditentry
BEGIN SELECT RAISE(ABORT, 'audit entries are append-only'); END;
"""
POSTGRES_NO_UPDATE = """
CREATE FUNCTION fallback_auditentry_no_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'audit entries are append-only'; END $$;
CREATE TRIGGER fallback_auditentry_no_update BEFORE UPDATE ON fallback_auditentry
FOR EACH ROW EXECUTE FUNCTION fallback_auditentry_no_update();
"""
DROP = {
    "sqlite": "DROP TRIGGER IF EXISTS fallback_auditentry_no_update;",
    "postgresql": "DROP TRIGGER IF EXISTS fallback_auditentry_no_update ON fallback_auditentry;"
    " DROP FUNCTION IF EXISTS fallback_auditentry_no_update();",
}


def create_rows(apps, schema_editor):
    apps.get_model("fallback", "RolloutConfig").objects.get_or_create(pk=1)
    apps.get_model("fallback", "EmergencyState").objects.get_or_create(pk=1)
    guard_state = apps.get_model("fallback", "GuardState")
    for name in GUARDS:
        guard_state.objects.get_or_create(name=name)


def add_trigger(apps, schema_editor):
    sql = {"sqlite": SQLITE_NO_UPDATE, "postgresql": POSTGRES_NO_UPDATE}.get(schema_editor.connection.vendor)
    if sql:
        schema_editor.execute(sql)


def drop_trigger(apps, schema_editor):
    sql = DROP.get(schema_editor.connection.vendor)
    if sql:
        schema_editor.execute(sql)


class Migration(migrations.Migration):
    dependencies = [("fallback", "0001_initial")]

    operations = [
        migrations.RunPython(create_rows, migrations.RunPython.noop),
        migrations.RunPython(add_trigger, drop_trigger),
    ]
