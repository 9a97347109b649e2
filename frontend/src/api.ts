// Typed access to the dashboard's JSON API. Every call throws ApiError with the server's
// message on a 4xx/5xx answer, so views can show it in the page.

import type { RunArtifacts } from "./artifacts";

export interface Project {
  name: string;
  run_count: number;
  created: number;
  last_updated: number | null;
}

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

export interface RunInfo {
  id: string;
  name: string;
  project: string;
  status: string;
  group: string | null;
  tags: string[];
  notes: string | null;
  config: Record<string, Json>;
  summary: Record<string, Json>;
  parent: string | null;
  parent_step: number | null;
  created: number;
  finished: number | null;
  updated: number;
  last_step: number;
}

export interface RunList {
  project: string;
  total: number;
  runs: RunInfo[];
  config_keys: string[];
  summary_keys: string[];
  cursor: string;
}

export interface KeyInfo {
  key: string;
  runs: number;
  points: number;
  chartable: boolean;
  system: boolean;
}

export interface MediaItem {
  index: number;
  key: string;
  step: number;
  type: string;
  time: number;
  meta: Record<string, Json>;
}

export interface RunDetail extends RunInfo {
  metadata: Record<string, Json>;
  keys: { key: string; count: number; step_min: number; step_max: number; kinds: string[];
          system: boolean }[];
  lineage: { parent: { id: string; name: string; status: string } | null;
             children: { id: string; name: string; status: string; parent_step: number | null }[];
             tree: LineageNode[] };
  alerts: { title: string; text: string; level: string; step: number | null; time: number }[];
  media: MediaItem[];
}

/** A run of a clone family: the oldest ancestor first, parents before children. */
export interface LineageNode {
  id: string;
  name: string;
  status: string;
  parent: string | null;
  parent_step: number | null;
}

export type OpKind = "stop" | "resume" | "delete" | "clone";

/** A control op on a run, with where it came from and what became of it. */
export interface OpInfo {
  id: number;
  project: string;
  kind: OpKind;
  run: string | null;
  args: Record<string, Json>;
  source: string;
  actor: string | null;
  status: "pending" | "applied" | "rejected";
  reason: string | null;
  result: Record<string, Json>;
  created: number;
  applied: number | null;
}

export interface OpsList {
  project: string;
  ops: OpInfo[];
  more: boolean;
  ops_from: number;
  controller_alive: boolean;
  experiment: boolean;
  /** Config keys the engine sets for every run of an experiment (a clone cannot change them). */
  engine_keys: string[];
}

export interface OpArgs {
  purge?: boolean;
  changes?: Record<string, Json>;
  warm_start?: boolean;
  name?: string;
}

export interface Grid { lo: number; hi: number; buckets: number }

export type Encoded = number[] | { b64: string } | (number | string | null | boolean)[];

export interface RawSeries {
  run: string;
  mode: "exact" | "buckets";
  count: number;
  x?: Encoded;
  y?: Encoded;
  min?: Encoded;
  max?: Encoded;
  mean?: Encoded;
  n?: Encoded | { b64: string };
}

export interface ChartResponse {
  key: string;
  x: string;
  start: number | null;
  end: number | null;
  buckets: number;
  grid: Grid | null;
  series: RawSeries[];
}

/** A refusal or failure of the API, with the server's message. */
export class ApiError extends Error {
  constructor(message: string, readonly status: number) {
    super(message);
  }
}

type Params = Record<string, string | number | boolean | string[] | null | undefined>;

/** A query string; arrays repeat the parameter (filter=a&filter=b). */
export function query(params: Params): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v === null || v === undefined || v === "") continue;
    if (Array.isArray(v)) v.forEach((item) => q.append(k, item));
    else q.set(k, String(v));
  }
  const text = q.toString();
  return text ? `?${text}` : "";
}

let token: string | null = null;

/** Remember the dashboard token (from the page address printed by `runfleet show`). Every
 *  API call then sends it (writes always need it; reads do on a non-loopback server). The
 *  first call that presents it gets an HttpOnly cookie from the server, which opens the
 *  reads a header cannot be added to: images, the CSV download, the live stream. */
export function setToken(value: string | null): void {
  token = value;
}

function authHeaders(): Record<string, string> {
  return token ? { Authorization: `Bearer ${token}` } : {};
}

async function call<T>(path: string, params: Params = {}, init: RequestInit = {},
                       signal?: AbortSignal): Promise<T> {
  let res: Response;
  const headers = { ...authHeaders(), ...((init.headers as Record<string, string>) ?? {}) };
  try {
    res = await fetch(`/api/${path}${query(params)}`, {
      ...init, headers, signal, credentials: "same-origin",
    });
  } catch (err) {
    if ((err as Error).name === "AbortError") throw err;
    throw new ApiError("cannot reach the runfleet server (is `runfleet show` still running?)", 0);
  }
  if (!res.ok) {
    let message = `${res.status} ${res.statusText}`;
    try {
      const body = await res.json();
      if (body && typeof body.error === "string") message = body.error;
    } catch {
      /* not JSON: keep the status line */
    }
    throw new ApiError(message, res.status);
  }
  return (await res.json()) as T;
}

export const api = {
  projects: () => call<Project[]>("projects"),
  runs: (params: Params) => call<RunList>("runs", params),
  run: (project: string, run: string) => call<RunDetail>("run", { project, run }),
  runArtifacts: (project: string, run: string) =>
    call<RunArtifacts>("run/artifacts", { project, run }),
  keys: (project: string) => call<KeyInfo[]>("keys", { project }),
  series: (params: Params, signal?: AbortSignal) =>
    call<ChartResponse>("series", { ...params, encoding: "base64" }, {}, signal),
  mediaContent: (project: string, run: string, index: number) =>
    call<{ type: string; value: Json }>("media/file", { project, run, index }),
  updateRun: (project: string, run: string, body: { notes?: string; tags?: string[] }) =>
    call<RunInfo>("run", { project, run }, {
      method: "PATCH", headers: writeHeaders(), body: JSON.stringify(body),
    }),
  ops: (project: string, after = 0) =>
    call<OpsList>("ops", { project, after, limit: 10000 }),
  /** Ask for a control op on a run: the server answers the pending op (or refuses it). */
  requestOp: (project: string, run: string, kind: OpKind, args: OpArgs = {}) =>
    call<OpInfo>("ops", {}, {
      method: "POST", headers: writeHeaders(), body: JSON.stringify({ project, run, kind, args }),
    }),
  /** Delete a tracked run (not of an experiment) at once, softly; answers the run. */
  deleteRun: (project: string, run: string) =>
    call<RunInfo>("run/delete", {}, {
      method: "POST", headers: writeHeaders(), body: JSON.stringify({ project, run }),
    }),
  /** Restore a tracked run deleted with deleteRun; answers the run. */
  restoreRun: (project: string, run: string) =>
    call<RunInfo>("run/restore", {}, {
      method: "POST", headers: writeHeaders(), body: JSON.stringify({ project, run }),
    }),
};

function writeHeaders(): Record<string, string> {
  return { "Content-Type": "application/json", ...authHeaders() };
}

/** The address of a media file, for an <img>: no header can be added there, so on a
 *  server that wants the token for reads, the cookie set by the first API call opens it. */
export function mediaUrl(project: string, run: string, index: number): string {
  return `/api/media/file${query({ project, run, index })}`;
}

/** The CSV export's address, for a download link (opened by the cookie, as mediaUrl). */
export function exportUrl(project: string, runs: string[], keys: string[] = []): string {
  return `/api/export.csv${query({ project, runs: runs.join(","), keys: keys.join(",") })}`;
}

function b64bytes(text: string): Uint8Array {
  const bin = atob(text);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** A float array from the API: base64 float64, or JSON numbers ("NaN", "Infinity" strings,
 *  null for an empty bucket, which becomes NaN). */
export function decodeFloats(value: Encoded | undefined): Float64Array {
  if (!value) return new Float64Array(0);
  if (!Array.isArray(value)) return new Float64Array(b64bytes(value.b64).buffer);
  const out = new Float64Array(value.length);
  value.forEach((v, i) => {
    out[i] = v === null ? NaN : typeof v === "boolean" ? Number(v) : Number(v);
  });
  return out;
}

/** An int array from the API: base64 int32 or JSON numbers. */
export function decodeInts(value: Encoded | undefined): Int32Array {
  if (!value) return new Int32Array(0);
  if (!Array.isArray(value)) return new Int32Array(b64bytes(value.b64).buffer);
  return Int32Array.from(value.map((v) => Number(v)));
}
