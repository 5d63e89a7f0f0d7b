/**
 * A VM's port forwards (`qvm ports`): those in effect while it runs (with the host port each
 * `auto` forward got at start), else as configured, and those written in its QEMU arguments.
 */
import { cloudModule } from "../cloud/lazy.ts";
import type { VmRecord } from "../state/mod.ts";
import type { VmEnv } from "./env.ts";
import { qemuAlive } from "./observe.ts";

/** One forward, with the stable keys `ports --json` prints. */
export interface PortRow {
  proto: "tcp" | "udp";
  host_address: string;
  host_port: number | "auto";
  guest_port: number;
}

/** The forwards of VM `idOrName`, and whether it runs (then they are the ones in effect). */
export async function portForwards(
  env: VmEnv,
  idOrName: string,
): Promise<{ vm: VmRecord; running: boolean; forwards: PortRow[] }> {
  const vm = env.store.require(idOrName);
  const running = qemuAlive(env, vm);
  const forwards = (await cloudModule()).vmForwards(env.dirs, vm, running);
  return {
    vm,
    running,
    forwards: forwards.map((f) => ({
      proto: f.proto,
      host_address: f.address,
      host_port: f.host,
      guest_port: f.guest,
    })),
  };
}
