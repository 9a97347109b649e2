// The run detail's "Artefacts" section: the versions a run logged and used, each with its
// aliases, type, size and lineage (the run that logged it, the runs that used it; a run of
// this project opens on click).

import { ApiError, api } from "./api";
import { fill, fmtTime, h, notice } from "./dom";

export interface ArtifactRunLink { project: string; run: string; purged: boolean }

export interface ArtifactVersion {
  project: string;
  name: string;
  version: string;
  type: string;
  aliases: string[];
  size: number;
  files: number;
  digest: string;
  description: string | null;
  created: number;
  logged_by: ArtifactRunLink | null;
  used_by: ArtifactRunLink[];
}

export interface RunArtifacts { logged: ArtifactVersion[]; used: ArtifactVersion[] }

function fmtSize(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let size = bytes;
  let unit = 0;
  while (size >= 1024 && unit < units.length - 1) {
    size /= 1024;
    unit += 1;
  }
  return unit ? `${size.toFixed(1)} ${units[unit]}` : `${bytes} B`;
}

/** A section body that loads the artefacts of run `runId` of `project`; `open` shows a run. */
export function artifactsView(project: string, runId: string,
                              open: (run: string) => void): HTMLElement {
  const el = h("div", { id: "detail-artifacts" }, notice("loading", "Loading artefacts…"));
  const runLink = (link: ArtifactRunLink | null): HTMLElement | string => {
    if (!link) return "";
    const label = link.project === project ? link.run : `${link.project}/${link.run}`;
    if (link.purged) return h("span", { class: "muted" }, `${label} (purged)`);
    if (link.project !== project || link.run === runId) return label;
    return h("button", { type: "button", class: "link", onclick: () => open(link.run) }, label);
  };
  const table = (role: "logged" | "used", items: ArtifactVersion[]): HTMLElement => {
    if (!items.length) {
      return h("p", { class: "muted", "data-role": role },
        role === "logged" ? "Logged no artefacts." : "Used no artefacts.");
    }
    return h("div", { class: "table-wrap" }, h("table", { class: "artifacts-table", "data-role": role },
      h("caption", {}, role === "logged" ? "Logged" : "Used"),
      h("thead", {}, h("tr", {}, ...["artefact", "version", "aliases", "type", "size", "files",
                                      "logged by", "used by", "created"]
        .map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, ...items.map((a) => h("tr", { "data-artifact": `${a.name}:${a.version}` },
        h("td", { title: a.description ?? "" },
          a.project === project ? a.name : `${a.project}/${a.name}`),
        h("td", {}, a.version), h("td", {}, a.aliases.join(", ")), h("td", {}, a.type),
        h("td", { class: "num" }, fmtSize(a.size)), h("td", { class: "num" }, a.files),
        h("td", {}, runLink(a.logged_by)),
        h("td", { class: "users" }, ...a.used_by.flatMap((u, i) => [i ? ", " : "", runLink(u)])),
        h("td", {}, fmtTime(a.created)))))));
  };
  void api.runArtifacts(project, runId).then((result) => {
    fill(el, table("logged", result.logged), table("used", result.used));
    el.dataset.loaded = "1";
  }, (err: unknown) => {
    fill(el, notice("error", err instanceof ApiError ? err.message : String(err)));
  });
  return el;
}
