// The run list: search (text or /regex/), status and config filters (evaluated by the
// server), sort, and per run: show on charts, colour, status, open its detail; for the runs
// of an experiment, Stop / Resume / Delete / Clone buttons and the live status of its ops.

import { RunInfo } from "./api";
import { actionButtons, fillButtons, fillOpStatus, opStatus } from "./control";
import { debounce, fmt, h, lookup } from "./dom";
import { state } from "./state";

const STATUSES = ["running", "completed", "failed", "stopped", "crashed", "pending"];

export class RunList {
  readonly el: HTMLElement;
  private list: HTMLElement;
  private count: HTMLElement;
  private chips: HTMLElement;
  private errorEl: HTMLElement;
  private rows = new Map<string, HTMLElement>();
  private controllerNote: HTMLElement;

  /** `reload` asks the server for the list again with the current query. */
  constructor(private reload: () => void, private open: (run: string) => void) {
    this.count = h("span", { class: "count", "aria-live": "polite" });
    this.list = h("ul", { class: "run-list", id: "run-list", "aria-label": "runs" });
    this.chips = h("div", { class: "chips" });
    this.errorEl = h("div", { class: "run-list-error" });
    const search = h("input", {
      type: "search", id: "run-search", placeholder: "Search name, or /regex/",
      "aria-label": "search runs by name or id; wrap in slashes for a regular expression",
      oninput: debounce((e: Event) => {
        state.search = (e.target as HTMLInputElement).value;
        this.reload();
      }, 250),
    });
    const filter = h("input", {
      type: "text", id: "run-filter", placeholder: "Filter: config.lr=0.001, summary.acc>0.9",
      "aria-label": "add a filter FIELD op VALUE and press Enter",
      onkeydown: (e: Event) => {
        const ev = e as KeyboardEvent;
        const input = ev.target as HTMLInputElement;
        if (ev.key === "Enter" && input.value.trim()) {
          state.filters = [...state.filters, input.value.trim()];
          input.value = "";
          this.renderChips();
          this.reload();
        }
      },
    });
    const statuses = h("fieldset", { class: "statuses" }, h("legend", {}, "Status"),
      ...STATUSES.map((s) => h("label", { class: "check" },
        h("input", {
          type: "checkbox", value: s, "data-status": s,
          onchange: (e: Event) => {
            const on = (e.target as HTMLInputElement).checked;
            state.statuses = on ? [...state.statuses, s] : state.statuses.filter((x) => x !== s);
            this.reload();
          },
        }), ` ${s}`)));
    const sort = h("select", {
      id: "run-sort", "aria-label": "sort runs",
      onchange: (e: Event) => {
        state.sort = (e.target as HTMLSelectElement).value;
        this.reload();
      },
    },
    h("option", { value: "" }, "oldest first"), h("option", { value: "-created" }, "newest first"),
    h("option", { value: "name" }, "name"), h("option", { value: "status" }, "status"));
    const showDeleted = h("label", { class: "check" }, h("input", {
      type: "checkbox", id: "show-deleted",
      onchange: (e: Event) => {
        state.showDeleted = (e.target as HTMLInputElement).checked;
        this.reload();
      },
    }), " show deleted");
    this.controllerNote = h("div", { id: "controller-note", class: "notice pending-note",
                                     role: "status", hidden: true },
      "No controller is running for this experiment: ops stay pending until the experiment "
      + "runs (run_fit(..., resume=True) or Experiment.attach(name).resume_all()).");
    const all = h("button", {
      type: "button", class: "small", id: "select-all",
      onclick: () => {
        state.runs.forEach((r) => state.toggle(r.id, true));
        this.render();
        state.emit("selection");
      },
    }, "All");
    const none = h("button", {
      type: "button", class: "small", id: "select-none",
      onclick: () => {
        state.runs.forEach((r) => state.toggle(r.id, false));
        this.render();
        state.emit("selection");
      },
    }, "None");
    this.el = h("aside", { class: "sidebar", "aria-label": "runs" },
      h("div", { class: "sidebar-head" }, h("h2", {}, "Runs "), this.count),
      search, filter, this.chips, statuses, showDeleted,
      h("div", { class: "row" }, sort, all, none),
      this.controllerNote, this.errorEl, this.list);
    state.on("runs", () => this.render());
    state.on("live", () => this.refreshRows());
    state.on("ops", () => this.refreshOps());
  }

  /** Op status next to each run, and the note when no controller runs. */
  private refreshOps(): void {
    this.controllerNote.hidden = !state.experiment || state.controllerAlive;
    for (const r of state.runs) {
      const li = this.rows.get(r.id);
      const el = li?.querySelector<HTMLElement>(".op-status");
      if (el) fillOpStatus(el, r.id);
      const box = li?.querySelector<HTMLElement>(".op-buttons");
      if (box) fillButtons(box, r);
    }
  }

  showError(message: string | null): void {
    this.errorEl.replaceChildren(...(message
      ? [h("div", { class: "notice error", role: "alert" }, message)] : []));
  }

  private renderChips(): void {
    this.chips.replaceChildren(...state.filters.map((f, i) => h("span", { class: "chip" }, f,
      h("button", {
        type: "button", class: "chip-x", "aria-label": `remove filter ${f}`,
        onclick: () => {
          state.filters = state.filters.filter((_, j) => j !== i);
          this.renderChips();
          this.reload();
        },
      }, "×"))));
  }

  /** The first config values that differ between runs, then the first summary metrics. */
  private configHint(r: RunInfo): string {
    const part = (tree: Record<string, unknown>, keys: string[]) => keys
      .map((k) => {
        const v = lookup(tree, k);
        return v === undefined || typeof v === "object" ? null : `${k}=${fmt(v)}`;
      })
      .filter(Boolean).join(" ");
    const config = part(r.config, state.configKeys.slice(0, 3));
    const summary = part(r.summary, state.summaryKeys.slice(0, 2));
    return [config, summary].filter(Boolean).join(" · ");
  }

  private row(r: RunInfo): HTMLElement {
    const color = state.color(r.id);
    const check = h("input", {
      type: "checkbox", checked: state.selected.has(r.id), "aria-label": `show ${r.name} on charts`,
      onchange: (e: Event) => {
        state.toggle(r.id, (e.target as HTMLInputElement).checked);
        state.emit("selection");
      },
    });
    const picker = h("input", {
      type: "color", value: color, class: "swatch-input", "aria-label": `colour of ${r.name}`,
      onchange: (e: Event) => {
        state.colors.set(r.id, (e.target as HTMLInputElement).value);
        state.emit("chartOptions");
      },
    });
    return h("li", { class: "run", "data-run": r.id, "data-status": r.status },
      check, picker,
      h("button", { type: "button", class: "link run-name", title: `${r.name} (${r.id}): details`,
                    onclick: () => this.open(r.id) }, r.name),
      h("span", { class: `status status-${r.status}` }, r.status),
      h("span", { class: "hint" }, this.configHint(r)),
      h("div", { class: "run-actions" }, actionButtons(r, "list"), opStatus(r.id, "list")));
  }

  render(): void {
    this.rows.clear();
    this.list.replaceChildren(...state.runs.map((r) => {
      const li = this.row(r);
      this.rows.set(r.id, li);
      return li;
    }));
    if (!state.runs.length) {
      this.list.replaceChildren(h("li", { class: "notice empty" },
        state.total === 0 && !state.search && !state.filters.length && !state.statuses.length
          ? "No runs in this project yet." : "No run matches."));
    }
    this.count.textContent = `${state.selected.size} shown · ${state.runs.length} listed`;
    this.controllerNote.hidden = !state.experiment || state.controllerAlive;
  }

  /** Update status badges in place (live changes) without rebuilding the list. */
  private refreshRows(): void {
    for (const r of state.runs) {
      const li = this.rows.get(r.id);
      if (!li) continue;
      li.dataset.status = r.status;
      const badge = li.querySelector(".status");
      if (badge && badge.textContent !== r.status) {
        badge.className = `status status-${r.status}`;
        badge.textContent = r.status;
        const box = li.querySelector<HTMLElement>(".op-buttons");
        if (box) fillButtons(box, r);
      }
    }
  }
}
