/**
 * Port forwards at start: `auto` host ports are picked (a port the kernel hands out free right
 * now), fixed ones are checked free, and the forwards in effect are recorded next to the VM's
 * pid file so `qvm ports`, `qvm ssh` and `status --json` read them without asking QEMU.
 */
import { UsageError } from "../errors.ts";
import {
  checkForwardsFree,
  formatForward,
  type PortForward,
  udpPortsBound,
} from "../config/mod.ts";

/** A forward with its host port settled. */
export type ActiveForward = PortForward & { host: number };

/** A free TCP port on `address`, as the kernel picks it for port 0. */
function freeTcpPort(address: string): number {
  const listener = Deno.listen({ hostname: address, port: 0, transport: "tcp" });
  try {
    return (listener.addr as Deno.NetAddr).port;
  } finally {
    listener.close();
  }
}

/** Settles every forward: fixed ports must be free, `auto` ones get a free port each. */
export function settleForwards(ports: readonly PortForward[]): ActiveForward[] {
  checkForwardsFree(ports);
  const taken = new Set<string>();
  for (const p of ports) if (p.host !== "auto") taken.add(`${p.proto}:${p.host}`);
  return ports.map((forward) => {
    if (forward.host !== "auto") return forward as ActiveForward;
    for (let attempt = 0; attempt < 20; attempt++) {
      const port = freeTcpPort(forward.address);
      if (taken.has(`${forward.proto}:${port}`)) continue;
      // The kernel's free TCP port may be a bound UDP one.
      if (forward.proto === "udp" && udpPortsBound(forward.address).has(port)) continue;
      taken.add(`${forward.proto}:${port}`);
      return { ...forward, host: port };
    }
    throw new UsageError(`no free host port for ${formatForward(forward)}`);
  });
}

/** The NIC's MAC address: QEMU's 52:54:00 prefix and three bytes of the VM id (stable). */
export function macFor(id: string): string {
  const hex = id.replace(/[^0-9a-f]/gi, "").toLowerCase().padEnd(6, "0").slice(0, 6);
  return `52:54:00:${hex.slice(0, 2)}:${hex.slice(2, 4)}:${hex.slice(4, 6)}`;
}

/** `-netdev user` with one `hostfwd` per forward, and the virtio NIC on it. */
export function networkArgv(forwards: readonly ActiveForward[], mac: string): string[] {
  const netdev = ["user", "id=qvm-net"];
  for (const f of forwards) netdev.push(`hostfwd=${f.proto}:${f.address}:${f.host}-:${f.guest}`);
  return ["-netdev", netdev.join(","), "-device", `virtio-net-pci,netdev=qvm-net,mac=${mac}`];
}

/** Writes the forwards in effect to `file` (replaced atomically). */
export function recordForwards(file: string, forwards: readonly ActiveForward[]): void {
  const temp = `${file}.tmp-${Deno.pid}`;
  Deno.writeTextFileSync(temp, JSON.stringify(forwards) + "\n", { mode: 0o600 });
  Deno.renameSync(temp, file);
}

/** The TCP forward to guest port `guest`, if any. */
export function forwardTo<T extends PortForward>(
  forwards: readonly T[],
  guest: number,
): T | undefined {
  return forwards.find((f) => f.guest === guest && f.proto === "tcp");
}
