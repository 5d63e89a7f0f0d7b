/**
 * `qvm doctor`: checks the QEMU binaries, KVM, qvm's folders, the database, leftovers in the
 * runtime dir, VMs wrongly marked live and stray QEMU processes; `--fix` repairs what it safely
 * can (folder modes, leftovers, dead VMs) and never kills a process.
 */
import { join, resolve } from "../path.ts";
import type { Context } from "./context.ts";
import { useColor } from "./context.ts";
import type { CommandSpec, ParsedArgs } from "./spec.ts";
import { ExitCode, QvmError } from "../errors.ts";
import { unsafeDirReason } from "../state/mod.ts";
import { DEFAULT_BINARY } from "../qemu/launch.ts";
import { findQemuWithUuid, isOurQemu, markersIn, type QemuProcess } from "../qemu/process.ts";
import type { VmRecord } from "../state/mod.ts";
import { Deadline } from "../vm/env.ts";
import { withVm } from "../vm/guard.ts";
import { isLive } from "../vm/observe.ts";
import { freezeModule } from "../vm/observe.ts";
import { findBinary } from "../vm/start.ts";
import { findIsoTool } from "../cloud/seed.ts";
import { checkKey } from "../cloud/ssh.ts";
import { tidyRuntime } from "../vm/upkeep.ts";
import {
  actionFinding,
  type DirFacts,
  type Finding,
  findingJson,
  formatFinding,
  judgeDir,
  summarize,
} from "./_findings.ts";
import { databaseFindings } from "./_db_findings.ts";

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

async function binaryFinding(check: string, binary: string, pkg: string): Promise<Finding> {
  const why = check === "qemu_img"
    ? "qvm needs it to create disks, take snapshots and read images"
    : "qvm cannot start a VM without it";
  let output;
  try {
    output = await new Deno.Command(binary, {
      args: ["--version"],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound) && !(err instanceof Deno.errors.PermissionDenied)) {
      throw err;
    }
    return { check, status: "problem", what: `${binary} not found`, why, fix: `install ${pkg}` };
  }
  const text = new TextDecoder().decode(output.success ? output.stdout : output.stderr);
  const first = text.split("\n").find((l) => l.trim() !== "")?.trim() ?? "";
  if (!output.success) {
    return {
      check,
      status: "problem",
      what: `${binary} --version failed: ${first || `exit status ${output.code}`}`,
      why,
      fix: `reinstall ${pkg}`,
    };
  }
  return { check, status: "ok", what: `${binary}: ${first}`, why: null, fix: null };
}

/** virsh (libvirt-clients) is optional: only `export --to URI` needs it; missing is a warning. */
async function virshFinding(): Promise<Finding> {
  const found = await binaryFinding("virsh", "virsh", "libvirt-clients");
  if (found.status === "ok") return found;
  return {
    ...found,
    status: "warning",
    why: "only 'qvm export --to URI' needs it (handing VMs to libvirt)",
    fix: "apt-get install libvirt-clients, if you hand VMs to libvirt",
  };
}

/** A tool that builds cloud-init seed ISOs; without one qvm serves the seed with QEMU's vvfat. */
function seedToolFinding(): Finding {
  const tool = findIsoTool(); // the very tool start would build a seed with
  if (tool) {
    return {
      check: "cloud_seed",
      status: "ok",
      what: `${
        tool.slice(tool.lastIndexOf("/") + 1)
      } found: cloud-init seeds are built as ISO images`,
      why: null,
      fix: null,
    };
  }
  return {
    check: "cloud_seed",
    status: "warning",
    what: "neither genisoimage nor xorriso is installed",
    why: "cloud-init seeds are then served by QEMU's vvfat driver, which works but is less usual",
    fix: "apt-get install genisoimage, if you use cloud_init",
  };
}

/** qvm's SSH key: ssh refuses a private key others can read, so `qvm ssh` would fail. */
function sshKeyFinding(dataDir: string, fix: boolean): Finding {
  const check = "ssh_key";
  let found;
  try {
    found = checkKey(dataDir, { fix });
  } catch (err) {
    if (!(err instanceof Deno.errors.PermissionDenied)) throw err;
    found = { state: "problem" as const, what: `cannot change qvm's SSH key: ${err.message}` };
  }
  if (found.state === "ok" || found.state === "absent") {
    return { check, status: "ok", what: found.what, why: null, fix: null };
  }
  const why = "ssh refuses a private key that is not 0600 (qvm ssh sets it back when it runs)";
  if (found.state === "fixed") {
    return { check, status: "fixed", what: found.what, why, fix: "chmod 600" };
  }
  return {
    check,
    status: "problem",
    what: found.what,
    why: found.what.includes("mode") ? why : "qvm uses only a key file of its own there",
    fix: found.what.includes("mode")
      ? "qvm doctor --fix (or chmod 600 the key)"
      : "move it away; qvm makes a new key on first need (VMs seeded with another key then " +
        "refuse it)",
  };
}

function kvmFinding(): Finding {
  const check = "kvm";
  const why = "without KVM guests run under TCG emulation, many times slower";
  try {
    Deno.openSync("/dev/kvm", { read: true, write: true }).close();
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      return {
        check,
        status: "warning",
        what: "/dev/kvm does not exist",
        why,
        fix: "enable virtualization in the firmware and load kvm_intel or kvm_amd",
      };
    }
    return {
      check,
      status: "warning",
      what: `/dev/kvm cannot be opened read/write (${(err as Error).name})`,
      why,
      fix: "add your user to the kvm group (then log in again)",
    };
  }
  return {
    check,
    status: "ok",
    what: "/dev/kvm exists and opens read/write (whether guests run well on it shows only when " +
      "one starts)",
    why: null,
    fix: null,
  };
}

function canWrite(dir: string): boolean {
  try {
    const probe = Deno.makeTempFileSync({ dir, prefix: ".qvm-doctor-" });
    Deno.removeSync(probe);
    return true;
  } catch {
    return false;
  }
}

/** What lstat says of `path` (a link is never followed); writability is probed only if safe. */
function dirFacts(path: string, label?: string): DirFacts {
  try {
    const info = Deno.lstatSync(path);
    const safe = unsafeDirReason(info, Deno.uid()) === undefined;
    return {
      path,
      label,
      exists: true,
      isSymlink: info.isSymlink,
      isDirectory: info.isDirectory,
      mode: info.mode ?? 0o700,
      uid: info.uid,
      writable: safe && canWrite(path),
    };
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
    return { path, label, exists: false, isDirectory: false, mode: 0, uid: null, writable: false };
  }
}

/** The folders qvm makes inside the data dir and the runtime dir. */
const SUBFOLDERS = { data_dir: ["logs", "disks"], runtime_dir: ["disk-locks"] } as const;

/** Judges one folder; with `fix`, sets one of ours to mode 0700 when that is what is wrong. */
function judgeAndFix(check: "data_dir" | "runtime_dir", facts: DirFacts, fix: boolean): Finding[] {
  return judgeDir(check, facts, Deno.uid() ?? 0).map((f) => {
    if (!fix || f.repair !== "chmod") return f;
    try {
      // Checked again right before the chmod: only a real folder of ours is ever changed.
      if (unsafeDirReason(Deno.lstatSync(facts.path), Deno.uid()) !== undefined) return f;
      Deno.chmodSync(facts.path, 0o700);
      return { ...f, status: "fixed", fix: `chmod 700 ${facts.path}` };
    } catch (err) {
      return { ...f, what: `${f.what} (chmod failed: ${(err as Error).message})` };
    }
  });
}

/**
 * Checks a folder and the folders qvm makes in it. A refused folder (symlink, someone else's,
 * writable by others) is never touched, and nothing inside it is looked at.
 */
function dirFindings(check: "data_dir" | "runtime_dir", path: string, fix: boolean): Finding[] {
  const top = judgeAndFix(check, dirFacts(path), fix);
  if (top.some((f) => f.refused)) return top;
  const subs = SUBFOLDERS[check].flatMap((name) => {
    const facts = dirFacts(join(path, name), `${name} folder ${join(path, name)}`);
    return facts.exists ? judgeAndFix(check, facts, fix) : [];
  });
  return [...top, ...subs.filter((f) => f.status !== "ok")];
}

/** Binaries named by VMs' own `binary:` keys that are not there. */
function vmBinaryFindings(ctx: Context): Finding[] {
  const users = new Map<string, string[]>();
  for (const vm of ctx.store.list()) {
    const binary = vm.config.binary;
    if (!binary || binary === DEFAULT_BINARY) continue;
    users.set(binary, [...users.get(binary) ?? [], vm.name]);
  }
  return [...users].filter(([binary]) => !findBinary(binary)).map(([binary, names]) => ({
    check: "vm_binary",
    status: "problem",
    what: `QEMU binary '${binary}' of VM ${names.map((n) => `'${n}'`).join(", ")} not found`,
    why: "those VMs cannot start",
    fix: "install it, or change the VM's binary: with 'qvm apply'",
  }));
}

async function upkeepFindings(ctx: Context, fix: boolean): Promise<Finding[]> {
  const fixed = fix ? (await tidyRuntime(ctx, { dryRun: false })).actions : [];
  const remaining = await tidyRuntime(ctx, { dryRun: true });
  const findings = [
    ...fixed.map((a) => actionFinding(a, true)),
    ...remaining.actions.map((a) => actionFinding(a, false)),
    ...remaining.busy.map((name): Finding => ({
      check: "runtime_files",
      status: "warning",
      what: `VM '${name}' is busy: another qvm command holds its lock, so it was not checked`,
      why: "its leftovers (if any) stay until it is checked again",
      fix: "run qvm doctor again when that command has finished",
    })),
  ];
  const all = [...fixed, ...remaining.actions];
  if (!all.some((a) => a.action === "remove")) {
    findings.push({
      check: "runtime_files",
      status: "ok",
      what: `no stale sockets, pid files or locks in ${ctx.dirs.runtimeDir}`,
      why: null,
      fix: null,
    });
  }
  if (!all.some((a) => a.action === "settle")) {
    findings.push({
      check: "vm_status",
      status: "ok",
      what: "every VM marked live has its QEMU",
      why: null,
      fix: null,
    });
  }
  return findings;
}

/**
 * A live QEMU of a known VM whose row does not record it (a start killed at the wrong moment):
 * `--fix` adopts it through the VM's locked path, as any later command of that VM would.
 */
async function untrackedFinding(
  ctx: Context,
  found: { pid: number; vm: VmRecord; fix: boolean },
): Promise<Finding | undefined> {
  const { pid, vm } = found;
  if (vm.pid === pid && isLive(vm.status)) return undefined;
  const what = `QEMU process ${pid} is VM '${vm.name}''s, but qvm records it as ${vm.status}`;
  const finding: Finding = {
    check: "untracked_qemu",
    status: "problem",
    what,
    why: "qvm would not stop it, and a start could be refused or confused by it",
    fix: `qvm status ${vm.name} adopts it (so does doctor --fix); then stop it with qvm stop`,
  };
  if (!found.fix) return finding;
  try {
    const adopted = await withVm(
      ctx,
      vm,
      { deadline: Deadline.in(5000) },
      (seen) => Promise.resolve(seen.vm),
    );
    if (adopted.pid === pid) {
      return { ...finding, status: "fixed", fix: "adopted: qvm now tracks it" };
    }
  } catch (err) {
    if (!(err instanceof QvmError)) throw err;
  }
  return finding;
}

/** Guests whose file systems a live snapshot froze and nobody thawed (qvm was killed meanwhile). */
async function frozenFindings(ctx: Context, fix: boolean): Promise<Finding[]> {
  const { frozenGuests } = await freezeModule();
  const check = "frozen_guest";
  const findings = (await frozenGuests(ctx, { fix })).map((g): Finding => {
    const what = `VM '${g.name}''s file systems are frozen`;
    if (g.state === "busy") {
      return {
        check,
        status: "warning",
        what: `${what}, and a qvm command holds the VM (a live snapshot being taken?)`,
        why: "the command that froze them thaws them when it ends",
        fix: "run qvm doctor again when that command has finished",
      };
    }
    const why = "a live snapshot froze them and qvm was killed before the thaw: the guest's " +
      "writes hang and its agent refuses exec";
    if (g.state === "thawed") return { check, status: "fixed", what, why, fix: "thawed" };
    return {
      check,
      status: "problem",
      what,
      why,
      fix: fix
        ? "the guest agent did not answer the thaw: try again, or restart the VM"
        : "qvm doctor --fix thaws them (so does any qvm command on the VM, e.g. qvm status)",
    };
  });
  if (findings.length > 0) return findings;
  return [{
    check,
    status: "ok",
    what: "no guest was left frozen by an interrupted live snapshot",
    why: null,
    fix: null,
  }];
}

/** `uid` with its user name from /etc/passwd when there is one: `65534 (nobody)`. */
function userOf(uid: number): string {
  try {
    for (const line of Deno.readTextFileSync("/etc/passwd").split("\n")) {
      const [name, , id] = line.split(":");
      if (id !== undefined && Number(id) === uid) return `${uid} (${name})`;
    }
  } catch { /* no passwd file: the number alone */ }
  return String(uid);
}

/**
 * A QEMU that carries a VM's `-uuid`, or names this runtime dir, but is not qvm's (another user
 * runs it, or qvm did not start it with this runtime dir: a copy, a domain exported to libvirt).
 */
function foreignFinding(
  ctx: Context,
  qemu: QemuProcess,
  vm: VmRecord | undefined,
): Finding {
  const ownUid = Deno.uid() ?? 0;
  const who = qemu.uid === ownUid ? "" : `, running as user ${userOf(qemu.uid)},`;
  const claims = vm
    ? `carries VM '${vm.name}''s -uuid`
    : `names ${ctx.dirs.runtimeDir} (-uuid ${qemu.uuid})`;
  const not = qemu.uid === ownUid
    ? "it was not started by qvm with this runtime dir (no pid file and QMP socket of qvm's)"
    : "it runs as another user";
  return {
    check: "foreign_qemu",
    status: "warning",
    what: `QEMU process ${qemu.pid}${who} ${claims} but is not qvm's: ${not}`,
    why: "qvm never signals it nor counts it as the VM running, and starts the VM beside it " +
      "(QEMU's image locks keep two QEMUs off one writable disk)",
    fix: `see who started it (ps -o user,pid,args -p ${qemu.pid}); a VM exported to libvirt ` +
      "is stopped with virsh",
  };
}

/**
 * Live QEMUs of this qvm (see `isOurQemu`) of no VM qvm knows, or of a VM that does not track
 * them; and QEMUs that claim a VM's -uuid or this runtime dir but are not qvm's (named only).
 */
async function orphanFindings(ctx: Context, fix: boolean): Promise<Finding[]> {
  const mark = `${resolve(ctx.dirs.runtimeDir)}/`;
  const findings: Finding[] = [];
  for (const qemu of findQemuWithUuid()) {
    const { pid, uuid } = qemu;
    const found = ctx.store.get(uuid);
    const vm = found?.id === uuid ? found : undefined;
    if (!isOurQemu(pid, markersIn(ctx.dirs.runtimeDir, vm ?? { id: uuid }))) {
      if (vm || qemu.cmdline.some((arg) => arg.includes(mark))) {
        findings.push(foreignFinding(ctx, qemu, vm));
      }
      continue;
    }
    if (vm) {
      const untracked = await untrackedFinding(ctx, { pid, vm, fix });
      if (untracked) findings.push(untracked);
      continue;
    }
    findings.push({
      check: "orphaned_qemu",
      status: "problem",
      what: `QEMU process ${pid} (-uuid ${uuid}) uses ${ctx.dirs.runtimeDir} but no VM has that id`,
      why: "qvm will never stop it: it keeps its memory, CPU and disk images",
      fix: `kill ${pid} once you are sure it is not needed (doctor --fix does not kill processes)`,
    });
  }
  if (findings.some((f) => f.check !== "foreign_qemu")) return findings;
  return [...findings, {
    check: "orphaned_qemu",
    status: "ok",
    what: "every QEMU process using this runtime dir belongs to a VM that tracks it",
    why: null,
    fix: null,
  }];
}

/** Runs every check (repairing with --fix), prints findings; exit 1 if problems remain. */
export async function run(ctx: Context, args: ParsedArgs): Promise<number> {
  const fix = args.values.fix === true;
  const findings: Finding[] = [
    ...await Promise.all([
      binaryFinding("qemu_system", DEFAULT_BINARY, "qemu-system-x86 (apt-get install ...)"),
      binaryFinding("qemu_img", "qemu-img", "qemu-utils (apt-get install qemu-utils)"),
      virshFinding(),
    ]),
    seedToolFinding(),
    kvmFinding(),
    ...dirFindings("data_dir", ctx.dirs.dataDir, fix),
    ...dirFindings("runtime_dir", ctx.dirs.runtimeDir, fix),
  ];
  const refused = findings.filter((f) => f.refused);
  let storeOk = refused.length === 0;
  if (storeOk) findings.push(sshKeyFinding(ctx.dirs.dataDir, fix));
  let canFix = fix;
  if (storeOk) {
    const database = databaseFindings(ctx);
    findings.push(...database.findings);
    storeOk = database.usable;
    canFix = fix && database.writable;
  }
  if (storeOk) {
    try {
      findings.push(...vmBinaryFindings(ctx));
      findings.push(...await upkeepFindings(ctx, canFix));
      findings.push(...await orphanFindings(ctx, canFix));
      findings.push(...await frozenFindings(ctx, canFix));
    } catch (err) {
      if (!(err instanceof QvmError)) throw err;
      findings.push({
        check: "database",
        status: "problem",
        what: err.message,
        why: "the checks that need qvm's VMs could not finish",
        fix: "run qvm doctor again; if this stays, see the database findings above",
      });
    }
  }
  const problems = findings.filter((f) => f.status === "problem").length;
  if (ctx.json) {
    ctx.outJson({ checks: findings.map(findingJson) });
  } else {
    const fancy = useColor();
    ctx.out([...findings.map((f) => formatFinding(f, fancy)), summarize(findings)].join("\n"));
  }
  if (refused.length > 0) {
    ctx.note(`qvm: ${refused[0].what}; qvm refuses to use it (the other checks were skipped)`);
    return ExitCode.permission;
  }
  return problems > 0 ? 1 : 0;
}
