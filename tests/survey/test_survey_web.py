"""The survey from Selesai to the IKM report, on both engines: invited once, answered once, anonymous."""

from __future__ import annotations

import io
from datetime import datetime, time, timedelta

from openpyxl import load_workbook
from sqlalchemy import func, select

from pdn_ops.core.db.engine import transaction
from pdn_ops.notify.tables import NotifyOutboxRow
from pdn_ops.public.tables import ServiceFeedbackRow
from pdn_ops.survey.model import PeriodKind, period_of
from pdn_ops.survey.tables import SurveyInvitationRow, SurveyResponseRow
from tests.complaints.world import csrf_of
from tests.survey.world import closed_complaint

SCORES = {"requirements": 4, "procedure": 4, "time": 3, "cost": 4, "product": 3, "competence": 4, "conduct": 4,
          "complaints": 3, "facilities": 4}  # 33 / 9 x 25 = 91.67 -> A
SUGGESTION = "Mohon kabari lewat WhatsApp lebih cepat"


def test_selesai_invites_the_opd_once_and_the_report_counts_the_answer(world) -> None:
    cid = closed_complaint(world)
    with transaction(world.ctx.sessions) as session:
        invited = session.execute(select(SurveyInvitationRow.user_id, SurveyInvitationRow.outcome)
                                  .where(SurveyInvitationRow.complaint_id == cid)).all()
        messages = session.scalar(select(func.count()).select_from(NotifyOutboxRow)
                                  .where(NotifyOutboxRow.event == "survey_invitation"))
    assert len(invited) == 2 and {o for _, o in invited} == {None}, "the OPD's admin and head, nobody else"
    assert messages == 2, "one WhatsApp and one e-mail to the OPD's contact"

    admin, head, other = world.client("admin-dinkes"), world.client("head-dinkes"), world.client("admin-disdik")
    assert f"/survey/{cid}" in admin.get("/survey").text
    assert other.get(f"/survey/{cid}").status_code == 404, "another OPD's admin was not invited"
    page = admin.get(f"/survey/{cid}")
    assert page.status_code == 200 and page.text.count('type="radio"') == 36

    partial = {k: str(v) for k, v in list(SCORES.items())[:8]}
    refused = admin.post(f"/survey/{cid}", data=partial)
    assert refused.status_code == 400 and 'href="#q-facilities"' in refused.text
    assert 'id="product-3" name="product" value="3" checked' in refused.text, "what was chosen is kept"
    done = admin.post(f"/survey/{cid}", data={**{k: str(v) for k, v in SCORES.items()}, "suggestion": SUGGESTION})
    assert done.status_code == 303
    assert admin.post(f"/survey/{cid}", data={k: str(v) for k, v in SCORES.items()}).status_code == 409
    assert "survey-done" in admin.get(f"/survey/{cid}").text
    assert head.post(f"/survey/{cid}/skip", data={"csrf_token": csrf_of(head)}).status_code == 303
    assert head.post(f"/survey/{cid}/skip").status_code == 409

    with transaction(world.ctx.sessions) as session:
        assert session.scalar(select(func.count()).select_from(SurveyResponseRow)) == 1
    # Nothing in a response names a person or a complaint.
    assert {c.name for c in SurveyResponseRow.__table__.columns}.isdisjoint({"user_id", "complaint_id", "opd_id"})

    # A complaint about the service, answered after 90 minutes, is counted in the same report.
    quarter = period_of(datetime.now(world.ctx.settings.tz).date(), PeriodKind.QUARTER)
    with transaction(world.ctx.sessions) as session:
        at = datetime.combine(quarter.start, time(0, 1), world.ctx.settings.tz)  # inside the period, whatever today
        session.add(ServiceFeedbackRow(channel="web", message="Pelayanan lambat", client="x", received_at=at,
                                       answer="Maaf", answered_at=at + timedelta(minutes=90), answered_by="supervisor"))
    period = period_of(datetime.now(world.ctx.settings.tz).date(), PeriodKind.QUARTER).code
    engineer, supervisor = world.client("engineer"), world.client("supervisor")
    seen = engineer.get(f"/survey-report?period={period}")
    assert seen.status_code == 200
    assert 'id="ikm-value">91,67<' in seen.text and 'id="ikm-mutu">A (Sangat Baik)' in seen.text
    assert SUGGESTION not in seen.text, "engineers see aggregates only"
    assert "<svg" in seen.text
    assert SUGGESTION in supervisor.get(f"/survey-report?period={period}").text
    assert other.get("/survey-report").status_code == 404

    pdf = engineer.get(f"/survey-report.pdf?period={period}")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    xlsx = supervisor.get(f"/survey-report.xlsx?period={period}&lang=en")
    book = load_workbook(io.BytesIO(xlsx.content))
    values = list(book["IKM"].iter_rows(values_only=True))
    pairs = {r[:2] for r in values}
    assert ("IKM", "91.67") in pairs and ("Service quality", "A (Very good)") in pairs
    assert [r[3] for r in values if r[0] == "U3"] == [3.0], "NRR per element, as numbers"
    assert SUGGESTION in [r[1] for r in book["Suggestions and follow-up"].iter_rows(values_only=True)]
    service = dict(book["Complaints about the service"].iter_rows(values_only=True))
    assert service["Answered"] == "1" and service["Median time to answer (hours)"] == "1.5"
