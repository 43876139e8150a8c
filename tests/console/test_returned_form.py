"""The returned complaint: its reason on top of the page and of the edit form, the photos it already has shown,
inline field errors tied to their fields."""

from __future__ import annotations

from tests.complaints.world import World, file_complaint


def test_the_returned_complaint_form_shows_the_reason_and_the_photos_and_marks_bad_fields(world: World) -> None:
    admin = world.client("admin-dinkes")
    url = file_complaint(admin, f"vm:{world.vm['web-dinkes']}").headers["location"]
    reason = "Sebutkan jam kejadian dan alamat halaman yang gagal dibuka"
    assert world.client("engineer").post(f"{url}/actions/return", data={"reason": reason}).status_code == 303
    page = admin.get(url).text
    assert page.index('id="return-reason"') < page.index('id="timeline"') and reason in page
    form = admin.get(f"{url}/edit").text
    assert reason in form.split('id="return-reason"')[1].split("</div>")[0]
    assert form.count('/thumb"') == 1 and 'id="attached"' in form
    refused = admin.post(f"{url}/edit", data={"asset": f"vm:{world.vm['web-dinkes']}", "category": "",
                                              "description": "x"})
    assert refused.status_code == 400
    assert 'aria-invalid="true" aria-describedby="err-category"' in refused.text
    assert 'id="err-description"' in refused.text and 'aria-describedby="err-description"' in refused.text
