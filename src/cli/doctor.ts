/**
 * `qvm doctor`: checks the QEMU binaries, KVM, qvm's folders, the database, leftovers in the
 * runtime dir, VMs wrongly marked live and stray QEMU processes; `--fix` repairs what it safely
 * can (folder modes, leftovers, dead VMs) and never kills a process. The checks live in
 * `src/vm/doctor/`; this file renders their findings.
 */
import type { Context } from "./context.ts";
import { useColor } from "./context.ts";
import type { CommandSpec, ParsedArgs } from "./spec.ts";
import { ExitCode } from "../errors.ts";
import { diagnose, type Finding, type FindingStatus } from "../vm/doctor/mod.ts";

/** doctor reports an unsafe data or runtime dir as a finding (and exits 4) rather than refusing. */
export const reportsUnsafeDirs = true;

/** The command's arguments and flags. */
export const spec: CommandSpec = {
  name: "doctor",
  summary: "check QEMU, KVM, folders, the database and stray QEMU processes",
  description:
    "Each finding says what is wrong, why it matters, and the fix. --fix sets folder modes to\n" +
    "0700, removes stale runtime files and settles VMs whose QEMU is gone (as 'qvm cleanup'\n" +
    "does); it never kills a process. A data or runtime dir that is a symlink, someone else's,\n" +
    "or writable by others is reported, never touched, and the other checks are skipped. Exit\n" +
    "0 when no problems remain (warnings allowed), 4 for such a folder, 1 otherwise.",
  positionals: [],
  options: {
    fix: { type: "boolean", description: "repair what can be repaired safely" },
  },
  examples: ["qvm doctor", "qvm doctor --fix", "qvm doctor --json"],
};

/** Runs every check (repairing with --fix), prints findings; exit 1 if problems remain. */
export async function run(ctx: Context, args: ParsedArgs): Promise<number> {
  const findings = await diagnose(ctx, { fix: args.values.fix === true });
  if (ctx.json) {
    ctx.outJson({ checks: findings.map(findingJson) });
  } else {
    const fancy = useColor();
    ctx.out([...findings.map((f) => formatFinding(f, fancy)), summarize(findings)].join("\n"));
  }
  const refused = findings.find((f) => f.refused);
  if (refused) {
    ctx.note(`qvm: ${refused.what}; qvm refuses to use it (the other checks were skipped)`);
    return ExitCode.permission;
  }
  return findings.some((f) => f.status === "problem") ? 1 : 0;
}

/** The JSON shape of a finding: `{check, status, what, why, fix}`. */
export function findingJson(f: Finding): Omit<Finding, "repair" | "refused"> {
  return { check: f.check, status: f.status, what: f.what, why: f.why, fix: f.fix };
}

const ESC = String.fromCharCode(27);
const MARKS: Record<FindingStatus, [string, string]> = {
  ok: ["✓", "32"],
  fixed: ["✓", "32"],
  warning: ["!", "33"],
  problem: ["✗", "31"],
};

/**
 * One line: `✗ what — why — fix: ...` on a colour terminal, `problem: what -- why -- fix: ...`
 * otherwise (plain ASCII words, no colour).
 */
export function formatFinding(f: Finding, fancy: boolean): string {
  const dash = fancy ? " — " : " -- ";
  const [mark, colour] = MARKS[f.status];
  const head = fancy
    ? `${ESC}[${colour}m${mark}${ESC}[0m ${f.status === "fixed" ? "fixed: " : ""}`
    : `${f.status}: `;
  let line = head + f.what;
  if (f.why) line += dash + f.why;
  if (f.fix) line += `${dash}${f.status === "fixed" ? "done" : "fix"}: ${f.fix}`;
  return line;
}

/** `2 problems, 1 warning, 3 fixed`, or `no problems found (1 warning)`. */
export function summarize(findings: readonly Finding[]): string {
  const count = (s: FindingStatus) => findings.filter((f) => f.status === s).length;
  const words = (n: number, word: string) => n === 1 ? `1 ${word}` : `${n} ${word}s`;
  const others: string[] = [];
  if (count("warning") > 0) others.push(words(count("warning"), "warning"));
  if (count("fixed") > 0) others.push(`${count("fixed")} fixed`);
  const problems = count("problem");
  if (problems > 0) return [words(problems, "problem"), ...others].join(", ");
  return others.length > 0 ? `no problems found (${others.join(", ")})` : "no problems found";
}
