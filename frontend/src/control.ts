// Control of an experiment's runs from the page: Stop / Resume / Delete / Clone buttons, a
// confirmation dialog, the clone form (the run's config as editable dotted keys), and the
// live status of each run's ops (pending, applied, or rejected with the controller's reason).
//
// Buttons write ops (POST /api/ops); the experiment's controller applies them in order. Ops
// and their status changes arrive on the live stream (state.ops, topic "ops").

import { ApiError, Json, OpArgs, OpInfo, OpKind, RunInfo, api } from "./api";
import { trackedButtons } from "./deletion";
import { flatten, fmt, h } from "./dom";
import { state } from "./state";

const LABELS: Record<OpKind, string> = {
  stop: "Stop", resume: "Resume", delete: "Delete", clone: "Clone",
};

const EXPLAIN: Record<Exclude<OpKind, "clone">, string> = {
  stop: "The run stops within one training step and frees its worker. Its state is kept: "
    + "Resume continues exactly where it stopped.",
  resume: "The run continues exactly where it stopped.",
  delete: "The run's checkpoints leave memory and disk and it is hidden from the run list. "
    + "Its logged metrics are kept unless you also purge them.",
};

/** The ops a run offers, by its status. */
export function actionsFor(run: RunInfo): OpKind[] {
  if (run.status === "deleted") return [];
  const out: OpKind[] = [];
  if (run.status === "running" || run.status === "pending") out.push("stop");
  if (run.status === "stopped") out.push("resume");
  out.push("clone", "delete");
  return out;
}

/** The action buttons of a run (of a project that is not an experiment: Delete or
 *  Restore, see deletion.ts). */
export function actionButtons(run: RunInfo, where: string): HTMLElement {
  const box = h("span", { class: "op-buttons", "data-run": run.id, "data-where": where });
  fillButtons(box, run);
  return box;
}

/** Refresh a box made by actionButtons for the run's current status. */
export function fillButtons(box: HTMLElement, run: RunInfo): void {
  if (!state.experiment) {
    box.replaceChildren(...trackedButtons(run));
    return;
  }
  box.replaceChildren(...actionsFor(run).map((kind) => h("button", {
    type: "button", class: `small op-btn op-${kind}`, "data-op": kind,
    "aria-label": `${LABELS[kind]} ${run.name}`, title: `${LABELS[kind]} ${run.name}`,
    "aria-haspopup": "dialog",
    onclick: () => (kind === "clone" ? openClone(run) : confirmOp(run, kind)),
  }, LABELS[kind])));
}

/** The live status of a run's newest op, as an element (refresh with fillOpStatus). */
export function opStatus(run: string, where: string): HTMLElement {
  const el = h("span", { class: "op-status", "data-run": run, "data-where": where,
                         role: "status", "aria-live": "polite" });
  fillOpStatus(el, run);
  return el;
}

export function fillOpStatus(el: HTMLElement, run: string): void {
  const op = state.lastOp(run);
  if (!op) {
    el.replaceChildren();
    el.removeAttribute("data-op-status");
    el.removeAttribute("title");
    return;
  }
  el.dataset.opStatus = op.status;
  el.dataset.opKind = op.kind;
  el.dataset.opId = String(op.id);
  const text = opText(op);
  el.title = `${text} (op #${op.id}, from ${op.source})`;
  el.replaceChildren(...(op.status === "pending" ? [spinner()] : []), text);
}

/** One line about an op: "stop pending", "clone applied → name", "delete rejected: …". */
export function opText(op: OpInfo): string {
  if (op.status === "pending") {
    return `${op.kind} pending${state.controllerAlive ? "" : " until the experiment runs"}`;
  }
  if (op.status === "rejected") return `✗ ${op.kind} rejected: ${op.reason ?? "no reason given"}`;
  const made = op.kind === "clone" && typeof op.result.name === "string" ? ` → ${op.result.name}` : "";
  return `✓ ${op.kind} applied${made}`;
}

function spinner(): HTMLElement {
  return h("span", { class: "spinner", "aria-hidden": "true" });
}

/** What an op asked for, shortly (for the audit trail). */
export function argsText(op: OpInfo): string {
  const parts: string[] = [];
  const a = op.args;
  if (a.changes && typeof a.changes === "object" && !Array.isArray(a.changes)) {
    for (const [k, v] of Object.entries(a.changes)) parts.push(`${k}=${fmt(v)}`);
  }
  if (a.warm_start) parts.push("warm start");
  if (typeof a.name === "string") parts.push(`name ${a.name}`);
  if (a.purge) parts.push("purge");
  if (typeof a.reason === "string") parts.push(a.reason);
  return parts.join(", ");
}

/** Take an op the server answered, so the page shows it before the stream does. */
function remember(op: OpInfo): void {
  state.putOp(op);
  state.emit("ops");
}

function errorText(err: unknown): string {
  return err instanceof ApiError ? err.message : String(err);
}

// -- confirmation -------------------------------------------------------------------------

let confirmDialog: HTMLDialogElement | null = null;

/** Ask to confirm a stop, resume or delete of `run`, then write the op. */
export function confirmOp(run: RunInfo, kind: Exclude<OpKind, "clone">): void {
  confirmDialog?.remove();
  const status = h("p", { id: "confirm-status", role: "status", "aria-live": "polite" });
  const purge = h("input", { type: "checkbox", id: "confirm-purge" });
  const ok = h("button", { type: "button", id: "confirm-ok", class: `primary op-${kind}`, autofocus: true },
    `${LABELS[kind]} ${run.name}`);
  const cancel = h("button", { type: "button", id: "confirm-cancel" }, "Cancel");
  const dialog = h("dialog", { id: "confirm-dialog", class: "dialog", "data-op": kind,
                               "aria-labelledby": "confirm-title", "aria-describedby": "confirm-text" },
    h("h3", { id: "confirm-title" }, `${LABELS[kind]} run ${run.name}?`),
    h("p", { id: "confirm-text" }, EXPLAIN[kind]),
    kind === "delete" ? h("label", { class: "check" }, purge, " Also erase its logged metrics (purge)") : null,
    state.controllerAlive ? null : h("p", { class: "notice pending-note" },
      "No controller is running for this experiment: the op stays pending until the "
      + "experiment runs."),
    h("div", { class: "row dialog-buttons" }, ok, cancel), status);
  confirmDialog = dialog;
  document.body.append(dialog);
  cancel.addEventListener("click", () => dialog.close());
  dialog.addEventListener("close", () => dialog.remove());
  ok.addEventListener("click", async () => {
    ok.disabled = true;
    status.className = "muted";
    status.textContent = "Sending…";
    const args: OpArgs = kind === "delete" && purge.checked ? { purge: true } : {};
    try {
      remember(await api.requestOp(run.project, run.id, kind, args));
      dialog.close();
    } catch (err) {
      status.className = "error-text";
      status.setAttribute("role", "alert");
      status.textContent = errorText(err);
      ok.disabled = false;
    }
  });
  dialog.showModal();
  ok.focus();
}

// -- clone form ---------------------------------------------------------------------------

let cloneDialog: HTMLDialogElement | null = null;
let cloneOp: number | null = null;
let cloneStatus: HTMLElement | null = null;

/** The text shown for a config value: strings as they are, anything else as JSON. */
function valueText(v: unknown): string {
  return typeof v === "string" ? v : JSON.stringify(v ?? null);
}

/** A typed value: JSON when the text parses as JSON, else the text itself. */
export function parseValue(text: string): Json {
  try {
    return JSON.parse(text) as Json;
  } catch {
    return text;
  }
}

/** Open the clone form of `run`: its config as editable values, warm start, a name. */
export function openClone(run: RunInfo): void {
  cloneDialog?.remove();
  const config = flatten(run.config as Record<string, unknown>);
  const keys = Object.keys(config).sort((a, b) => a.localeCompare(b));
  const inputs: { key: string; input: HTMLInputElement; initial: string }[] = [];
  const rows = keys.map((key, i) => {
    const initial = valueText(config[key]);
    const fixed = state.engineKeys.has(key);
    const input = h("input", {
      type: "text", id: `clone-value-${i}`, class: "clone-value", "data-key": key, value: initial,
      readonly: fixed, title: fixed ? "set by the experiment for all its runs" : null,
    });
    if (!fixed) inputs.push({ key, input, initial });
    return h("tr", { "data-key": key },
      h("th", { scope: "row" }, h("label", { for: `clone-value-${i}` }, key)), h("td", {}, input));
  });
  const extra = h("tbody", { class: "clone-extra" });
  const addKey = (): void => {
    const n = extra.children.length;
    extra.append(h("tr", {},
      h("td", {}, h("input", { type: "text", class: "clone-extra-key", placeholder: "dotted.key",
                               "aria-label": `other key ${n + 1}` })),
      h("td", {}, h("input", { type: "text", class: "clone-extra-value", placeholder: "value",
                               "aria-label": `value of other key ${n + 1}` }))));
  };
  addKey();
  const warm = h("input", { type: "checkbox", id: "clone-warm" });
  const name = h("input", { type: "text", id: "clone-name", placeholder: `${run.name}.c…`,
                            maxlength: 200 });
  const status = h("div", { id: "clone-status", class: "clone-status", role: "status",
                            "aria-live": "polite" });
  const submit = h("button", { type: "submit", id: "clone-submit", class: "primary" }, "Clone");
  const close = h("button", { type: "button", id: "clone-close" }, "Close");
  const form = h("form", { class: "clone-form" },
    h("h3", { id: "clone-title" }, `Clone run ${run.name}`),
    h("p", { class: "muted" }, "Change values below (read as JSON when they parse: 0.001, true, "
      + "[1, 2], \"text\"; otherwise as text). Only changed keys are sent; the experiment "
      + "validates the new config and says why if it refuses it."),
    h("div", { class: "clone-table" }, h("table", { class: "kv" }, h("tbody", {}, ...rows))),
    h("details", {}, h("summary", {}, "Other keys"),
      h("table", { class: "kv" }, extra),
      h("button", { type: "button", class: "small", id: "clone-add-key", onclick: addKey }, "Add a key")),
    h("label", { class: "check" }, warm,
      " Warm start (from the parent's latest weights and optimizer state)"),
    h("label", {}, "Name ", name),
    state.controllerAlive ? null : h("p", { class: "notice pending-note" },
      "No controller is running for this experiment: the clone stays pending until the "
      + "experiment runs."),
    h("div", { class: "row dialog-buttons" }, submit, close), status);
  const dialog = h("dialog", { id: "clone-dialog", class: "dialog", "data-run": run.id,
                               "aria-labelledby": "clone-title" }, form);
  cloneDialog = dialog;
  cloneStatus = status;
  cloneOp = null;
  document.body.append(dialog);
  close.addEventListener("click", () => dialog.close());
  dialog.addEventListener("close", () => {
    dialog.remove();
    if (cloneDialog === dialog) {
      cloneDialog = null;
      cloneStatus = null;
      cloneOp = null;
    }
  });
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const changes: Record<string, Json> = {};
    for (const { key, input, initial } of inputs) {
      if (input.value !== initial) changes[key] = parseValue(input.value);
    }
    extra.querySelectorAll("tr").forEach((tr) => {
      const key = (tr.querySelector(".clone-extra-key") as HTMLInputElement).value.trim();
      const value = (tr.querySelector(".clone-extra-value") as HTMLInputElement).value;
      if (key) changes[key] = parseValue(value);
    });
    const args: OpArgs = { changes, warm_start: warm.checked };
    if (name.value.trim()) args.name = name.value.trim();
    submit.disabled = true;
    status.dataset.state = "sending";
    status.className = "clone-status muted";
    status.textContent = "Sending…";
    try {
      const op = await api.requestOp(run.project, run.id, "clone", args);
      cloneOp = op.id;
      remember(op);
    } catch (err) {
      status.dataset.state = "refused";
      status.className = "clone-status error-text";
      status.setAttribute("role", "alert");
      status.textContent = `Refused: ${errorText(err)}`;
    } finally {
      submit.disabled = false;
    }
  });
  dialog.showModal();
  (inputs[0]?.input ?? name).focus();
}

/** Show the clone form's op as it changes (pending -> applied with a link, or rejected). */
function updateCloneStatus(): void {
  if (cloneOp === null || !cloneStatus) return;
  const op = state.ops.get(cloneOp);
  if (!op) return;
  const status = cloneStatus;
  status.dataset.state = op.status;
  status.dataset.opId = String(op.id);
  status.setAttribute("role", op.status === "rejected" ? "alert" : "status");
  status.className = `clone-status ${op.status === "rejected" ? "error-text" : ""}`;
  if (op.status === "pending") {
    status.replaceChildren(spinner(), `Clone requested (op #${op.id}): ${opText(op)}`);
  } else if (op.status === "rejected") {
    status.replaceChildren(`Rejected: ${op.reason ?? "no reason given"}`);
  } else {
    const id = typeof op.result.run_id === "string" ? op.result.run_id : null;
    const made = typeof op.result.name === "string" ? op.result.name : id ?? "";
    status.replaceChildren(`✓ Applied: new run `, id
      ? h("button", { type: "button", class: "link", id: "clone-open-new",
                      onclick: () => { cloneDialog?.close(); openRunHook(id); } }, made)
      : made);
  }
}

let openRunHook: (id: string) => void = () => undefined;

/** How the clone form opens the new run (set by the page). */
export function setOpenRun(fn: (id: string) => void): void {
  openRunHook = fn;
}

state.on("ops", updateCloneStatus);
