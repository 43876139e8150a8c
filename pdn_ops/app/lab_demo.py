"""The demo's lab panel (`make run` only): staff break a lab VM, then fix it from the remediation pages.

Mounted by ``mount`` when `pdn-ops demo` runs the lab in the same process, never by ``create_app``: a production
service has no such page. Thin routes: a button queues a fault on the panel (``pdn_ops.lab.demo_panel``), whose
own thread applies it; the page shows the lab's VMs and how the queued faults went.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, HTTPException, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from pdn_ops.accounts.deps import Staff
from pdn_ops.core.errors import NotFound
from pdn_ops.lab.demo_panel import ACTIONS, NEEDS_GUEST, LabDemoPanel
from pdn_ops.runs.parts import runs_of
from pdn_ops.web.templating import render

router = APIRouter(include_in_schema=False)
Vmid = Annotated[int, Path(ge=100, le=999_999_999)]
Action = Annotated[str, Path(max_length=32)]


def mount(app: FastAPI, lab: Any, *, cluster: str = "lab") -> LabDemoPanel:
    """Add the panel for this running lab to a demo app (its routes exist only from here on)."""
    panel = LabDemoPanel(lab, cluster=cluster)
    app.state.lab_panel = panel
    runs_of(app.state.runtime).lab_demo = True
    app.include_router(router)
    return panel


def _panel(request: Request) -> LabDemoPanel:
    panel = getattr(request.app.state, "lab_panel", None)
    if not isinstance(panel, LabDemoPanel):
        raise HTTPException(status_code=404, detail="Not Found")
    return panel


@router.get("/lab", response_class=HTMLResponse)
def lab_page(request: Request, _staff: Staff) -> HTMLResponse:
    panel = _panel(request)
    return render(request, "lab_demo.html", vms=panel.vms(), recent=panel.recent(), actions=ACTIONS,
                  needs_guest=NEEDS_GUEST)


@router.post("/lab/vms/{vmid}/{action}")
def lab_action(request: Request, vmid: Vmid, action: Action, _staff: Staff) -> RedirectResponse:
    try:
        _panel(request).submit(vmid, action)
    except NotFound:
        raise HTTPException(status_code=404, detail="Not Found") from None
    return RedirectResponse("/lab", status_code=303)
