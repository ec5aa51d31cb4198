"""``move()`` and ``move_one_each()`` against a real database (SQLite, and PostgreSQL when set)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import replace
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, literal, null, select, text
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session

from hnte import synthetic
from hnte.config.city import load_city
from hnte.models.stages import Stage, TransitionRefused
from hnte.models.tables import Application, StageEvent
from hnte.services.importing import import_applications
from hnte.services.transitions import move, move_one_each

S = Stage
BATCH = "2021-1"
AS_OF = date(2021, 6, 15)
IMPORT_DAY = date(2021, 6, 1)
# The way to public notice for an application not selected for inspection.
TO_NOTICE = (
    S.SUBMITTED,
    S.DISTRICT_REVIEW,
    S.FORMAL_CHECK,
    S.EXPERT_REVIEW,
    S.APPROVAL,
    S.PUBLIC_NOTICE,
)


MONEY_HEADERS = [h for h in synthetic.HEADERS if h.endswith(("收入", "费用"))]
RD_HEADERS = ("近一年研发费用", "第二年研发费用", "第三年研发费用")


def _small_figures(app: synthetic.SyntheticApplication) -> synthetic.SyntheticApplication:
    """The same application with every amount a thousandth as large.

    PostgreSQL's money columns are INTEGER, which overflows above 21,474,836.47 yuan
    (test_import checks that case); these tests are about moves, not amounts.
    """
    cells = dict(app.cells)
    for header in MONEY_HEADERS:
        if cells[header]:
            cells[header] = _yuan(int(Decimal(cells[header]) * 100) // 1000)
    rd = sum(Decimal(cells[h]) for h in RD_HEADERS if cells[h])
    cells["境内研发费用"] = str(min(Decimal(cells["境内研发费用"]), rd))
    return replace(app, cells=cells)


def _yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


def _import(engine: Engine, tmp_path: Path, n: int, seed: int = 7) -> list[int]:
    shares = [synthetic.DistrictShare(d.code, d.name, d.weight) for d in load_city().districts]
    apps = [
        _small_figures(a)
        for a in synthetic.applications(n, seed=seed, districts=shares, year=2021)
    ]
    path = synthetic.write_csv(tmp_path / f"applications-{seed}.csv", apps)
    with Session(engine) as session:
        report = import_applications(session, path, batch_code=BATCH, today=IMPORT_DAY)
    assert report.committed and report.inserted == len(apps) and not report.errors
    return _ids(engine)


def _ids(engine: Engine, stage: Stage | None = None) -> list[int]:
    query = select(Application.id).order_by(Application.id)
    if stage is not None:
        query = query.where(Application.stage == stage.value)
    with engine.connect() as connection:
        return list(connection.execute(query).scalars())


def _at_stage(source: Stage, reason: str | None = None):  # type: ignore[no-untyped-def]
    """The set-based candidate SELECT the batch flow uses: (id, version, reason, actor)."""
    return select(
        Application.id,
        Application.version,
        literal(reason) if reason is not None else null(),
        null(),
    ).where(Application.batch_code == BATCH, Application.stage == source.value)


def _advance(engine: Engine, ids: Sequence[int], path: Sequence[Stage]) -> None:
    """Walk ``ids`` along ``path`` with one committed move per step."""
    for source, target in zip(path, path[1:], strict=False):
        with Session(engine) as session:
            result = move(
                session,
                source=source,
                target=target,
                candidates=[(i, None) for i in ids],
                actor="测试 / test",
                as_of=AS_OF,
            )
            session.commit()
        assert result.moved == len(ids), (source, target)


def _snapshot(engine: Engine) -> tuple[list[tuple], int]:
    with engine.connect() as connection:
        rows = connection.execute(
            select(
                Application.id,
                Application.stage,
                Application.version,
                Application.stage_since,
                Application.move_token,
                Application.decision_reason,
            ).order_by(Application.id)
        ).all()
        events = connection.execute(select(func.count()).select_from(StageEvent)).scalar_one()
    return [tuple(r) for r in rows], events


def _events(engine: Engine, **where: object) -> list:  # type: ignore[type-arg]
    query = select(StageEvent).order_by(StageEvent.id)  # type: ignore[arg-type]
    for column, value in where.items():
        query = query.where(getattr(StageEvent, column) == value)
    with Session(engine) as session:
        return list(session.exec(query).scalars())  # type: ignore[call-overload]


def test_move_with_a_select_moves_every_candidate_and_writes_one_event_each(
    any_engine: Engine, tmp_path: Path
) -> None:
    ids = _import(any_engine, tmp_path, 30)
    with Session(any_engine) as session:
        result = move(
            session,
            source=S.SUBMITTED,
            target=S.DISTRICT_REVIEW,
            candidates=_at_stage(S.SUBMITTED, reason="送区市推荐"),
            actor="系统 / system",
            as_of=AS_OF,
            flow_run_id="run-0001",
        )
        session.commit()

    assert (result.moved, result.skipped) == (len(ids), 0)
    assert sum(result.by_district.values()) == len(ids)
    with Session(any_engine) as session:
        apps = session.exec(select(Application)).scalars().all()  # type: ignore[call-overload]
    assert {(a.stage, a.version, a.stage_since, a.move_token) for a in apps} == {
        (S.DISTRICT_REVIEW.value, 2, AS_OF, result.token)
    }
    events = _events(any_engine)
    assert sorted(e.application_id for e in events) == ids
    assert {
        (e.from_stage, e.to_stage, e.actor, e.reason, e.business_date, e.flow_run_id)
        for e in events
    } == {("submitted", "district_review", "系统 / system", "送区市推荐", AS_OF, "run-0001")}


def test_a_per_candidate_actor_overrides_the_default_actor(
    any_engine: Engine, tmp_path: Path
) -> None:
    ids = _import(any_engine, tmp_path, 20)
    with Session(any_engine) as session:
        move(
            session,
            source=S.SUBMITTED,
            target=S.DISTRICT_REVIEW,
            candidates=[(ids[0], 1, "由区市办理", "市南区 张三"), (ids[1], None)],
            actor="系统 / system",
            as_of=AS_OF,
        )
        session.commit()
    actors = {e.application_id: (e.actor, e.reason) for e in _events(any_engine)}
    assert actors == {ids[0]: ("市南区 张三", "由区市办理"), ids[1]: ("系统 / system", None)}


def test_a_second_identical_move_moves_nothing_and_writes_nothing(
    any_engine: Engine, tmp_path: Path
) -> None:
    ids = _import(any_engine, tmp_path, 25)
    for expected in (len(ids), 0):
        with Session(any_engine) as session:
            result = move(
                session,
                source=S.SUBMITTED,
                target=S.DISTRICT_REVIEW,
                candidates=_at_stage(S.SUBMITTED),
                actor="系统 / system",
                as_of=AS_OF,
            )
            session.commit()
        assert (result.moved, result.skipped) == (expected, 0)
    assert len(_events(any_engine)) == len(ids)
    assert {version for _, _, version, *_ in _snapshot(any_engine)[0]} == {2}


def test_a_candidate_read_at_a_stale_version_is_skipped_and_gets_no_event(
    any_engine: Engine, tmp_path: Path
) -> None:
    ids = _import(any_engine, tmp_path, 20)
    _advance(any_engine, ids, TO_NOTICE)
    with any_engine.connect() as connection:
        read_earlier = connection.execute(
            select(Application.id, Application.version).order_by(Application.id)
        ).all()
    # Meanwhile another writer takes one application through an objection and back:
    # it is at public notice again, but its version has moved on.
    stale_id = ids[3]
    _advance(any_engine, [stale_id], (S.PUBLIC_NOTICE, S.OBJECTION_REVIEW, S.PUBLIC_NOTICE))

    with Session(any_engine) as session:
        result = move(
            session,
            source=S.PUBLIC_NOTICE,
            target=S.CERTIFIED,
            candidates=[(i, v, None, None) for i, v in read_earlier],
            actor="公示期满 / clock",
            as_of=AS_OF,
        )
        session.commit()

    assert (result.moved, result.skipped) == (len(ids) - 1, 1)
    certified = {e.application_id for e in _events(any_engine, to_stage="certified")}
    assert certified == set(ids) - {stale_id}
    assert _ids(any_engine, S.PUBLIC_NOTICE) == [stale_id]


def test_strict_with_one_application_elsewhere_refuses_the_whole_set_and_changes_nothing(
    any_engine: Engine, tmp_path: Path
) -> None:
    ids = _import(any_engine, tmp_path, 20)
    elsewhere = ids[5]
    _advance(any_engine, [elsewhere], (S.SUBMITTED, S.DISTRICT_REVIEW))
    with any_engine.connect() as connection:
        credit_code = connection.execute(
            select(Application.credit_code).where(Application.id == elsewhere)
        ).scalar_one()
    before = _snapshot(any_engine)

    with Session(any_engine) as session:
        with pytest.raises(TransitionRefused) as refused:
            move(
                session,
                source=S.SUBMITTED,
                target=S.WITHDRAWN,
                candidates=[(i, "企业申请撤回") for i in ids],
                actor="操作员",
                as_of=AS_OF,
                strict=True,
            )
        session.rollback()

    assert refused.value.application == credit_code
    assert "「已提交」" in str(refused.value) and "「已撤回」" in str(refused.value)
    assert _snapshot(any_engine) == before


def test_strict_with_an_unknown_application_id_refuses_and_changes_nothing(
    any_engine: Engine, tmp_path: Path
) -> None:
    ids = _import(any_engine, tmp_path, 20)
    before = _snapshot(any_engine)
    with Session(any_engine) as session:
        with pytest.raises(TransitionRefused, match="no such application"):
            move(
                session,
                source=S.SUBMITTED,
                target=S.WITHDRAWN,
                candidates=[*((i, None) for i in ids), (max(ids) + 1000, None)],
                actor="操作员",
                as_of=AS_OF,
                strict=True,
            )
        session.rollback()
    assert _snapshot(any_engine) == before


@pytest.mark.parametrize(
    ("source", "target"),
    [(S.CERTIFIED, S.FORMAL_CHECK), (S.SUBMITTED, S.CERTIFIED), (S.REJECTED, S.SUBMITTED)],
    ids=str,
)
def test_a_pair_the_table_lacks_raises_before_touching_the_database(
    any_engine: Engine, tmp_path: Path, source: Stage, target: Stage
) -> None:
    _import(any_engine, tmp_path, 20)
    before = _snapshot(any_engine)
    with Session(any_engine) as session:
        with pytest.raises(TransitionRefused):
            move(
                session,
                source=source,
                target=target,
                candidates=_at_stage(source),
                actor="操作员",
                as_of=AS_OF,
            )
        # No connection was taken, so no statement ran.
        assert not session.in_transaction()
    assert _snapshot(any_engine) == before


def test_move_one_each_withdraws_applications_at_mixed_stages(
    any_engine: Engine, tmp_path: Path
) -> None:
    ids = _import(any_engine, tmp_path, 20)
    at = {
        S.SUBMITTED: ids[0],
        S.DISTRICT_REVIEW: ids[1],
        S.FORMAL_CHECK: ids[2],
        S.PUBLIC_NOTICE: ids[3],
    }
    for stage, app_id in at.items():
        _advance(any_engine, [app_id], TO_NOTICE[: TO_NOTICE.index(stage) + 1])

    with Session(any_engine) as session:
        results = move_one_each(
            session,
            target=S.WITHDRAWN,
            applications=[(app_id, "企业申请撤回") for app_id in at.values()],
            actor="操作员 李四",
            as_of=AS_OF,
        )
        session.commit()

    assert {r.source: r.moved for r in results} == dict.fromkeys(at, 1)
    assert sorted(_ids(any_engine, S.WITHDRAWN)) == sorted(at.values())
    withdrawals = {
        e.application_id: (e.from_stage, e.actor, e.reason)
        for e in _events(any_engine, to_stage="withdrawn")
    }
    assert withdrawals == {
        app_id: (stage.value, "操作员 李四", "企业申请撤回") for stage, app_id in at.items()
    }


def test_move_one_each_refuses_everything_when_one_application_is_certified(
    any_engine: Engine, tmp_path: Path
) -> None:
    ids = _import(any_engine, tmp_path, 20)
    _advance(any_engine, [ids[0]], (*TO_NOTICE, S.CERTIFIED))
    before = _snapshot(any_engine)
    with Session(any_engine) as session:
        with pytest.raises(TransitionRefused) as refused:
            move_one_each(
                session,
                target=S.WITHDRAWN,
                applications=[(ids[1], "撤回"), (ids[0], "撤回"), (ids[2], "撤回")],
                actor="操作员",
                as_of=AS_OF,
            )
        session.rollback()
    assert (refused.value.source, refused.value.target) == (S.CERTIFIED, S.WITHDRAWN)
    assert _snapshot(any_engine) == before


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE stage_event SET reason = 'rewritten'",
        "UPDATE stage_event SET to_stage = 'certified' WHERE id = {id}",
        "DELETE FROM stage_event",
        "DELETE FROM stage_event WHERE id = {id}",
    ],
)
def test_the_stage_event_trail_refuses_update_and_delete(
    any_engine: Engine, tmp_path: Path, statement: str
) -> None:
    ids = _import(any_engine, tmp_path, 20)
    _advance(any_engine, ids[:3], (S.SUBMITTED, S.DISTRICT_REVIEW))
    before = _events(any_engine)
    with pytest.raises(DBAPIError, match="append-only"):
        with any_engine.begin() as connection:
            connection.execute(text(statement.format(id=before[0].id)))
    after = _events(any_engine)
    assert [(e.id, e.to_stage, e.reason) for e in after] == [
        (e.id, e.to_stage, e.reason) for e in before
    ]


def test_two_concurrent_writers_move_each_application_once(
    any_engine: Engine, tmp_path: Path
) -> None:
    if any_engine.dialect.name != "postgresql":
        pytest.skip("concurrent writers are a PostgreSQL deployment")
    ids = _import(any_engine, tmp_path, 50)
    assert len(ids) == 50
    start = threading.Barrier(2)
    results: list[tuple[int, int]] = []
    failures: list[BaseException] = []

    def writer(name: str) -> None:
        try:
            with Session(any_engine) as session:
                session.connection()  # check out a connection before the race starts
                start.wait(timeout=30)
                result = move(
                    session,
                    source=S.SUBMITTED,
                    target=S.DISTRICT_REVIEW,
                    candidates=_at_stage(S.SUBMITTED),
                    actor=name,
                    as_of=AS_OF,
                )
                session.commit()
            results.append((result.moved, result.skipped))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
            failures.append(exc)

    threads = [threading.Thread(target=writer, args=(f"writer-{n}",)) for n in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures, failures
    assert len(results) == 2
    assert sum(moved for moved, _ in results) == 50
    events = _events(any_engine)
    assert len(events) == 50
    assert sorted(e.application_id for e in events) == ids
    assert _ids(any_engine, S.DISTRICT_REVIEW) == ids
    assert {version for _, _, version, *_ in _snapshot(any_engine)[0]} == {2}
