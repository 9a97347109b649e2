// Pure helpers for RAG eval runs (config trainer "rag", logged by Experiment.run_evals):
// which keys are interval bounds, the metrics a run's summary holds with their intervals,
// which run is best per metric and which are not distinguishable from it. No DOM here.

import { Json, RunInfo } from "./api";
import { lookup } from "./dom";

/** The two interval kinds an eval run logs: the 95% interval for the mean over the whole
 *  eval set (`_ci_`, closes when every query is done) and the anytime-valid one (`_cs_`). */
export type IntervalKind = "ci" | "cs";

export interface Bound {
  base: string;
  kind: IntervalKind;
  edge: "lo" | "hi";
}

const BOUND = /^(.+)_(ci|cs)_(low|high)$/;

/** `eval/ndcg@10_ci_low` -> {base: "eval/ndcg@10", kind: "ci", edge: "lo"}; null for a key
 *  that is no interval bound of an `eval/` metric. */
export function parseBound(key: string): Bound | null {
  const m = BOUND.exec(key);
  if (!m || !m[1].startsWith("eval/")) return null;
  return { base: m[1], kind: m[2] as IntervalKind, edge: m[3] === "low" ? "lo" : "hi" };
}

/** The keys of `key`'s interval of `kind`, when `key` is an `eval/` metric and both are
 *  logged (`known`); else null. */
export function boundKeys(key: string, known: Set<string>, kind: IntervalKind | "none"
): { lo: string; hi: string } | null {
  if (kind === "none" || !key.startsWith("eval/") || parseBound(key)) return null;
  const lo = `${key}_${kind}_low`;
  const hi = `${key}_${kind}_high`;
  return known.has(lo) && known.has(hi) ? { lo, hi } : null;
}

/** Whether a run is a RAG eval run (its config says trainer "rag"). */
export function isEvalRun(run: { config: Record<string, Json> }): boolean {
  return lookup(run.config, "trainer") === "rag";
}

const FAMILIES = ["ndcg", "recall", "precision", "mrr", "map", "hit", "exact_match", "f1",
                  "rougeL", "bleu"];

/** Sort key of a metric name: known families in a fixed order, then k ascending. */
function metricOrder(name: string): [number, string, number] {
  const at = name.indexOf("@");
  const family = at < 0 ? name : name.slice(0, at);
  const k = at < 0 ? 0 : Number(name.slice(at + 1)) || 0;
  const i = FAMILIES.indexOf(family);
  return [i < 0 ? FAMILIES.length : i, family, k];
}

export function compareMetrics(a: string, b: string): number {
  const [fa, na, ka] = metricOrder(a);
  const [fb, nb, kb] = metricOrder(b);
  return fa - fb || na.localeCompare(nb) || ka - kb;
}

/** Metric names (`ndcg@10`, `f1`, ...) that some run's summary holds as `eval/<m>` with
 *  both bounds of its `kind` interval, in display order. */
export function evalMetrics(runs: RunInfo[], kind: IntervalKind = "ci"): string[] {
  const names = new Set<string>();
  for (const r of runs) {
    for (const key of Object.keys(r.summary)) {
      if (!key.startsWith("eval/") || parseBound(key)) continue;
      if (typeof r.summary[`${key}_${kind}_low`] === "number"
          && typeof r.summary[`${key}_${kind}_high`] === "number") {
        names.add(key.slice(5));
      }
    }
  }
  return [...names].sort(compareMetrics);
}

/** The cut-offs k of metrics named `<family>@k`, ascending. */
export function metricKs(metrics: string[]): number[] {
  const ks = new Set<number>();
  for (const m of metrics) {
    const at = m.indexOf("@");
    if (at >= 0 && Number.isFinite(Number(m.slice(at + 1)))) ks.add(Number(m.slice(at + 1)));
  }
  return [...ks].sort((a, b) => a - b);
}

/** Metrics to show for a choice of k ("all", or a cut-off): those at that k, and those
 *  without one (answer metrics). */
export function metricsAt(metrics: string[], k: string): string[] {
  if (k === "all") return metrics;
  return metrics.filter((m) => !m.includes("@") || m.endsWith(`@${k}`));
}

/** Latency stages whose p50 some run's summary holds, pipeline order first. */
export function latencyStages(runs: RunInfo[]): string[] {
  const order = ["embed", "retrieve", "rerank", "generate"];
  const found = new Set<string>();
  for (const r of runs) {
    for (const key of Object.keys(r.summary)) {
      const m = /^eval\/latency_ms\/(.+)_p50$/.exec(key);
      if (m) found.add(m[1]);
    }
  }
  return [...found].sort((a, b) => {
    const ia = order.indexOf(a), ib = order.indexOf(b);
    return (ia < 0 ? order.length : ia) - (ib < 0 ? order.length : ib) || a.localeCompare(b);
  });
}

export interface Interval {
  mean: number;
  low: number;
  high: number;
}

function num(v: Json | undefined): number {
  return typeof v === "number" ? v : NaN;
}

/** A run's mean of `metric` and its interval of `kind`, from its summary; null if absent. */
export function intervalOf(run: RunInfo, metric: string, kind: IntervalKind = "ci"
): Interval | null {
  const s = run.summary;
  const mean = num(s[`eval/${metric}`]);
  if (!Number.isFinite(mean)) return null;
  return { mean, low: num(s[`eval/${metric}_${kind}_low`]),
           high: num(s[`eval/${metric}_${kind}_high`]) };
}

/** How a run's value of a metric stands against the best run's (higher is better):
 *  `best` (the highest mean), `tie` (its interval overlaps a best run's: not
 *  distinguishable at this level), `worse` (its interval lies wholly below the best's). */
export type Mark = "best" | "tie" | "worse";

/** The mark of each value (null where there is none). */
export function classify(values: (Interval | null)[]): (Mark | null)[] {
  let top = -Infinity;
  for (const v of values) if (v && Number.isFinite(v.mean) && v.mean > top) top = v.mean;
  if (!Number.isFinite(top)) return values.map(() => null);
  const best = values.filter((v): v is Interval => !!v && v.mean === top);
  return values.map((v) => {
    if (!v || !Number.isFinite(v.mean)) return null;
    if (v.mean === top) return "best";
    if (!Number.isFinite(v.low) || !Number.isFinite(v.high)) return "tie";
    const overlaps = best.some((b) => !(Number.isFinite(b.low) && Number.isFinite(b.high))
      || (v.high >= b.low && v.low <= b.high));
    return overlaps ? "tie" : "worse";
  });
}

/** A metric with its interval as the comparison table prints it: `0.512 [0.431, 0.593]`. */
export function fmtInterval(v: Interval | null, digits = 3): string {
  if (!v) return "–";
  const f = (x: number) => (Number.isFinite(x) ? x.toFixed(digits) : "?");
  return `${f(v.mean)} [${f(v.low)}, ${f(v.high)}]`;
}

/** Queries in the eval set: the engine logs `epoch` = queries done / queries in the set with
 *  every query (one step per query), so step / epoch is the set's size. */
export function queriesTotal(run: RunInfo): number | null {
  const step = num(run.summary.step);
  const epoch = num(run.summary.epoch);
  if (Number.isFinite(step) && Number.isFinite(epoch) && epoch > 0) return Math.round(step / epoch);
  return null;
}

/** Queries done so far (as of the last shard's end). */
export function queriesDone(run: RunInfo): number | null {
  const done = num(run.summary["eval/queries_done"]);
  return Number.isFinite(done) ? done : null;
}
