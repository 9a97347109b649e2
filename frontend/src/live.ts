// Live updates: one EventSource per open project. The server sends only what changed since
// the cursor (new points, run status and summary changes); the browser reconnects by itself
// and resumes from the last event id.

import { Json, OpInfo, RunInfo, query } from "./api";

export interface PointsEvent {
  run: string;
  key: string;
  steps: number[];
  times: (number | string)[];
  values: Json[];
  thinned: boolean;
}

export interface LiveHandlers {
  run: (run: RunInfo) => void;
  points: (batch: PointsEvent[]) => void;
  status: (status: "connecting" | "live" | "offline") => void;
  /** A control op that is new or changed status. */
  op: (op: OpInfo) => void;
  /** The experiment's controller started or ended. */
  controller: (state: { experiment: boolean; alive: boolean }) => void;
}

/** Points events are handed over in small batches, so that a key used as x axis and the
 *  keys plotted against it (logged in the same step) are matched together. */
const BATCH_MS = 60;

export class LiveClient {
  private source: EventSource | null = null;
  private pending: PointsEvent[] = [];
  private timer = 0;

  constructor(private handlers: LiveHandlers) {}

  /** Subscribe to `runs` of `project` (runs created later come too), from `cursor`; ops
   *  with id >= `opsFrom` are (re)sent, then every op change. */
  connect(project: string, cursor: string, runs: string[], opsFrom: number | null = null): void {
    this.close();
    this.handlers.status("connecting");
    const source = new EventSource(`/api/stream${query({ project, cursor,
                                                          runs: runs.join(","),
                                                          ops_from: opsFrom })}`);
    this.source = source;
    source.addEventListener("hello", (e) => {
      this.handlers.status("live");
      const hello = JSON.parse((e as MessageEvent).data || "{}");
      if (hello.controller) this.handlers.controller(hello.controller);
    });
    source.addEventListener("run", (e) => this.handlers.run(JSON.parse((e as MessageEvent).data)));
    source.addEventListener("op", (e) => this.handlers.op(JSON.parse((e as MessageEvent).data)));
    source.addEventListener("controller",
      (e) => this.handlers.controller(JSON.parse((e as MessageEvent).data)));
    source.addEventListener("points", (e) => {
      this.pending.push(JSON.parse((e as MessageEvent).data));
      if (!this.timer) {
        this.timer = window.setTimeout(() => {
          this.timer = 0;
          const batch = this.pending;
          this.pending = [];
          this.handlers.points(batch);
        }, BATCH_MS);
      }
    });
    source.onerror = () => this.handlers.status(source.readyState === EventSource.CLOSED
      ? "offline" : "connecting");
    source.onopen = () => this.handlers.status("live");
  }

  close(): void {
    this.source?.close();
    this.source = null;
    window.clearTimeout(this.timer);
    this.timer = 0;
    const batch = this.pending;
    this.pending = [];
    if (batch.length) this.handlers.points(batch);
  }
}

/** The cursor token the server understands: base64url of JSON {run id: last step known}. */
export function encodeCursor(steps: Record<string, number>): string {
  const bytes = new TextEncoder().encode(JSON.stringify(steps));
  let bin = "";
  bytes.forEach((b) => { bin += String.fromCharCode(b); });
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}
