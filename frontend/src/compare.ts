// Compare: the configs of a RAG eval experiment side by side. One row per listed eval run:
// the config keys that differ between runs, per metric its mean over the queries done with
// its interval for the mean over the whole eval set, latency p50 per stage, queries done
// out of the eval set, status. The best mean of each metric is marked; a run whose interval
// overlaps the best's is "not distinguishable" from it, one whose interval lies wholly below
// is worse. Sorted on the page; redrawn live as shards finish (run summaries on the stream).

import { RunInfo } from "./api";
import { debounce, fmt, h, lookup, notice } from "./dom";
import {
  Interval, IntervalKind, Mark, classify, evalMetrics, fmtInterval, intervalOf, isEvalRun,
  latencyStages, metricKs, metricsAt, queriesDone, queriesTotal,
} from "./evals";
import { state } from "./state";

const MARKS: Record<Mark, { sign: string; text: string }> = {
  best: { sign: "★", text: "best mean of this metric" },
  tie: { sign: "≈", text: "interval overlaps the best's: not distinguishable from the best" },
  worse: { sign: "▼", text: "interval lies wholly below the best's: worse than the best" },
};

const KIND_TEXT: Record<IntervalKind, string> = {
  ci: "95% interval for the mean over the whole eval set",
  cs: "anytime-valid 95% interval (holds at every shard at once)",
};

interface Column {
  id: string;
  label: string;
  title?: string;
  /** Sort value of a run (numbers sort as numbers; null/NaN last). */
  value: (r: RunInfo) => number | string | null;
  cell: (r: RunInfo, i: number) => HTMLElement;
  /** First click sorts descending (metrics: higher is better). */
  desc?: boolean;
}

export class CompareView {
  readonly el: HTMLElement;
  private toolbar: HTMLElement;
  private body: HTMLElement;
  private sortKey = "";
  private sortDesc = false;
  /** Metrics at this cut-off are shown ("" = the largest logged, "all"). */
  private k = "";
  private kind: IntervalKind = "ci";

  constructor(private open: (run: string) => void) {
    this.toolbar = h("div", { class: "toolbar", role: "toolbar", "aria-label": "Compare options" });
    this.body = h("div", { class: "compare-body" });
    this.el = h("div", { class: "view view-compare" }, this.toolbar, this.body);
    const redraw = debounce(() => {
      if (state.view === "compare") this.render();
    }, 250);
    state.on("runs", redraw);
    state.on("live", redraw);
  }

  /** The listed runs of the project that are eval runs. */
  private runs(): RunInfo[] {
    return state.runs.filter((r) => isEvalRun(r));
  }

  render(): void {
    const runs = this.runs();
    if (!runs.length) {
      this.toolbar.replaceChildren();
      this.body.replaceChildren(notice("empty", "No eval runs listed. Compare shows the runs "
        + "of Experiment.run_evals (RAG configs) side by side."));
      return;
    }
    const all = evalMetrics(runs, this.kind);
    const ks = metricKs(all);
    const k = this.k || (ks.length ? String(ks[ks.length - 1]) : "all");
    const metrics = metricsAt(all, k);
    this.renderToolbar(ks, k);
    const columns = this.columns(runs, metrics);
    const sorted = this.sorted(runs, columns);
    const oldWrap = this.body.querySelector(".table-wrap");
    const scroll = oldWrap ? [oldWrap.scrollLeft, oldWrap.scrollTop] : [0, 0];
    const head = h("tr", {}, h("th", { scope: "col" }, ""), ...columns.map((c) => {
      const active = this.sortKey === c.id ? (this.sortDesc ? "descending" : "ascending") : "none";
      return h("th", { scope: "col", "aria-sort": active, title: c.title ?? null },
        h("button", {
          type: "button", class: "th-sort", "data-sort": c.id,
          onclick: () => {
            if (this.sortKey === c.id) this.sortDesc = !this.sortDesc;
            else {
              this.sortKey = c.id;
              this.sortDesc = !!c.desc;
            }
            this.render();
          },
        }, c.label, active === "ascending" ? " ▲" : active === "descending" ? " ▼" : ""));
    }));
    const index = new Map(runs.map((r, i) => [r.id, i]));
    const rows = sorted.map((r) => h("tr", { "data-run": r.id, "data-name": r.name },
      h("td", {}, h("span", { class: "swatch", style: `background:${state.color(r.id)}` })),
      ...columns.map((c) => c.cell(r, index.get(r.id)!))));
    const wrap = h("div", { class: "table-wrap" },
      h("table", { class: "compare-table", id: "compare-table" },
        h("thead", {}, head), h("tbody", {}, ...rows)));
    this.body.replaceChildren(
      h("p", { class: "muted compare-caption" },
        `Mean over the queries done [${KIND_TEXT[this.kind]}]. `,
        ...(["best", "tie", "worse"] as Mark[]).flatMap((m) => [
          h("span", { class: `mark-key mark-${m}`, "data-mark": m }, `${MARKS[m].sign} `,
            m === "best" ? "best" : m === "tie" ? "not distinguishable" : "worse"), " "])),
      wrap);
    wrap.scrollLeft = scroll[0];
    wrap.scrollTop = scroll[1];
  }

  private renderToolbar(ks: number[], k: string): void {
    const kSelect = h("select", {
      id: "compare-k", "aria-label": "metrics at cut-off k",
      onchange: (e: Event) => {
        this.k = (e.target as HTMLSelectElement).value;
        this.render();
      },
    }, ...ks.map((v) => h("option", { value: String(v), selected: k === String(v) }, `@${v}`)),
    h("option", { value: "all", selected: k === "all" }, "all cut-offs"));
    const kind = h("select", {
      id: "compare-interval", "aria-label": "interval",
      onchange: (e: Event) => {
        this.kind = (e.target as HTMLSelectElement).value as IntervalKind;
        this.render();
      },
    }, h("option", { value: "ci", selected: this.kind === "ci" }, "95% interval (whole eval set)"),
    h("option", { value: "cs", selected: this.kind === "cs" }, "anytime-valid interval"));
    this.toolbar.replaceChildren(h("label", {}, "metrics ", kSelect), h("label", {}, kind));
  }

  private columns(runs: RunInfo[], metrics: string[]): Column[] {
    const configKeys = state.configKeys.filter((key) => key !== "trainer"
      && new Set(runs.map((r) => JSON.stringify(lookup(r.config, key) ?? null))).size > 1);
    const kind = this.kind;
    const marks = new Map(metrics.map((m) => [m, classify(runs.map((r) => intervalOf(r, m, kind)))]));
    const columns: Column[] = [
      { id: "name", label: "run", value: (r) => r.name,
        cell: (r) => h("td", {}, h("button", { type: "button", class: "link",
                                                onclick: () => this.open(r.id) }, r.name)) },
      ...configKeys.map((key): Column => ({
        id: `config:${key}`, label: key,
        value: (r) => {
          const v = lookup(r.config, key);
          return typeof v === "number" ? v : v === undefined || v === null ? null : fmt(v);
        },
        cell: (r) => h("td", { class: "num", "data-config": key }, fmt(lookup(r.config, key))),
      })),
      ...metrics.map((m): Column => ({
        id: `metric:${m}`, label: m, desc: true, title: `${m}: ${KIND_TEXT[kind]}`,
        value: (r) => intervalOf(r, m, kind)?.mean ?? null,
        cell: (r, i) => {
          const mark = marks.get(m)![i];
          const iv = intervalOf(r, m, kind);
          return h("td", { class: "num metric-cell", "data-metric": m, "data-mark": mark,
                           title: mark ? MARKS[mark].text : null },
            h("span", { class: "iv" }, ...intervalParts(iv)),
            mark ? h("span", { class: "mark", "aria-label": MARKS[mark].text }, ` ${MARKS[mark].sign}`)
              : null);
        },
      })),
      ...latencyStages(runs).map((stage): Column => ({
        id: `latency:${stage}`, label: `${stage} p50 ms`,
        title: `median latency of the ${stage} stage per query (milliseconds)`,
        value: (r) => num(r.summary[`eval/latency_ms/${stage}_p50`]),
        cell: (r) => {
          const v = num(r.summary[`eval/latency_ms/${stage}_p50`]);
          return h("td", { class: "num", "data-latency": stage },
            v === null ? "–" : v.toPrecision(3));
        },
      })),
      {
        id: "queries", label: "queries", title: "queries done / queries in the eval set",
        value: (r) => queriesDone(r),
        cell: (r) => {
          const done = queriesDone(r);
          const total = queriesTotal(r);
          return h("td", { class: "num", "data-queries": "" },
            `${done ?? 0} / ${total ?? "?"}`);
        },
      },
      { id: "status", label: "status", value: (r) => r.status,
        cell: (r) => h("td", {}, h("span", { class: `status status-${r.status}` }, r.status)) },
    ];
    return columns;
  }

  private sorted(runs: RunInfo[], columns: Column[]): RunInfo[] {
    const col = columns.find((c) => c.id === this.sortKey);
    if (!col) return runs;
    const sign = this.sortDesc ? -1 : 1;
    const missing = (v: number | string | null) => v === null || (typeof v === "number" && Number.isNaN(v));
    return [...runs].sort((a, b) => {
      const va = col.value(a), vb = col.value(b);
      if (missing(va) || missing(vb)) return Number(missing(va)) - Number(missing(vb));
      if (typeof va === "number" && typeof vb === "number") return sign * (va - vb);
      return sign * String(va).localeCompare(String(vb), undefined, { numeric: true });
    });
  }
}

/** `0.512 [0.431, 0.593]` as the mean and a smaller bracket (the text stays the same). */
function intervalParts(iv: Interval | null): (HTMLElement | string)[] {
  const text = fmtInterval(iv);
  const at = text.indexOf(" [");
  if (at < 0) return [text];
  return [h("span", { class: "mean" }, text.slice(0, at)), " ",
          h("span", { class: "ci" }, text.slice(at + 1))];
}

function num(v: unknown): number | null {
  return typeof v === "number" && Number.isFinite(v) ? v : null;
}
