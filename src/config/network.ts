/**
 * The `network:` section, a qvm extension of maqet's format: user-mode networking with port
 * forwards. `ports` items read `[ADDRESS:]HOST:GUEST[/tcp|udp]`, where HOST is a port number or
 * `auto` (a free port picked at the first start and kept while it stays free). The host side listens on 127.0.0.1 unless ADDRESS
 * (an IPv4 address) is given.
 */
import { didYouMean, UsageError } from "../errors.ts";
import { isMap, kindOf, show } from "./_util.ts";

/** One port forward as configured; `host` is `"auto"` until a start picks a port. */
export interface PortForward {
  proto: "tcp" | "udp";
  /** Host address the forward listens on. */
  address: string;
  host: number | "auto";
  guest: number;
}

/** A validated `network:` section. */
export interface NetworkConfig {
  ports: PortForward[];
}

/** The host address of a forward whose spec names none. */
export const DEFAULT_FORWARD_ADDRESS = "127.0.0.1";

const NETWORK_KEYS = new Set(["ports"]);
const SPEC_HINT = "use HOST:GUEST, auto:GUEST or ADDRESS:HOST:GUEST, optionally with /tcp or /udp";

function portNumber(spec: string, text: string, side: string): number {
  if (!/^\d{1,5}$/.test(text) || Number(text) < 1 || Number(text) > 65535) {
    throw new UsageError(
      `invalid port forward ${show(spec)}: ${side} port ${show(text)} is not a number from 1 ` +
        "to 65535",
    );
  }
  return Number(text);
}

function ipv4(spec: string, text: string): string {
  const parts = text.split(".");
  const ok = parts.length === 4 &&
    parts.every((p) => /^(0|[1-9]\d{0,2})$/.test(p) && Number(p) <= 255);
  if (!ok) {
    throw new UsageError(
      `invalid port forward ${show(spec)}: host address ${show(text)} is not an IPv4 address`,
    );
  }
  return text;
}

/** Parses one `ports` item; throws a one-line UsageError naming the item when it is malformed. */
export function parsePortSpec(spec: unknown): PortForward {
  if (typeof spec === "number") {
    throw new UsageError(
      `invalid port forward ${show(spec)}: expected a string such as "2222:22" (quote it)`,
    );
  }
  if (typeof spec !== "string") {
    throw new UsageError(
      `invalid port forward ${show(spec)}: expected a string, got ${kindOf(spec)}`,
    );
  }
  let body = spec.trim();
  let proto: PortForward["proto"] = "tcp";
  const slash = body.lastIndexOf("/");
  if (slash !== -1) {
    const name = body.slice(slash + 1).toLowerCase();
    if (name !== "tcp" && name !== "udp") {
      throw new UsageError(
        `invalid port forward ${show(spec)}: protocol ${show(body.slice(slash + 1))} is not ` +
          "tcp or udp",
      );
    }
    proto = name;
    body = body.slice(0, slash);
  }
  const parts = body.split(":");
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => p === "")) {
    throw new UsageError(`invalid port forward ${show(spec)}: ${SPEC_HINT}`);
  }
  const address = parts.length === 3 ? ipv4(spec, parts[0]) : DEFAULT_FORWARD_ADDRESS;
  const hostText = parts[parts.length - 2];
  const host = hostText.toLowerCase() === "auto" ? "auto" : portNumber(spec, hostText, "host");
  const guest = portNumber(spec, parts[parts.length - 1], "guest");
  return { proto, address, host, guest };
}

/** The canonical spec of a forward, e.g. `127.0.0.1:2222:22/tcp`. */
export function formatForward(forward: PortForward): string {
  return `${forward.address}:${forward.host}:${forward.guest}/${forward.proto}`;
}

/**
 * Validates a `network:` section (a map, or `null`/`{}` for user networking without forwards).
 * Identical forwards (two merged files) are kept once; two forwards on the same host port are an
 * error.
 */
export function networkOf(value: unknown, warn: (message: string) => void): NetworkConfig {
  if (!isMap(value)) {
    throw new UsageError(
      `invalid network ${show(value)}: expected a map such as {ports: ["2222:22"]}, got ` +
        kindOf(value),
    );
  }
  for (const key of Object.keys(value)) {
    if (!NETWORK_KEYS.has(key)) {
      warn(`unknown key network.${key} (ignored)${didYouMean(key, NETWORK_KEYS)}`);
    }
  }
  const raw = value.ports ?? [];
  if (!Array.isArray(raw)) {
    throw new UsageError(
      `invalid network.ports ${show(raw)}: expected a list such as ["2222:22", "auto:80"], got ` +
        kindOf(raw),
    );
  }
  const ports: PortForward[] = [];
  const seen = new Set<string>();
  const hosts = new Map<string, string>();
  for (const item of raw) {
    const forward = parsePortSpec(item);
    const canonical = formatForward(forward);
    if (seen.has(canonical)) continue;
    seen.add(canonical);
    if (forward.host !== "auto") {
      const key = `${forward.proto}:${forward.host}`;
      const other = hosts.get(key);
      if (other !== undefined) {
        throw new UsageError(
          `invalid port forward ${show(item)}: host port ${forward.host}/${forward.proto} is ` +
            `already forwarded by ${show(other)}`,
        );
      }
      hosts.set(key, String(item));
    }
    ports.push(forward);
  }
  return { ports };
}

/** True when a TCP listener can be opened on `address:port` right now. */
export function tcpPortFree(address: string, port: number): boolean {
  try {
    Deno.listen({ hostname: address, port, transport: "tcp" }).close();
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.AddrInUse) return false;
    if (error instanceof Deno.errors.AddrNotAvailable) {
      throw new UsageError(`invalid port forward: host address ${address} is not on this host`);
    }
    // Anything else (e.g. a privileged port) is QEMU's to report.
    return true;
  }
}

/** The host ports of UDP sockets bound on `address` (or on any address), from /proc/net/udp. */
export function udpPortsBound(address: string): Set<number> {
  const ports = new Set<number>();
  const wanted = address.split(".").reverse()
    .map((p) => Number(p).toString(16).padStart(2, "0")).join("").toUpperCase();
  for (const file of ["/proc/net/udp", "/proc/net/udp6"]) {
    let text: string;
    try {
      text = Deno.readTextFileSync(file);
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const local = line.trim().split(/\s+/)[1];
      if (!local) continue;
      const [hex, port] = local.split(":");
      const v4 = hex.length === 8
        ? hex
        : hex.startsWith("0000000000000000FFFF0000")
        ? hex.slice(24)
        : /^0+$/.test(hex)
        ? "00000000"
        : undefined;
      if (v4 === undefined) continue;
      if (address === "0.0.0.0" || v4 === "00000000" || v4 === wanted) {
        ports.add(parseInt(port, 16));
      }
    }
  }
  return ports;
}

/** Who holds a taken host port: the name of one of qvm's running VMs, else undefined. */
export type PortHolder = (forward: PortForward & { host: number }) => string | undefined;

/** The `auto` spec of `forward` (same address and protocol), as a user writes it. */
export function autoSpec(forward: PortForward): string {
  const address = forward.address === DEFAULT_FORWARD_ADDRESS ? "" : `${forward.address}:`;
  return `${address}auto:${forward.guest}${forward.proto === "udp" ? "/udp" : ""}`;
}

/** True when host port `port` of `proto` can be bound on `address` right now. */
export function hostPortFree(proto: PortForward["proto"], address: string, port: number): boolean {
  return proto === "tcp" ? tcpPortFree(address, port) : !udpPortsBound(address).has(port);
}

/**
 * Throws a UsageError naming the first fixed forward whose host port is taken (TCP: a listener
 * cannot be opened; UDP: a socket is bound to it), or whose host address is not on this host.
 * The message names the VM holding the port when `holderOf` knows it, and suggests `auto`.
 */
export function checkForwardsFree(ports: readonly PortForward[], holderOf?: PortHolder): void {
  for (const forward of ports) {
    // Port 0 only checks that the address is one of this host's.
    tcpPortFree(forward.address, 0);
    if (forward.host === "auto") continue;
    if (!hostPortFree(forward.proto, forward.address, forward.host)) {
      const holder = holderOf?.({ ...forward, host: forward.host });
      throw new UsageError(
        `port forward ${forward.host}:${forward.guest}/${forward.proto}: host port ` +
          `${forward.host} on ${forward.address} is already in use` +
          (holder === undefined ? "" : ` by VM '${holder}'`) +
          `; use '${autoSpec(forward)}' to let qvm pick a free port`,
      );
    }
  }
}
