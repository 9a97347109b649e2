// Runs x metrics: one row per listed run, config and summary columns; clicking a header
// sorts on the server (clicking again reverses).

import { debounce, fmt, h, lookup } from "./dom";
import { state } from "./state";

export class RunsTable {
  readonly el: HTMLElement;

  constructor(private reload: () => void, private open: (run: string) => void) {
    this.el = h("div", { class: "view view-table" });
    state.on("runs", debounce(() => this.render(), 50));
  }

  private header(label: string, field: string): HTMLElement {
    const active = state.sort === field ? "ascending" : state.sort === `-${field}` ? "descending"
      : "none";
    return h("th", { scope: "col", "aria-sort": active },
      h("button", {
        type: "button", class: "th-sort", "data-field": field,
        onclick: () => {
          state.sort = state.sort === field ? `-${field}` : field;
          this.reload();
        },
      }, label, active === "ascending" ? " ▲" : active === "descending" ? " ▼" : ""));
  }

  render(): void {
    if (!state.runs.length) {
      this.el.replaceChildren(h("div", { class: "notice empty" }, "No runs to show."));
      return;
    }
    const configKeys = state.configKeys.slice(0, 12);
    const summaryKeys = state.summaryKeys.slice(0, 16);
    const head = h("tr", {},
      h("th", { scope: "col" }, ""),
      this.header("name", "name"), this.header("status", "status"),
      this.header("last step", "last_step"),
      ...configKeys.map((k) => this.header(k, `config.${k}`)),
      ...summaryKeys.map((k) => this.header(k, `summary.${k}`)));
    const rows = state.runs.map((r) => h("tr", { "data-run": r.id },
      h("td", {}, h("span", { class: "swatch", style: `background:${state.color(r.id)}` })),
      h("td", {}, h("button", { type: "button", class: "link", onclick: () => this.open(r.id) },
        r.name)),
      h("td", {}, h("span", { class: `status status-${r.status}` }, r.status)),
      h("td", { class: "num" }, r.last_step >= 0 ? String(r.last_step) : ""),
      ...configKeys.map((k) => h("td", { class: "num" }, cell(lookup(r.config, k)))),
      ...summaryKeys.map((k) => h("td", { class: "num" }, cell(lookup(r.summary, k))))));
    this.el.replaceChildren(h("div", { class: "table-wrap" },
      h("table", { class: "runs-table", id: "runs-table" },
        h("thead", {}, head), h("tbody", {}, ...rows))));
  }
}

function cell(v: unknown): string {
  const text = fmt(v);
  return text.length > 40 ? `${text.slice(0, 39)}…` : text;
}
