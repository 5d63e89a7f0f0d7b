/**
 * `qvm ls`: every VM with its real status: a running VM's liveness from /proc, its run state
 * (paused, a fault state) from QEMU's run-state trace in its log, so listing asks no QEMU over
 * QMP (only one started by a qvm without the trace). On a terminal the status is coloured; live
 * VMs show their uptime and forwarded SSH port, ended ones how they ended. `--format` picks
 * `table`, `json`, a column list (`name,status,ssh`) or a template (`{{.Name}} {{.Ssh}}`).
 */
import type { Context } from "./context.ts";
import type { CommandSpec, ParsedArgs } from "./spec.ts";
import { UsageError } from "../errors.ts";
import { STATUSES } from "../vm/observe.ts";
import { type ListedVm, listJson, listVms, writeOutput } from "../vm/list.ts";
import { paintStatus, table } from "./_format.ts";

/** The command's arguments and flags. */
export const spec: CommandSpec = {
  name: "ls",
  summary: "list VMs and their real status",
  description:
    "--format table (default), json (as --json), a comma-separated column list, or a template\n" +
    "with {{.Field}} placeholders, one line per VM (\\t is a tab). Columns and fields: name,\n" +
    "status, pid, uptime, ssh (the host address forwarded to guest port 22), id, reason (how a\n" +
    "VM that is not running last ended). The run state comes from QEMU's own trace in its log:\n" +
    "ls asks no VM over QMP ('qvm status VM' does, and tells an unresponsive QEMU).",
  positionals: [],
  options: {
    status: {
      type: "string",
      value: "STATUS",
      description: `only VMs with this status (${STATUSES.join(", ")})`,
      complete: STATUSES,
    },
    format: {
      type: "string",
      value: "FORMAT",
      description: "table, json, a column list (name,status,ssh) or a template ({{.Name}})",
      complete: ["table", "json", "name,status,uptime,ssh", "{{.Name}}"],
    },
    quiet: { type: "boolean", short: "q", description: "print only VM names, one per line" },
  },
  examples: [
    "qvm ls",
    "qvm ls --status running --json",
    "qvm ls --format name,status,ssh",
    "qvm ls --format '{{.Name}}\\t{{.Ssh}}'",
  ],
};

/** The fields a column list or template may name, in the default table's order. */
export const FIELDS = ["name", "status", "pid", "uptime", "ssh", "id", "reason"] as const;
/** One field of a listed VM. */
export type Field = typeof FIELDS[number];

/** What one listed VM shows, every field as text (`-` when it has none). */
export type Row = Record<Field, string>;

/** How `--format` was asked to print. */
export type Format =
  | { kind: "table"; columns: Field[] }
  | { kind: "json" }
  | { kind: "template"; template: string };

/** Parses `--format`; undefined means the default table. Throws a UsageError naming the fields. */
export function parseFormat(value: string | undefined): Format | undefined {
  if (value === undefined || value === "table") return undefined;
  if (value === "json") return { kind: "json" };
  if (value.includes("{{")) {
    for (const [, name] of value.matchAll(/\{\{\s*\.?([A-Za-z_]+)\s*\}\}/g)) {
      if (!(FIELDS as readonly string[]).includes(name.toLowerCase())) {
        throw new UsageError(`ls: unknown field '${name}' in --format (use ${FIELDS.join(", ")})`);
      }
    }
    // Anything else between braces (unclosed, empty, pipes, nested fields) is not a template
    // qvm fills in: printing it as literal text would pass a typo off as output.
    const rest = value.replace(/\{\{\s*\.?[A-Za-z_]+\s*\}\}/g, "");
    if (rest.includes("{{") || rest.includes("}}")) {
      throw new UsageError(
        `ls: invalid template '${value}' in --format: only {{.Field}} placeholders ` +
          `(${FIELDS.join(", ")})`,
      );
    }
    return { kind: "template", template: value.replaceAll("\\t", "\t") };
  }
  const columns = value.split(",").map((c) => c.trim().toLowerCase()).filter((c) => c !== "");
  const unknown = columns.find((c) => !(FIELDS as readonly string[]).includes(c));
  if (columns.length === 0 || unknown !== undefined) {
    throw new UsageError(
      `ls: invalid --format '${value}': use table, json, a column list of ` +
        `${FIELDS.join(", ")}, or a template like '{{.Name}} {{.Status}}'`,
    );
  }
  return { kind: "table", columns: columns as Field[] };
}

/** `template` filled in with `row`'s fields (`{{.Name}}`, `{{name}}`; case does not matter). */
export function fillTemplate(template: string, row: Row): string {
  return template.replace(
    /\{\{\s*\.?([A-Za-z_]+)\s*\}\}/g,
    (_, name: string) => row[name.toLowerCase() as Field] ?? "",
  );
}

/** Seconds as an uptime column shows them: `45s`, `12m`, `3h05m`, `2d04h`. */
export function formatUptime(seconds: number): string {
  const s = Math.max(Math.floor(seconds), 0);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  const pad = (n: number) => String(n).padStart(2, "0");
  if (s < 86400) return `${Math.floor(s / 3600)}h${pad(Math.floor((s % 3600) / 60))}m`;
  return `${Math.floor(s / 86400)}d${pad(Math.floor((s % 86400) / 3600))}h`;
}

/** A host address that is every address of the host: other machines can connect to it. */
const ALL_ADDRESSES = new Set(["0.0.0.0", "::", ""]);

/** What the SSH column shows of a forward: its host address, `(exposed)` on every address. */
export function sshText(forward: { address: string; host: number }): string {
  const exposed = ALL_ADDRESSES.has(forward.address) ? " (exposed)" : "";
  return `${forward.address}:${forward.host}${exposed}`;
}

/** A listed VM: its row, and its forwards that listen on every host address. */
interface Listed {
  row: Row;
  exposed: string[];
}

function rowOf(vm: ListedVm): Listed {
  const ssh = vm.forwards.find((f) => f?.guest === 22 && f?.proto === "tcp");
  const row = {
    name: vm.vm.name,
    status: vm.status,
    pid: vm.pid === null ? "-" : String(vm.pid),
    uptime: vm.uptime === undefined ? "-" : formatUptime(vm.uptime),
    ssh: ssh ? sshText(ssh) : "-",
    id: vm.vm.id,
    reason: vm.stopReason ?? "-",
  };
  const exposed = vm.forwards.filter((f) => ALL_ADDRESSES.has(f?.address))
    .map((f) => `${f.address}:${f.host} -> ${f.guest}/${f.proto}`);
  return { row, exposed };
}

/**
 * Prints a table, a JSON array of `{id, name, status, pid, stop_reason}` (one VM per line), or
 * the `--format` asked for.
 */
export async function run(ctx: Context, args: ParsedArgs): Promise<number> {
  const wanted = args.values.status as string | undefined;
  if (wanted !== undefined && !(STATUSES as readonly string[]).includes(wanted)) {
    throw new UsageError(`ls: unknown status '${wanted}' (expected ${STATUSES.join(", ")})`);
  }
  const format = parseFormat(args.values.format as string | undefined);
  if ((ctx.json || format?.kind === "json") && wanted === undefined && !args.values.quiet) {
    // SQLite writes the JSON of every VM; only the VMs that claim a process are checked, and
    // the output is kept for the next run (see vm/list.ts).
    const json = await listJson(ctx);
    if (json) {
      writeOutput(json, (bytes) => ctx.outBytes(bytes));
      return 0;
    }
  }
  const shown = await listVms(ctx, { status: wanted, namesOnly: args.values.quiet === true });
  if (args.values.quiet) {
    if (shown.length > 0) ctx.out(shown.map((o) => o.vm.name).join("\n"));
    return 0;
  }
  if (ctx.json || format?.kind === "json") {
    const lines = shown.map((o) =>
      `  ${
        JSON.stringify({
          id: o.vm.id,
          name: o.vm.name,
          status: o.status,
          pid: o.pid,
          stop_reason: o.stopReason,
        })
      }`
    );
    ctx.out(lines.length === 0 ? "[]" : `[\n${lines.join(",\n")}\n]`);
    return 0;
  }
  const listed = shown.map(rowOf);
  const rows = listed.map((l) => l.row);
  if (format?.kind === "template") {
    if (rows.length > 0) ctx.out(rows.map((r) => fillTemplate(format.template, r)).join("\n"));
    return 0;
  }
  if (shown.length === 0) {
    ctx.note(wanted ? `no VMs with status ${wanted}` : "no VMs defined (see 'qvm add --help')");
    return 0;
  }
  // The default table leaves out SSH and REASON when no VM has one, so plain VMs list narrow.
  const columns = format?.columns ??
    FIELDS.filter((f) => (f !== "ssh" && f !== "reason") || rows.some((r) => r[f] !== "-"));
  ctx.out(table(
    columns.map((c) => c.toUpperCase()),
    rows.map((r) => columns.map((c) => c === "status" ? paintStatus(r.status) : r[c])),
  ));
  for (const { row, exposed } of listed) {
    if (exposed.length === 0) continue;
    ctx.warn(
      `${row.name} forwards ${exposed.join(", ")} on every address of this host: other ` +
        "machines can connect",
    );
  }
  return 0;
}
