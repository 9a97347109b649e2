// Delete / Restore of a plain tracked run (a project that is not an experiment): the run is
// deleted at once, softly (hidden from the list, restorable until `runfleet gc` purges it),
// through POST /api/run/delete and /api/run/restore. Runs of an experiment are deleted by
// their controller instead (control.ts). The new status arrives on the live stream.

import { ApiError, RunInfo, api } from "./api";
import { h } from "./dom";

/** The Delete (or, for a deleted run, Restore) button of a tracked run; none while its
 *  process still runs (the server would refuse it). */
export function trackedButtons(run: RunInfo): HTMLElement[] {
  if (run.status === "running") return [];
  const restore = run.status === "deleted";
  const label = restore ? "Restore" : "Delete";
  return [h("button", {
    type: "button", class: `small op-btn ${restore ? "run-restore" : "op-delete run-delete"}`,
    "data-action": restore ? "restore" : "delete", "aria-label": `${label} ${run.name}`,
    title: `${label} ${run.name}`, "aria-haspopup": "dialog",
    onclick: () => confirmChange(run, restore),
  }, label)];
}

let dialog: HTMLDialogElement | null = null;

/** Ask to confirm deleting (or restoring) `run`, then send it. */
function confirmChange(run: RunInfo, restore: boolean): void {
  dialog?.remove();
  const label = restore ? "Restore" : "Delete";
  const status = h("p", { id: "run-change-status", role: "status", "aria-live": "polite" });
  const ok = h("button", { type: "button", id: "run-change-ok",
                           class: `primary ${restore ? "" : "op-delete"}`, autofocus: true },
    `${label} ${run.name}`);
  const cancel = h("button", { type: "button", id: "run-change-cancel" }, "Cancel");
  const box = h("dialog", { id: "run-change-dialog", class: "dialog",
                            "data-action": restore ? "restore" : "delete",
                            "aria-labelledby": "run-change-title",
                            "aria-describedby": "run-change-text" },
    h("h3", { id: "run-change-title" }, `${label} run ${run.name}?`),
    h("p", { id: "run-change-text" }, restore
      ? "The run gets back the status it had and shows in the run list again."
      : "The run is hidden from the run list (\"show deleted\" lists it). Its data stays on "
        + "disk: Restore brings it back, until `runfleet gc` purges deleted runs for good."),
    h("div", { class: "row dialog-buttons" }, ok, cancel), status);
  dialog = box;
  document.body.append(box);
  cancel.addEventListener("click", () => box.close());
  box.addEventListener("close", () => box.remove());
  ok.addEventListener("click", async () => {
    ok.disabled = true;
    status.className = "muted";
    status.textContent = "Sending…";
    try {
      await (restore ? api.restoreRun : api.deleteRun)(run.project, run.id);
      box.close();
    } catch (err) {
      status.className = "error-text";
      status.setAttribute("role", "alert");
      status.textContent = err instanceof ApiError ? err.message : String(err);
      ok.disabled = false;
    }
  });
  box.showModal();
  ok.focus();
}
