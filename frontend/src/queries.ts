// Per-query drill-down of an eval run (in its detail view): the run's `eval/queries` tables
// (one per shard) as one table with a row per query done: query id, its metrics, the
// passages retrieved and the answer; sortable by any metric. Clicking a query shows its
// ranked documents from the `eval/rankings` table of the same shard. Given another eval run
// of the project, each query's difference in a metric (the paired comparison, query by
// query: every run sees the queries in the same order) and both rankings side by side.
// Tables come from the media endpoint (/api/media/file), fetched once each.

import { ApiError, Json, MediaItem, RunDetail, api } from "./api";
import { fill, fmt, h, notice } from "./dom";
import { compareMetrics, isEvalRun, metricKs, metricsAt } from "./evals";
import { state } from "./state";

export const QUERIES_KEY = "eval/queries";
export const RANKINGS_KEY = "eval/rankings";
const MAX_ROWS = 1000;
const PASSAGE_CHARS = 160;
const FIXED = new Set(["query_id", "query_index", "passages", "answer"]);

/** One query done by a run, from its per-query table. */
export interface QueryRow {
  id: string;
  index: number | null;
  /** The step of the table it came from (queries done at that shard's end). */
  step: number;
  metrics: Record<string, number | null>;
  passages: string;
  answer: string | null;
}

/** A document of a query's ranking (document level: a chunk counts as its document). */
export interface Ranked {
  doc: string;
  rank: number;
  score: number | null;
}

function toNum(v: Json | undefined): number | null {
  const n = typeof v === "number" ? v : typeof v === "string" && v !== "" ? Number(v) : NaN;
  return Number.isFinite(n) ? n : null;
}

function tableOf(value: Json): { columns: string[]; data: Json[][] } | null {
  const t = value as { columns?: unknown; data?: unknown } | null;
  if (!t || !Array.isArray(t.columns) || !Array.isArray(t.data)) return null;
  return { columns: t.columns.map(String), data: t.data as Json[][] };
}

/** Rows of per-query tables, one per query: a later table's row replaces an earlier one
 *  (as `Experiment.per_query` keeps the last); and the metric columns they hold. */
export function queryRows(tables: { step: number; value: Json }[]
): { rows: Map<string, QueryRow>; metrics: string[] } {
  const rows = new Map<string, QueryRow>();
  const metrics = new Set<string>();
  for (const { step, value } of [...tables].sort((a, b) => a.step - b.step)) {
    const t = tableOf(value);
    if (!t) continue;
    const col = (name: string) => t.columns.indexOf(name);
    const names = t.columns.filter((c) => !FIXED.has(c));
    names.forEach((m) => metrics.add(m));
    for (const r of t.data) {
      const id = String(r[col("query_id")]);
      const answer = col("answer") >= 0 ? r[col("answer")] : null;
      rows.delete(id); // keep the order in which queries were done
      rows.set(id, {
        id, index: toNum(r[col("query_index")]), step,
        metrics: Object.fromEntries(names.map((m) => [m, toNum(r[col(m)])])),
        passages: col("passages") >= 0 ? String(r[col("passages")] ?? "") : "",
        answer: answer === null || answer === undefined ? null : String(answer),
      });
    }
  }
  return { rows, metrics: [...metrics].sort(compareMetrics) };
}

/** A rankings table as each query's documents in rank order. */
export function rankingsOf(value: Json): Map<string, Ranked[]> {
  const out = new Map<string, Ranked[]>();
  const t = tableOf(value);
  if (!t) return out;
  const [q, d, r, s] = ["query_id", "doc_id", "rank", "score"].map((c) => t.columns.indexOf(c));
  for (const row of t.data) {
    const id = String(row[q]);
    if (!out.has(id)) out.set(id, []);
    out.get(id)!.push({ doc: String(row[d]), rank: toNum(row[r]) ?? 0, score: toNum(row[s]) });
  }
  out.forEach((list) => list.sort((a, b) => a.rank - b.rank));
  return out;
}

/** The per-query tables of one run, loaded once each, and its rankings by shard. */
class RunQueries {
  rows = new Map<string, QueryRow>();
  metrics: string[] = [];
  private tables: { step: number; value: Json }[] = [];
  private loaded = new Set<number>();
  private rankings = new Map<number, Promise<Map<string, Ranked[]>>>();

  constructor(readonly project: string, readonly run: string, readonly name: string,
              public media: MediaItem[]) {}

  /** Fetch the per-query tables not loaded yet (all of them the first time). */
  async load(): Promise<void> {
    const items = this.media.filter((m) => m.key === QUERIES_KEY && !this.loaded.has(m.index));
    const got = await Promise.all(items.map((m) =>
      api.mediaContent(this.project, this.run, m.index).then((c) => ({ step: m.step, value: c.value }))));
    items.forEach((m) => this.loaded.add(m.index));
    this.tables.push(...got);
    const { rows, metrics } = queryRows(this.tables);
    this.rows = rows;
    this.metrics = metrics;
  }

  /** A query's ranked documents: from the rankings table of the shard it was done in. */
  async ranking(query: string): Promise<Ranked[]> {
    const row = this.rows.get(query);
    const items = this.media.filter((m) => m.key === RANKINGS_KEY);
    const same = items.filter((m) => row && m.step === row.step);
    for (const group of [same, items]) {
      for (const step of [...new Set(group.map((m) => m.step))].reverse()) {
        if (!this.rankings.has(step)) {
          const fetches = items.filter((m) => m.step === step).map((m) =>
            api.mediaContent(this.project, this.run, m.index).then((c) => rankingsOf(c.value)));
          this.rankings.set(step, Promise.all(fetches).then((maps) => {
            const merged = new Map<string, Ranked[]>();
            maps.forEach((m) => m.forEach((v, k) => merged.set(k, v)));
            return merged;
          }));
        }
        const found = (await this.rankings.get(step)!).get(query);
        if (found) return found;
      }
    }
    return [];
  }
}

export class QueryDrillDown {
  readonly el: HTMLElement;
  private data: RunQueries;
  private other: RunQueries | null = null;
  private toolbar: HTMLElement = h("div", { class: "toolbar" });
  private status: HTMLElement = h("div", { class: "queries-status", role: "status" });
  private tableEl: HTMLElement = h("div", { class: "queries-table-wrap" });
  private docsEl: HTMLElement = h("div", { id: "query-docs", class: "query-docs" });
  private sortKey = "";
  private sortDesc = true;
  /** Metrics at this cut-off are shown ("" = the largest logged, "all"). */
  private k = "";
  private deltaMetric = "";
  private selected: string | null = null;

  constructor(run: RunDetail, private open: (run: string) => void) {
    this.data = new RunQueries(run.project, run.id, run.name, run.media);
    this.el = h("div", { class: "queries", id: "queries" },
      this.toolbar, this.status, this.tableEl, this.docsEl);
  }

  /** Whether a run has a per-query drill-down (an eval run, or per-query tables logged). */
  static applies(run: RunDetail): boolean {
    return isEvalRun(run) || run.media.some((m) => m.key === QUERIES_KEY);
  }

  /** Queries done, as loaded. */
  get count(): number {
    return this.data.rows.size;
  }

  async load(): Promise<void> {
    this.status.replaceChildren(notice("loading", "Loading per-query results…"));
    try {
      await this.data.load();
      this.status.replaceChildren();
    } catch (err) {
      this.status.replaceChildren(notice("error", err instanceof ApiError ? err.message : String(err)));
      return;
    }
    this.render();
  }

  /** The run's media list changed (a shard finished): load the new tables. */
  async refresh(media: MediaItem[]): Promise<void> {
    this.data.media = media;
    try {
      await this.data.load();
    } catch {
      return; // the next change tries again
    }
    this.render();
  }

  private async compareWith(id: string): Promise<void> {
    if (!id) {
      this.other = null;
      this.render();
      return;
    }
    const run = state.run(id);
    this.status.replaceChildren(notice("loading", "Loading the other run's queries…"));
    try {
      const detail = await api.run(this.data.project, id);
      const other = new RunQueries(this.data.project, id, run?.name ?? detail.name, detail.media);
      await other.load();
      this.other = other;
      this.status.replaceChildren();
    } catch (err) {
      this.status.replaceChildren(notice("error", err instanceof ApiError ? err.message : String(err)));
      return;
    }
    this.render();
    if (this.selected) void this.showDocs(this.selected);
  }

  private delta(row: QueryRow): number | null {
    const other = this.other?.rows.get(row.id);
    const a = row.metrics[this.deltaMetric];
    const b = other?.metrics[this.deltaMetric];
    return a === null || a === undefined || b === null || b === undefined ? null : a - b;
  }

  private render(): void {
    const metricsAll = this.data.metrics;
    const ks = metricKs(metricsAll);
    const k = this.k || (ks.length ? String(ks[ks.length - 1]) : "all");
    const metrics = metricsAt(metricsAll, k);
    if (!metrics.includes(this.deltaMetric)) this.deltaMetric = metrics[0] ?? "";
    this.renderToolbar(ks, k, metrics);
    const rows = [...this.data.rows.values()];
    if (!rows.length) {
      this.tableEl.replaceChildren(h("p", { class: "muted" }, "No query done yet: the table "
        + "fills as shards finish."));
      return;
    }
    const comparing = this.other !== null;
    const answers = rows.some((r) => r.answer !== null);
    const value = (r: QueryRow): number | string | null => {
      if (this.sortKey === "id") return r.id;
      if (this.sortKey === "index") return r.index;
      if (this.sortKey === "delta") return this.delta(r);
      if (this.sortKey.startsWith("metric:")) return r.metrics[this.sortKey.slice(7)] ?? null;
      return null;
    };
    if (this.sortKey) {
      const sign = this.sortDesc ? -1 : 1;
      rows.sort((a, b) => {
        const va = value(a), vb = value(b);
        if (va === null || vb === null) return Number(va === null) - Number(vb === null);
        if (typeof va === "number" && typeof vb === "number") return sign * (va - vb);
        return sign * String(va).localeCompare(String(vb), undefined, { numeric: true });
      });
    }
    const header = (id: string, label: string, desc: boolean, title?: string) => {
      const active = this.sortKey === id ? (this.sortDesc ? "descending" : "ascending") : "none";
      return h("th", { scope: "col", "aria-sort": active, title: title ?? null },
        h("button", {
          type: "button", class: "th-sort", "data-sort": id,
          onclick: () => {
            if (this.sortKey === id) this.sortDesc = !this.sortDesc;
            else {
              this.sortKey = id;
              this.sortDesc = desc;
            }
            this.render();
          },
        }, label, active === "ascending" ? " ▲" : active === "descending" ? " ▼" : ""));
    };
    const shown = rows.slice(0, MAX_ROWS);
    const deltaTitle = `${this.deltaMetric} of this run minus ${this.other?.name ?? ""}'s`;
    const table = h("table", { class: "queries-table", id: "queries-table" },
      h("thead", {}, h("tr", {},
        header("id", "query", false), header("index", "#", false, "position in the eval set"),
        ...metrics.map((m) => header(`metric:${m}`, m, true)),
        comparing ? header("delta", `Δ ${this.deltaMetric}`, true, deltaTitle) : null,
        h("th", { scope: "col" }, "passages"),
        answers ? h("th", { scope: "col" }, "answer") : null)),
      h("tbody", {}, ...shown.map((r) => {
        const d = comparing ? this.delta(r) : null;
        return h("tr", { "data-query": r.id, class: r.id === this.selected ? "selected" : null },
          h("td", {}, h("button", {
            type: "button", class: "link query-link", title: "show its ranked documents",
            onclick: () => void this.showDocs(r.id),
          }, r.id)),
          h("td", { class: "num" }, r.index ?? ""),
          ...metrics.map((m) => h("td", { class: "num", "data-metric": m },
            r.metrics[m] === null || r.metrics[m] === undefined ? "–" : r.metrics[m]!.toFixed(3))),
          comparing ? h("td", { class: `num delta${d === null ? "" : d > 0 ? " up" : d < 0 ? " down" : ""}`,
                                "data-delta": d === null ? "" : String(d) },
            d === null ? "–" : `${d > 0 ? "+" : ""}${d.toFixed(3)}`) : null,
          h("td", { class: "passages", title: r.passages },
            r.passages.length > PASSAGE_CHARS ? `${r.passages.slice(0, PASSAGE_CHARS - 1)}…` : r.passages),
          answers ? h("td", { class: "answer" }, r.answer ?? "") : null);
      })));
    const notes: (HTMLElement | string)[] = [`${rows.length} quer${rows.length === 1 ? "y" : "ies"} done`];
    if (rows.length > MAX_ROWS) notes.push(`; the first ${MAX_ROWS} shown (sort to see others)`);
    if (comparing) {
      const ds = rows.map((r) => this.delta(r)).filter((v): v is number => v !== null);
      const mean = ds.length ? ds.reduce((a, b) => a + b, 0) / ds.length : NaN;
      notes.push(h("span", { id: "queries-delta-mean" },
        `; mean Δ ${this.deltaMetric} over ${ds.length} queries both runs did: `
        + (ds.length ? `${mean > 0 ? "+" : ""}${fmt(mean)}` : "–")));
    }
    this.tableEl.replaceChildren(h("p", { class: "muted", id: "queries-count" }, ...notes),
      h("div", { class: "table-wrap" }, table));
  }

  private renderToolbar(ks: number[], k: string, metrics: string[]): void {
    const kSelect = h("select", {
      id: "queries-k", "aria-label": "metrics at cut-off k",
      onchange: (e: Event) => {
        this.k = (e.target as HTMLSelectElement).value;
        this.render();
      },
    }, ...ks.map((v) => h("option", { value: String(v), selected: k === String(v) }, `@${v}`)),
    h("option", { value: "all", selected: k === "all" }, "all cut-offs"));
    const others = state.runs.filter((r) => r.id !== this.data.run && isEvalRun(r));
    const other = h("select", {
      id: "queries-compare", "aria-label": "compare each query with another run",
      onchange: (e: Event) => void this.compareWith((e.target as HTMLSelectElement).value),
    }, h("option", { value: "" }, "compare with… (none)"),
    ...others.map((r) => h("option", { value: r.id, selected: this.other?.run === r.id }, r.name)));
    const delta = this.other ? h("select", {
      id: "queries-delta", "aria-label": "metric of the difference",
      onchange: (e: Event) => {
        this.deltaMetric = (e.target as HTMLSelectElement).value;
        this.render();
      },
    }, ...metrics.map((m) => h("option", { value: m, selected: m === this.deltaMetric }, `Δ ${m}`)))
      : null;
    fill(this.toolbar, h("label", {}, "metrics ", kSelect),
      others.length ? h("label", {}, other) : null, delta ? h("label", {}, delta) : null);
  }

  private async showDocs(query: string): Promise<void> {
    this.selected = query;
    this.tableEl.querySelectorAll("tr[data-query]").forEach((tr) =>
      tr.classList.toggle("selected", (tr as HTMLElement).dataset.query === query));
    this.docsEl.dataset.query = query;
    this.docsEl.replaceChildren(notice("loading", `Loading the ranking of query ${query}…`));
    const runs = [this.data, ...(this.other ? [this.other] : [])];
    let lists: Ranked[][];
    try {
      lists = await Promise.all(runs.map((r) => r.ranking(query)));
    } catch (err) {
      this.docsEl.replaceChildren(notice("error", err instanceof ApiError ? err.message : String(err)));
      return;
    }
    if (this.selected !== query) return;
    // with two runs, the documents only one of them ranked stand out
    const only = (i: number): Set<string> => lists.length < 2 ? new Set<string>()
      : new Set(lists[i].map((d) => d.doc).filter((doc) => !lists[1 - i].some((o) => o.doc === doc)));
    const unique = lists.map((_, i) => only(i));
    const row = this.data.rows.get(query);
    this.docsEl.replaceChildren(
      h("h4", {}, `Query ${query}: ranked documents`,
        row?.index !== null && row?.index !== undefined ? ` (#${row.index})` : ""),
      h("div", { class: "docs-cols" }, ...runs.map((r, i) => h("table", {
        class: "docs-table", "data-run": r.run },
      h("caption", {}, i === 0 ? r.name : h("button", { type: "button", class: "link",
                                                         onclick: () => this.open(r.run) }, r.name)),
      h("thead", {}, h("tr", {}, ...["rank", "document", "score"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, ...(lists[i].length ? lists[i].map((d) => h("tr", {
        "data-doc": d.doc, class: unique[i].has(d.doc) ? "only" : null,
        title: unique[i].has(d.doc) ? "not in the other run's ranking" : null },
      h("td", { class: "num" }, d.rank), h("td", {}, d.doc),
      h("td", { class: "num" }, d.score === null ? "" : fmt(d.score))))
        : [h("tr", {}, h("td", { colspan: 3, class: "muted" }, "no ranking logged"))]))))));
  }
}
