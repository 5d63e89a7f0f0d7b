/**
 * The pure part of `qvm cp`: which words name a VM side, which way a copy goes, where each source
 * lands (cp's rules), guest paths and the guest's file listing. Nothing here touches the world.
 */
import { NotFoundError, UsageError } from "../errors.ts";

/** One operand of a copy: a host path, or a path in a VM. */
export type CopyOperand =
  | { kind: "host"; path: string }
  | { kind: "vm"; vm: string; path: string };

/**
 * Reads one word of `qvm cp`: `NAME:PATH` names a path in a VM when the text before the first
 * `:` holds no `/` and is the name or id of an existing VM (`isVm`); anything else is a host path
 * (`./web1:notes`, `/srv/a:b` and `nosuchvm:x` are host paths).
 */
export function parseOperand(text: string, isVm: (name: string) => boolean): CopyOperand {
  const colon = text.indexOf(":");
  if (colon > 0) {
    const name = text.slice(0, colon);
    if (!name.includes("/") && isVm(name)) {
      return { kind: "vm", vm: name, path: text.slice(colon + 1) };
    }
  }
  return { kind: "host", path: text };
}

/** A copy's direction and its operands, once checked. */
export interface CopyRequest {
  /** `in`: host to VM; `out`: VM to host. */
  direction: "in" | "out";
  /** The VM as the user named it. */
  vm: string;
  sources: string[];
  dest: string;
}

/**
 * Checks that exactly one side is in a VM (all sources in one VM and the destination on the host,
 * or all sources on the host and the destination in a VM) and returns the copy's shape.
 */
export function copyRequest(operands: readonly CopyOperand[]): CopyRequest {
  if (operands.length < 2) throw new UsageError("qvm cp: give a source and a destination");
  const sources = operands.slice(0, -1);
  const dest = operands[operands.length - 1];
  const vmSources = sources.filter((s) => s.kind === "vm");
  if (dest.kind === "vm") {
    if (vmSources.length > 0) {
      throw new UsageError(
        "qvm cp: both sides are in VMs; one side must be the host (copy out, then in)",
      );
    }
    return { direction: "in", vm: dest.vm, sources: sources.map((s) => s.path), dest: dest.path };
  }
  if (vmSources.length === 0) {
    // A word shaped like VM:PATH whose VM does not exist is most likely a typo.
    const shaped = operands.map((o) => /^([^/:]+):/.exec(o.path)?.[1]).find((n) => n);
    throw new UsageError(
      "qvm cp: no side is in a VM; write VM:PATH with the name or id of an existing VM" +
        (shaped ? ` (there is no VM '${shaped}')` : ""),
    );
  }
  if (vmSources.length < sources.length) {
    throw new UsageError("qvm cp: the sources must all be on one side (all in the VM or all here)");
  }
  const vm = (vmSources[0] as { vm: string }).vm;
  if (vmSources.some((s) => (s as { vm: string }).vm !== vm)) {
    throw new UsageError("qvm cp: the sources must all be in one VM");
  }
  return { direction: "out", vm, sources: vmSources.map((s) => s.path), dest: dest.path };
}

/** What is at a path: a regular file, a directory, something else, or nothing. */
export type PathKind = "file" | "dir" | "other" | "missing";

/** The file type bits of a `st_mode`, as a PathKind. */
export function kindOfMode(mode: number): PathKind {
  const type = mode & 0o170000;
  if (type === 0o100000) return "file";
  if (type === 0o040000) return "dir";
  return "other";
}

/** A source as the planner sees it (checked: it exists, and is a file or, with -r, a directory). */
export interface PlannedSource {
  /** As the user wrote it, for messages (`web1:/etc/hosts`). */
  shown: string;
  /** The path, resolved (absolute in the guest). */
  path: string;
  kind: "file" | "dir";
}

/** The destination as it is now. */
export interface DestState {
  shown: string;
  /** The path, resolved, without trailing slashes (`/` stays `/`). */
  path: string;
  kind: PathKind;
  /** The written path ended in `/` (it must then be a directory, or become one). */
  trailingSlash: boolean;
  /** Whether the destination's parent is a directory (asked only when the destination is missing). */
  parentIsDir: boolean;
}

/** Where one source goes. */
export interface CopyTarget {
  source: PlannedSource;
  /** The path it is copied to. */
  path: string;
  /** Whether a directory is already there (a directory source then merges into it). */
  exists: boolean;
}

/** `a/b/` → `b`; `/` → `` (a source named `.`, `..` or `/` copies its contents). */
export function baseName(path: string): string {
  const trimmed = path.replace(/\/+$/, "");
  return trimmed.slice(trimmed.lastIndexOf("/") + 1);
}

/** `a/b` → `a`; `/a` → `/`; `a` → `.`. */
export function dirName(path: string): string {
  const trimmed = path.length > 1 ? path.replace(/\/+$/, "") : path;
  const slash = trimmed.lastIndexOf("/");
  if (slash === -1) return ".";
  return slash === 0 ? "/" : trimmed.slice(0, slash);
}

/** `dir` + `/` + `name`, without doubling a slash. */
export function joinPath(dir: string, name: string): string {
  return dir.endsWith("/") ? `${dir}${name}` : `${dir}/${name}`;
}

/** The path a source lands at inside directory `dir` (`.`, `..` and `/` land in `dir` itself). */
export function pathInDir(dir: string, source: string): string {
  const base = baseName(source);
  return base === "" || base === "." || base === ".." ? dir : joinPath(dir, base);
}

/**
 * Where each source lands, by cp's rules: into DEST when it is a directory (it must be one for
 * several sources), else as DEST. `kindAt(path)` tells what is at a path inside DEST. Throws a
 * UsageError or NotFoundError, before anything is copied, for what cp would refuse.
 */
export function planTargets(
  sources: readonly PlannedSource[],
  dest: DestState,
  kindAt: (path: string) => PathKind,
): CopyTarget[] {
  if (dest.kind === "other") {
    throw new UsageError(`qvm cp: '${dest.shown}' is not a regular file or directory`);
  }
  const intoDir = dest.kind === "dir" || sources.length > 1;
  if (intoDir) {
    if (dest.kind === "missing") {
      throw new NotFoundError(`qvm cp: target '${dest.shown}': no such directory`);
    }
    if (dest.kind !== "dir") {
      throw new UsageError(`qvm cp: target '${dest.shown}' is not a directory`);
    }
    const seen = new Map<string, string>();
    return sources.map((source) => {
      const path = pathInDir(dest.path, source.path);
      const earlier = seen.get(path);
      if (earlier !== undefined) {
        throw new UsageError(
          `qvm cp: '${source.shown}' and '${earlier}' would both be copied to '${path}'`,
        );
      }
      seen.set(path, source.shown);
      return checkedTarget(source, path, kindAt(path));
    });
  }
  const [source] = sources;
  if (dest.kind === "missing") {
    if (dest.trailingSlash && source.kind === "file") {
      throw new NotFoundError(`qvm cp: target '${dest.shown}': no such directory`);
    }
    if (!dest.parentIsDir) {
      throw new NotFoundError(
        `qvm cp: cannot create '${dest.shown}': its folder does not exist`,
      );
    }
  }
  return [checkedTarget(source, dest.path, dest.kind)];
}

function checkedTarget(source: PlannedSource, path: string, kind: PathKind): CopyTarget {
  if (kind === "other") {
    throw new UsageError(`qvm cp: cannot overwrite '${path}': not a regular file or directory`);
  }
  if (source.kind === "file" && kind === "dir") {
    throw new UsageError(
      `qvm cp: cannot overwrite directory '${path}' with non-directory '${source.shown}'`,
    );
  }
  if (source.kind === "dir" && kind === "file") {
    throw new UsageError(
      `qvm cp: cannot overwrite non-directory '${path}' with directory '${source.shown}'`,
    );
  }
  return { source, path, exists: kind === "dir" };
}

/**
 * A guest path as given after `VM:`, made absolute: empty, `~` and `~/...` start at `home`, and
 * so does any relative path (as scp reads a remote path). Trailing slashes are kept.
 */
export function guestPath(path: string, home: string): string {
  if (path === "" || path === "~") return home;
  if (path.startsWith("~/")) return joinPath(home, path.slice(2));
  if (path.startsWith("/")) return path;
  return joinPath(home, path);
}

/** One entry of a guest directory tree, as its listing gives it. */
export interface TreeEntry {
  /** Path below the listed directory (`a/b.txt`). */
  rel: string;
  /** `f` file, `d` directory, `l` symlink; other letters are other kinds (skipped). */
  type: string;
  /** Permission bits (07777). */
  mode: number;
  size: number;
  /** A symlink's target. */
  link: string;
}

/** The `find -printf` format of {@link parseTreeListing}: two NUL-terminated fields per entry. */
export const TREE_FORMAT = "%y %m %s %P\\0%l\\0";

/** Parses a listing made with {@link TREE_FORMAT}; throws on a malformed one. */
export function parseTreeListing(text: string): TreeEntry[] {
  const fields = text.split("\0");
  // Two NUL-terminated fields per entry: an even count, and nothing after the last NUL.
  if (fields.pop() !== "" || fields.length % 2 !== 0) {
    throw new Error("the guest's file listing is cut short");
  }
  const entries: TreeEntry[] = [];
  for (let i = 0; i < fields.length; i += 2) {
    const match = /^(\S) ([0-7]+) (\d+) ([\s\S]*)$/.exec(fields[i]);
    if (!match || match[4] === "") {
      throw new Error(`the guest's file listing has a line qvm cannot read: '${fields[i]}'`);
    }
    entries.push({
      type: match[1],
      mode: parseInt(match[2], 8) & 0o7777,
      size: Number(match[3]),
      rel: match[4],
      link: fields[i + 1],
    });
  }
  return entries;
}

/** How a copy goes: `auto` takes the agent when the VM has one that answers, else scp. */
export type CopyRoute = "auto" | "agent" | "ssh";

/** What the copy reports while it runs. */
export interface CopyProgress {
  /** Bytes copied so far, of `total`. */
  done: number;
  total: number;
  /** The file being copied, as a path on its side. */
  current: string;
}

/** Options of `copyFiles` (copy.ts). */
export interface CopyOptions {
  recursive: boolean;
  via: CopyRoute;
  onProgress?: (progress: CopyProgress) => void;
  /** Stops the copy between chunks (Ctrl-C); what it started is cleaned up first. */
  signal?: AbortSignal;
  /** A file left out (a device, a socket...), or a route taken instead of another. */
  warn?: (message: string) => void;
  /** True when scp may draw its own progress meter (a terminal, no --json). */
  scpProgress?: boolean;
}

/** What a copy did. scp does not say, so its counts are null. */
export interface CopyResult {
  via: "agent" | "ssh";
  files: number | null;
  directories: number | null;
  symlinks: number | null;
  bytes: number | null;
  skipped: number | null;
}
