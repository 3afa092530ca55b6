"""The reception workflow around its conversations: a restart resumes, tool calls with bad arguments get a
structured error, how a visit ends and stays ended, unreachable hosts, forgetting a conversation, and the
PostgreSQL checkpointer."""

from __future__ import annotations

import pytest
from django.core import mail

from reception.models import HostNotification, StaffMember, Visit
from reception.workflow import ReceptionWorkflow, reset_checkpointer
from tests.reception.test_reception_conversations import ONE_SENTENCE_EN, ONE_SENTENCE_JA


@pytest.mark.django_db
def test_resume_after_process_restart_asks_nothing_twice(workflow, kiosk):
    session_id = "resume-1"
    workflow.start(session_id, "ja", kiosk.pk)
    asked = workflow.handle_text(session_id, "テスト株式会社の山田です")
    assert "ご用件" in asked.reply

    reset_checkpointer()  # simulated restart: new checkpointer, new workflow object
    restarted = ReceptionWorkflow()
    resumed = restarted.start(session_id, "ja", kiosk.pk)
    assert resumed.resumed is True
    assert resumed.reply == asked.reply
    assert "いらっしゃいませ" not in resumed.reply
    assert resumed.visit["visitor_name"] == "山田" and resumed.visit["company_name"] == "テスト株式会社"

    nxt = restarted.handle_text(session_id, "打ち合わせです")
    assert "お名前" not in nxt.reply and "会社名" not in nxt.reply
    assert "担当者" in nxt.reply
    assert Visit.objects.filter(session_id=session_id).count() == 1
    assert restarted.snapshot(session_id).visit["purpose"] == "打ち合わせ"


@pytest.mark.django_db
def test_start_twice_on_the_same_process_does_not_greet_again(workflow, kiosk):
    workflow.start("twice", "en", kiosk.pk)
    workflow.handle_text("twice", "My name is Jane Doe")
    again = workflow.start("twice", "en", kiosk.pk)
    assert again.resumed and "your company name" in again.reply
    states = [m for m in workflow._state("twice")["messages"] if m["role"] == "assistant" and "Welcome" in m["text"]]
    assert len(states) == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("name", "arguments", "error", "detail"),
    [
        ("book_taxi", {}, "unknown_tool", None),
        ("collect_visitor_info", {"visitor_name": 42}, "invalid_arguments", "visitor_name"),
        ("collect_visitor_info", {"visitor_name": "A", "age": "3"}, "invalid_arguments", "age"),
        ("collect_visitor_info", {}, "invalid_arguments", "*"),
        ("collect_visitor_info", "not a dict", "invalid_arguments", None),
        ("confirm_visitor_info", {"confirmed": "yes"}, "invalid_arguments", "confirmed"),
        ("confirm_visitor_info", {}, "invalid_arguments", "confirmed"),
        ("confirm_visitor_info", {"confirmed": True}, "not_expected", None),
        ("choose_host", {"department": "Sales"}, "not_expected", None),
    ],
)
def test_invalid_tool_calls_get_a_structured_error(workflow, kiosk, name, arguments, error, detail):
    workflow.start("tools-bad", "en", kiosk.pk)
    result = workflow.handle_tool_call("tools-bad", name, arguments)
    assert result.turn is None
    assert result.output["ok"] is False and result.output["error"] == error
    assert result.output["message"]
    if detail:
        assert detail in result.output["details"]
    # The conversation is untouched: still collecting, nothing filled in.
    assert workflow.snapshot("tools-bad").visit["status"] == "collecting"


@pytest.mark.django_db
def test_tool_output_tells_the_model_what_is_missing(workflow, kiosk):
    workflow.start("tools-ok", "ja", kiosk.pk)
    result = workflow.handle_tool_call(
        "tools-ok", "collect_visitor_info", {"visitor_name": "山田太郎", "purpose": None}
    )
    assert result.output["missing"] == ["company_name", "purpose", "host_name"]
    assert result.output["awaiting"] == "company_name"
    assert result.output["visit"]["visitor_name"] == "山田太郎"


@pytest.mark.django_db
def test_end_marks_an_unfinished_visit_ended(workflow, kiosk):
    workflow.start("ending", "ja", kiosk.pk)
    workflow.handle_text("ending", "テスト株式会社の山田です")
    visit_id = workflow.end("ending", "visitor left")
    visit = Visit.objects.get(pk=visit_id)
    assert visit.status == Visit.Status.ENDED and visit.completed_at is not None
    assert workflow.snapshot("ending").finished is True
    assert workflow.end("unknown-session", "x") is None


@pytest.mark.django_db
def test_end_keeps_a_finished_visit_as_it_is(workflow, kiosk):
    workflow.start("done", "ja", kiosk.pk)
    workflow.handle_text("done", "お届け物です")
    visit_id = workflow.end("done", "closed")
    assert Visit.objects.get(pk=visit_id).status == Visit.Status.DELIVERY_GUIDED


@pytest.mark.django_db
def test_a_visit_row_deleted_mid_conversation_is_written_again(workflow, kiosk):
    workflow.start("purged", "ja", kiosk.pk)
    workflow.handle_text("purged", "テスト株式会社の山田です")
    Visit.objects.filter(session_id="purged").delete()  # e.g. an over-eager purge
    workflow.handle_text("purged", "打ち合わせです")
    visit = Visit.objects.get(session_id="purged")
    assert (visit.visitor_name, visit.company_name, visit.purpose) == ("山田", "テスト株式会社", "打ち合わせ")


@pytest.mark.django_db
def test_the_visit_is_completed_once_and_stays_so(workflow, kiosk):
    workflow.start("completed", "ja", kiosk.pk)
    workflow.handle_text("completed", "テスト株式会社の山田です")
    visit = Visit.objects.get(session_id="completed")
    assert visit.completed_at is None
    workflow.handle_text("completed", "お届け物です")
    completed = Visit.objects.get(session_id="completed")
    assert completed.completed_at is not None and completed.updated_at > visit.updated_at
    workflow.handle_text("completed", "すみません、もう一度")  # speaking after the end
    assert Visit.objects.get(session_id="completed").completed_at == completed.completed_at


@pytest.mark.django_db
def test_unreachable_host_sends_visitor_to_desk_honestly(workflow, kiosk, directory):
    StaffMember.objects.filter(pk=directory["sato"].pk).update(email="")
    workflow.start("unreach", "en", kiosk.pk)
    workflow.handle_text("unreach", ONE_SENTENCE_EN)
    result = workflow.handle_text("unreach", "yes")
    assert "could not reach Ken Sato" in result.reply
    assert result.visit["status"] == "sent_to_desk"
    failed = HostNotification.objects.get(recipient=directory["sato"])
    # A host with no address is known unreachable before any attempt: the desk is queued in the same turn.
    assert failed.status == HostNotification.Status.FAILED and failed.attempts == 0
    assert failed.last_error == "no e-mail address"
    assert [m.to for m in mail.outbox] == [["desk@example.com"]]


@pytest.mark.django_db
def test_nobody_reachable_is_said_plainly(workflow, kiosk, directory):
    StaffMember.objects.update(email="")
    workflow.start("nobody", "ja", kiosk.pk)
    workflow.handle_text("nobody", ONE_SENTENCE_JA)
    result = workflow.handle_text("nobody", "はい")
    assert "連絡がつきませんでした" in result.reply and "受付カウンターのスタッフ" in result.reply
    assert not Visit.objects.get(session_id="nobody").host_notified


@pytest.mark.django_db
def test_handle_text_without_start_still_works(workflow):
    result = workflow.handle_text("no-start", "I have a delivery")
    assert result.visit["visitor_type"] == "delivery" and result.finished


@pytest.mark.django_db
def test_forget_deletes_the_conversation_but_keeps_the_visit(workflow, kiosk):
    workflow.start("forget-me", "ja", kiosk.pk)
    workflow.handle_text("forget-me", "テスト株式会社の山田です")
    workflow.forget("forget-me")
    assert workflow.snapshot("forget-me") is None
    assert Visit.objects.get(session_id="forget-me").visitor_name == "山田"


def django_database(database_url: str) -> dict:
    """Django's DATABASES entry for a database URL, as the settings make it."""
    import environ

    return environ.Env.db_url_config(database_url)


@pytest.mark.postgres
def test_workers_starting_together_on_a_fresh_postgres_database_all_set_up_the_checkpointer(tmp_path):
    """Each worker's warm-up sets the checkpoint tables up; several at once on a fresh database used to fail all but
    one with UniqueViolation (seen with two `make serve` workers). Threads have a connection each, as processes do."""
    import threading

    from reception.workflow import checkpoint
    from tests.support.live_server import throwaway_database

    workers = 8
    with throwaway_database("postgres", tmp_path) as database_url:
        database, start, results = django_database(database_url), threading.Barrier(workers), []

        def start_worker() -> None:
            start.wait()
            try:
                results.append(checkpoint._create_postgres(database))
            except Exception as error:  # the failure is the test's finding
                results.append(error)

        threads = [threading.Thread(target=start_worker) for _ in range(workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        for result in results:
            if not isinstance(result, Exception):
                result[1]()  # close the pool before the database is dropped
    failures = [repr(result) for result in results if isinstance(result, Exception)]
    assert len(results) == workers and not failures, failures


@pytest.mark.postgres
@pytest.mark.django_db
def test_postgres_checkpointer_survives_a_restart(workflow, kiosk, tmp_path, monkeypatch):
    from reception.workflow import checkpoint
    from tests.support.live_server import throwaway_database

    with throwaway_database("postgres", tmp_path) as database_url:
        database = django_database(database_url)
        monkeypatch.setattr(checkpoint, "_create", lambda: checkpoint._create_postgres(database))
        try:
            reset_checkpointer()
            assert type(checkpoint.get_checkpointer()).__name__ == "PostgresSaver"
            workflow.start("pg-1", "en", kiosk.pk)
            asked = workflow.handle_text("pg-1", "My name is Jane Doe")
            reset_checkpointer()  # simulated restart
            resumed = ReceptionWorkflow().start("pg-1", "en", kiosk.pk)
            assert resumed.resumed and resumed.reply == asked.reply
            assert resumed.visit["visitor_name"] == "Jane Doe"
        finally:
            reset_checkpointer()  # closes the pool before the database is dropped


@pytest.mark.django_db
def test_speaking_after_the_end_repeats_where_to_wait(workflow_settings, appointments):
    """A visitor who missed the closing words (e.g. the voice path changed) hears them again."""
    from reception import workflow

    workflow.start("after-end", "ja", None)
    workflow.handle_text("after-end", "株式会社テストの山田太郎です。鈴木さんと10時にお約束があります。")
    closing = workflow.handle_text("after-end", "はい")
    assert closing.finished
    again = workflow.handle_text("after-end", "はい")
    assert again.reply.startswith("受付は完了しております。")
    assert again.reply.endswith(closing.reply)
    assert again.visit == closing.visit
