import assert from "node:assert/strict";
import { launchArgv } from "../../src/qemu/launch.ts";
import { shellQuote } from "../../src/shell.ts";
import { vmPaths } from "../../src/vm_files.ts";
import { planStop } from "../../src/vm/stop.ts";
import { parseWaitFor } from "../../src/vm/ready.ts";
import { cmdlineHasUuid } from "../../src/qemu/process.ts";
import type { VmConfig } from "../../src/config/mod.ts";

const ID = "0b7f1f7e-4a8c-4d6e-9f00-1234567890ab";
const PATHS = vmPaths({ dataDir: "/data", runtimeDir: "/run/qvm" }, ID);
const EMPTY: VmConfig = { arguments: [], args: [], storage: [] };

function argvOf(config: Partial<VmConfig>): string[] {
  return launchArgv({ id: ID, name: "web1", config: { ...EMPTY, ...config } }, PATHS);
}

function optionValue(argv: string[], option: string): string[] {
  return argv.flatMap((a, i) => (a === option ? [argv[i + 1]] : []));
}

Deno.test("launch argv: qvm's managed parts are always there", () => {
  const argv = argvOf({ memory: "1G" });
  assert.equal(argv[0], "qemu-system-x86_64");
  assert.deepEqual(optionValue(argv, "-uuid"), [ID]);
  assert.deepEqual(optionValue(argv, "-name"), ["web1"]);
  assert.deepEqual(optionValue(argv, "-pidfile"), [PATHS.pidFile]);
  assert.ok(argv.includes("-daemonize"));
  assert.deepEqual(optionValue(argv, "-qmp"), [
    `unix:${PATHS.qmpSocket},server=on,wait=off`,
    `unix:${PATHS.monitorSocket},server=on,wait=off`,
    `unix:${PATHS.eventSocket},server=on,wait=off`,
  ]);
  assert.deepEqual(optionValue(argv, "-serial"), ["chardev:qvm-serial"]);
  assert.match(
    optionValue(argv, "-chardev")[0],
    /logfile=\/data\/logs\/.*\.serial\.log,logappend=on/,
  );
  assert.deepEqual(optionValue(argv, "-D"), [PATHS.qemuLog]);
  assert.ok(cmdlineHasUuid(argv, ID));
});

Deno.test("launch argv: KVM with TCG fallback unless the config picks an accelerator", () => {
  assert.deepEqual(optionValue(argvOf({}), "-accel"), ["kvm", "tcg"]);
  assert.deepEqual(optionValue(argvOf({ arguments: [{ accel: "tcg" }] }), "-accel"), ["tcg"]);
  assert.deepEqual(optionValue(argvOf({ arguments: ["enable-kvm"] }), "-accel"), []);
  assert.deepEqual(
    optionValue(argvOf({ arguments: [{ machine: { type: "q35", accel: "tcg" } }] }), "-accel"),
    [],
  );
  // QEMU refuses -accel beside -machine accel=, however -machine is spelled and wherever it is.
  assert.deepEqual(optionValue(argvOf({ arguments: [{ M: "pc,accel=tcg" }] }), "-accel"), []);
  assert.deepEqual(optionValue(argvOf({ args: ["-machine", "pc,accel=tcg"] }), "-accel"), []);
  assert.deepEqual(optionValue(argvOf({ args: ["-M", "q35"] }), "-accel"), ["kvm", "tcg"]);
});

Deno.test("launch argv: headless unless a display is configured; the config's own serial wins", () => {
  assert.deepEqual(optionValue(argvOf({}), "-display"), ["none"]);
  assert.deepEqual(optionValue(argvOf({ display: "gtk" }), "-display"), ["gtk"]);
  assert.deepEqual(optionValue(argvOf({ arguments: [{ serial: "file:/x.log" }] }), "-serial"), [
    "file:/x.log",
  ]);
  // QEMU refuses stdio with -daemonize: a stdio serial port is qvm's console instead.
  for (const serial of ["stdio", "mon:stdio"]) {
    assert.deepEqual(optionValue(argvOf({ arguments: [{ serial }] }), "-serial"), [
      "chardev:qvm-serial",
    ]);
    assert.deepEqual(optionValue(argvOf({ args: ["-serial", serial] }), "-serial"), [
      "chardev:qvm-serial",
    ]);
  }
  assert.deepEqual(
    optionValue(argvOf({ binary: "/opt/qemu/bin/qemu-system-x86_64" }), "-D").length,
    1,
  );
  assert.equal(argvOf({ binary: "/opt/q" })[0], "/opt/q");
});

Deno.test("launch argv: commas in names and paths are escaped for QEMU", () => {
  const argv = launchArgv(
    { id: ID, name: "a,b", config: EMPTY },
    vmPaths({ dataDir: "/d,x", runtimeDir: "/r,y" }, ID),
  );
  assert.deepEqual(optionValue(argv, "-name"), ["a,,b"]);
  assert.match(optionValue(argv, "-qmp")[0], /^unix:\/r,,y\//);
});

Deno.test("shellQuote quotes only what needs it", () => {
  assert.equal(
    shellQuote(["qemu", "-append", "console=ttyS0 quiet", "it's"]),
    `qemu -append 'console=ttyS0 quiet' 'it'\\''s'`,
  );
});

Deno.test("stop plan: ACPI, quit, SIGTERM, SIGKILL within the timeout; --force is SIGKILL alone", () => {
  const plan = planStop(30);
  assert.deepEqual(plan.map((s) => s.step), ["acpi", "quit", "sigterm", "sigkill"]);
  assert.equal(plan.reduce((sum, s) => sum + s.waitMs, 0), 30_000);
  assert.deepEqual(planStop(10, { force: true }).map((s) => s.step), ["sigkill"]);
  assert.ok(planStop(1).at(-1)!.waitMs >= 1000, "SIGKILL always gets a second to be reaped");
});

Deno.test("--wait-for values parse; anything else is refused", () => {
  assert.deepEqual(parseWaitFor("process"), { kind: "process" });
  assert.deepEqual(parseWaitFor("qmp"), { kind: "qmp" });
  assert.deepEqual(parseWaitFor("serial:login: "), { kind: "serial", text: "login: " });
  assert.equal(parseWaitFor("serial:"), undefined);
  assert.equal(parseWaitFor("telnet"), undefined);
});
