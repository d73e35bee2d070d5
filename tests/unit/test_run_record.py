"""RunRecord: the one shape of result.json at the start of a session, new or resumed."""

from __future__ import annotations

from agent.report import RunRecord
from agent.result_schema import ResultDocument

NEW = RunRecord(
    run_id="r1",
    started_at="2026-01-01T00:00:00.000Z",
    target="ssh://azureuser@vm:22",
    playbook="generalize",
    profile="auto",
    journal_file="journal.jsonl",
    sessions=({"session": 1, "started_at": "2026-01-01T00:00:00.000Z"},),
)


def test_a_new_run_starts_with_the_eighteen_keys_in_order() -> None:
    """The keys and their order are those the runner wrote before RunRecord existed."""
    assert list(NEW.to_dict()) == [
        "run_id", "tool_version", "started_at", "finished_at", "status", "target",
        "playbook", "profile", "backup", "backup_waiver", "point_of_no_return_reached",
        "powered_off", "facts", "plan", "steps", "log_file", "journal_file", "sessions",
    ]  # fmt: skip


def test_a_resumed_run_names_its_plan_files_after_the_profile() -> None:
    """With the plan known up front, profile_file and playbook_file follow "profile"."""
    record = RunRecord(**{**NEW.__dict__, "plan_files": ("p.yaml", "g.yaml")})
    keys = list(record.to_dict())
    assert keys[keys.index("profile") + 1 : keys.index("profile") + 3] == [
        "profile_file",
        "playbook_file",
    ]


def test_the_record_is_a_valid_result_document() -> None:
    """What a session starts with already satisfies result.json's contract."""
    ResultDocument.model_validate({"schema_version": 1, **NEW.to_dict()})


def test_the_current_session_is_shared_not_copied() -> None:
    """The runner adds facts to the session entry later: result.json must see them."""
    session: dict[str, object] = {"session": 2, "started_at": "t"}
    data = RunRecord(**{**NEW.__dict__, "sessions": (session,)}).to_dict()
    session["facts"] = {"os": {"id": "debian"}}
    assert data["sessions"][0]["facts"] == {"os": {"id": "debian"}}
