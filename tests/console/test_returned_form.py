"""The returned complaint: its reason on top of the page and of the edit form, the photos it already has shown,
inline field errors tied to their fields."""

from __future__ import annotations

import re

from tests.complaints.world import World, file_complaint, jpeg


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


def test_the_returned_complaint_keeps_or_removes_its_photos_as_the_admin_chooses(world: World) -> None:
    admin = world.client("admin-dinkes")
    engineer = world.client("engineer")
    asset = f"vm:{world.vm['web-dinkes']}"
    url = file_complaint(admin, asset, photos=[("salah.jpg", jpeg(), "image/jpeg"),
                                               ("layar.jpg", jpeg(color=(10, 200, 10)), "image/jpeg")]).headers["location"]
    assert engineer.post(f"{url}/actions/return", data={"reason": "Foto pertama bukan halaman yang gagal"}).status_code == 303
    form = admin.get(f"{url}/edit").text
    wrong, right = re.findall(r'name="remove_photo" value="(\d+)"', form)
    fields = {"asset": asset, "category": "site_down", "description": "Halaman layanan gagal dibuka sejak pagi"}
    # Removing every photo without adding one leaves the complaint without evidence: refused, the choice kept.
    refused = admin.post(f"{url}/edit", data={**fields, "remove_photo": [wrong, right]})
    assert refused.status_code == 400 and 'id="err-photos"' in refused.text
    assert refused.text.count('name="remove_photo" value=') == 2 and refused.text.count(" checked>") == 2
    assert admin.get(f"{url}/photos/{wrong}/thumb").status_code == 200  # nothing removed by a refusal
    kept = admin.post(f"{url}/edit", data={**fields, "remove_photo": [wrong, "not-a-photo", "99999"]})
    assert kept.status_code == 303
    assert admin.get(f"{url}/photos/{wrong}/thumb").status_code == 404
    assert admin.get(f"{url}/photos/{right}/thumb").status_code == 200
    page = engineer.get(f"{url}?lang=en").text
    assert page.count(f"{url}/photos/") >= 1 and f"{url}/photos/{wrong}/" not in page
    assert "removed attached photos" in page and "salah.jpg" in page
