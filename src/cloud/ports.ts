/**
 * Port forwards at start: an `auto` host port is picked at the first start (a port the kernel
 * hands out free right now) and kept for later starts while it is free; fixed ones are checked
 * free. The forwards in effect are recorded next to the VM's pid file so `qvm ports`, `qvm ssh`
 * and `status --json` read them without asking QEMU.
 */
import { UsageError } from "../errors.ts";
import {
  autoSpec,
  checkForwardsFree,
  formatForward,
  hostPortFree,
  type PortForward,
  type PortHolder,
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

/**
 * Host ports this process has handed out (`proto:address:port`): VMs started side by side by one
 * command are settled before their QEMUs bind, so each must not take another's port.
 */
const HANDED_OUT = new Set<string>();

/** The host ports `auto` forwards got, by the forward's spec (`127.0.0.1:auto:22/tcp`). */
export type AutoPorts = Record<string, number>;

/** What settling needs besides the forwards: the ports picked before, and whom to tell. */
export interface SettleOptions {
  /** The ports `auto` forwards got at an earlier start: kept while they are free. */
  previous?: AutoPorts;
  /** Names the VM of ours holding a taken port. */
  holderOf?: PortHolder;
  /** Told when an earlier `auto` port is taken and another is picked. */
  note?: (message: string) => void;
}

/**
 * Settles every forward: fixed ports must be free; an `auto` one keeps the port it got before
 * while that port is free, else gets a free port (said through `note` when it had one).
 */
export function settleForwards(
  ports: readonly PortForward[],
  options: SettleOptions = {},
): ActiveForward[] {
  checkForwardsFree(ports, options.holderOf);
  const taken = new Set<string>();
  for (const p of ports) if (p.host !== "auto") taken.add(`${p.proto}:${p.host}`);
  const claim = (forward: PortForward, port: number) => {
    taken.add(`${forward.proto}:${port}`);
    HANDED_OUT.add(`${forward.proto}:${forward.address}:${port}`);
    return { ...forward, host: port };
  };
  const usable = (forward: PortForward, port: number) =>
    !taken.has(`${forward.proto}:${port}`) &&
    !HANDED_OUT.has(`${forward.proto}:${forward.address}:${port}`);
  return ports.map((forward) => {
    if (forward.host !== "auto") return forward as ActiveForward;
    const before = options.previous?.[formatForward(forward)];
    if (
      before !== undefined && usable(forward, before) &&
      hostPortFree(forward.proto, forward.address, before)
    ) {
      return claim(forward, before);
    }
    for (let attempt = 0; attempt < 20; attempt++) {
      const port = freeTcpPort(forward.address);
      if (!usable(forward, port)) continue;
      // The kernel's free TCP port may be a bound UDP one.
      if (forward.proto === "udp" && udpPortsBound(forward.address).has(port)) continue;
      if (before !== undefined) {
        const holder = options.holderOf?.({ ...forward, host: before });
        options.note?.(
          `host port ${before} of ${autoSpec(forward)} is in use by ` +
            `${holder === undefined ? "another program" : `VM '${holder}'`}: it now gets ${port}`,
        );
      }
      return claim(forward, port);
    }
    throw new UsageError(`no free host port for ${formatForward(forward)}`);
  });
}

/** The ports the `auto` forwards among `forwards` got, to keep for the next start. */
export function autoPortsOf(
  configured: readonly PortForward[],
  forwards: readonly ActiveForward[],
): AutoPorts {
  const picks: AutoPorts = {};
  configured.forEach((forward, i) => {
    if (forward.host === "auto") picks[formatForward(forward)] = forwards[i].host;
  });
  return picks;
}

/** The `auto` ports recorded in `file`, or none when there is no readable record. */
export function readAutoPorts(file: string): AutoPorts {
  try {
    const data = JSON.parse(Deno.readTextFileSync(file));
    if (data === null || typeof data !== "object" || Array.isArray(data)) return {};
    const picks: AutoPorts = {};
    for (const [spec, port] of Object.entries(data)) {
      if (Number.isInteger(port) && (port as number) > 0 && (port as number) < 65536) {
        picks[spec] = port as number;
      }
    }
    return picks;
  } catch {
    return {};
  }
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

/** Writes `value` as JSON to `file`, replaced atomically (a link at `file` is replaced, not followed). */
export function writeJsonFile(file: string, value: unknown): void {
  const temp = `${file}.tmp-${Deno.pid}`;
  Deno.writeTextFileSync(temp, JSON.stringify(value) + "\n", { mode: 0o600 });
  Deno.renameSync(temp, file);
}

/** Writes the forwards in effect to `file` (replaced atomically). */
export function recordForwards(file: string, forwards: readonly ActiveForward[]): void {
  writeJsonFile(file, forwards);
}

/** The TCP forward to guest port `guest`, if any. */
export function forwardTo<T extends PortForward>(
  forwards: readonly T[],
  guest: number,
): T | undefined {
  return forwards.find((f) => f.guest === guest && f.proto === "tcp");
}
