/**
 * `qvm info`: a VM's configuration summary (what it would run with), without touching QEMU: its
 * disks (the root overlay of `image:` first), image, network forwards, and whether it has cloud_init.
 */
import type { Context } from "./context.ts";
import type { CommandSpec, ParsedArgs } from "./spec.ts";
import { summarize } from "../vm/summary.ts";

/** The command's arguments and flags. */
export const spec: CommandSpec = {
  name: "info",
  summary: "show a VM's configuration summary",
  positionals: [{ name: "VM", description: "id or name", complete: "vm" }],
  options: {},
  examples: ["qvm info web1", "qvm info web1 --json"],
};

/** Prints the summary as `key: value` lines or JSON. */
export function run(ctx: Context, args: ParsedArgs): number {
  const vm = ctx.store.require(args.positionals[0]);
  const info = summarize(ctx.dirs, vm);
  if (ctx.json) {
    ctx.outJson(info);
    return 0;
  }
  const lines: string[] = [];
  for (const [key, value] of Object.entries(info)) {
    if (key === "storage") continue;
    if (key === "network" && Array.isArray(value)) {
      lines.push(`network: user${value.length > 0 ? `, forwards ${value.join(", ")}` : ""}`);
    } else if (key === "cloud_init") lines.push(`cloud_init: ${value ? "set" : "-"}`);
    else lines.push(`${key}: ${value ?? "-"}`);
  }
  const storage = info.storage as Record<string, unknown>[];
  lines.push(`storage: ${storage.length === 0 ? "none" : ""}`.trimEnd());
  for (const s of storage) {
    const over = s.backing_file ? ` over ${s.backing_file}` : "";
    lines.push(
      s.type === "virtfs"
        ? `  ${s.name}: virtfs ${s.path} (tag ${s.mount_tag})`
        : `  ${s.name}: ${s.type} ${s.size ?? "(backing file's size)"} ${s.interface} ${s.file}` +
          over,
    );
  }
  ctx.out(lines.join("\n"));
  return 0;
}
