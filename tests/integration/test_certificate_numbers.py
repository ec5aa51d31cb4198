"""Two writers certifying at the same moment draw certificate numbers without a clash.

Numbers are the count of the year's certificates plus one. Two ``hnte batch run`` of one
batch, or several workers on one batch, each certify their own id window in their own
transaction: the second must count the first's certificates, which it can only do once
the first has committed. This test holds the first window's transaction open after it
has issued its certificates, certifies a second window beside it, then commits the first.
"""

from __future__ import annotations

import threading
from datetime import date
from pathlib import Path

from sqlalchemy import Engine, select, text
from sqlmodel import Session

from hnte import synthetic
from hnte.config.city import load_city
from hnte.models.db import unit_of_work
from hnte.models.tables import Application, Certificate
from hnte.services import review
from hnte.services.importing import import_applications

CITY = load_city()
SHARES = [synthetic.DistrictShare(d.code, d.name, d.weight) for d in CITY.districts]
BATCH = "2021-1"
AS_OF = date(2021, 10, 20)
N = 40


def _in_public_notice_since_september(engine: Engine, folder: Path) -> list[int]:
    apps = synthetic.applications(N, seed=11, districts=SHARES, year=2021)
    with unit_of_work(engine) as session:
        source = synthetic.write_csv(folder / "applications.csv", apps)
        report = import_applications(session, source, batch_code=BATCH, today=date(2021, 5, 1))
        assert report.inserted == N
        session.commit()
    with engine.begin() as connection:
        # Straight to the last stage: what matters here is who numbers the certificates.
        connection.execute(
            text(
                "UPDATE application SET stage = 'public_notice', "
                "notice_starts = '2021-09-01', notice_ends = '2021-09-07'"
            )
        )
    with unit_of_work(engine) as session:
        return list(session.exec(select(Application.id).order_by(Application.id)).scalars())  # type: ignore[call-overload]


def test_two_windows_certified_at_once_get_distinct_consecutive_numbers(
    any_engine: Engine, tmp_path: Path
) -> None:
    engine = any_engine
    ids = _in_public_notice_since_september(engine, tmp_path)
    half = len(ids) // 2
    first_window, second_window = (ids[0], ids[half - 1]), (ids[half], ids[-1])
    policy = review.ReviewPolicy.from_city(CITY)
    ctx = review.StepContext(engine, BATCH, AS_OF, "certify", policy)
    body = review._public_notice_body(ctx)
    failures: list[BaseException] = []
    done = threading.Event()

    def certify_second_window() -> None:
        try:
            with Session(engine, expire_on_commit=False) as session:
                report = review.StepReport("public_notice")
                body(session, second_window, report)
                session.commit()
        except BaseException as e:  # reported by the main thread
            failures.append(e)
        finally:
            done.set()

    with Session(engine, expire_on_commit=False) as session:
        report = review.StepReport("public_notice")
        body(session, first_window, report)
        assert session.exec(select(Certificate.number)).all()  # issued, not committed
        second = threading.Thread(target=certify_second_window, daemon=True)
        second.start()
        # The second writer cannot finish while the first's numbers are undecided.
        assert not done.wait(1.5), f"the second window did not wait: {failures}"
        session.commit()
    second.join(60)
    assert done.is_set()
    assert not failures, f"the second window failed: {failures[0]!r}"

    with unit_of_work(engine) as session:
        certificates = session.exec(select(Certificate.number, Certificate.application_id)).all()
    numbers = sorted(number for number, _ in certificates)
    assert sorted(app for _, app in certificates) == ids  # every application, once
    assert len(set(numbers)) == N
    fields = {"year": AS_OF.year, "province": policy.province_code}
    expected = [policy.certificate_pattern.format(seq=seq, **fields) for seq in range(1, N + 1)]
    assert numbers == expected, numbers[:3]
