/** `qvm launch`: define a VM from an image, start it, and wait until SSH answers. */
import type { Context } from "./context.ts";
import type { CommandSpec, ParsedArgs } from "./spec.ts";
import { cloudFlagOptions, configFlagOptions, configOverrides } from "./_config_flags.ts";
import * as common from "./_options.ts";
import { LAUNCH_CPUS, LAUNCH_MEMORY, launchVm } from "../vm/launch.ts";
import { vmPaths } from "../vm_files.ts";
import { progressModule } from "./_format.ts";
import { showPull, verifyFlagOptions } from "./_pull.ts";

const { image: _image, ...configFlags } = configFlagOptions;

/** The command's arguments and flags. */
export const spec: CommandSpec = {
  name: "launch",
  summary: "define a VM from an image, start it, and wait until SSH answers",
  description:
    "SOURCE is a local image file (qcow2 or raw; read in place, never written), an http(s)\n" +
    "URL (downloaded once into the image cache, resumed if interrupted, and verified against\n" +
    "--sha256 or the SHA256SUMS/SHA512SUMS file beside it), or a catalog name ('qvm image\n" +
    "catalog'). Configs and flags merge as for 'add'; what they leave out is filled in:\n" +
    `${LAUNCH_MEMORY} of memory, ${LAUNCH_CPUS} vCPUs, a forward auto:22, cloud-init with your ` +
    "user name (qvm as root)\nand ~/.ssh keys, the guest agent, and a name from the image. KVM " +
    "is used when it works;\nwhen it faults on the guest, the VM starts again under TCG and " +
    "keeps it.",
  positionals: [
    {
      name: "SOURCE",
      description: "image file, http(s) URL, or catalog name (debian-12, ubuntu-24.04, ...)",
      complete: "file",
    },
    {
      name: "CONFIG.yaml",
      description: "VM config files merged on top (maqet-compatible YAML)",
      optional: true,
      variadic: true,
      complete: "file",
    },
  ],
  options: {
    ...configFlags,
    ...cloudFlagOptions,
    ...verifyFlagOptions,
    "wait-for": common.waitForOption("ssh"),
    timeout: common.timeoutOption(600, "the start may wait, the download not counted"),
    quiet: common.quietOption,
  },
  examples: [
    "qvm launch debian-12",
    "qvm launch https://example.org/images/disk.qcow2 --name web1 --port 8080:80",
    "qvm launch ./base.qcow2 extra.yaml --user dev --ssh-key ~/.ssh/id_ed25519.pub --disk-size 20G",
  ],
};

/** Launches the VM and prints how to reach it. */
export async function run(ctx: Context, args: ParsedArgs): Promise<number> {
  const [source, ...files] = args.positionals;
  const waitFor = common.parseWaitForOption(args.values["wait-for"], "ssh");
  const timeoutS = common.parseTimeout(args.values.timeout, 600);
  const overrides = configOverrides(args.values);
  const { Progress, showStart } = await progressModule();
  const progress = new Progress(ctx, { quiet: args.values.quiet === true });
  const launched = await launchVm(ctx, {
    source,
    files,
    overrides,
    verify: {
      sha256: args.values.sha256 as string | undefined,
      insecure: args.values["insecure-no-checksum"] === true,
    },
    waitFor,
    timeoutMs: timeoutS * 1000,
  }, {
    onPull: progress.enabled ? showPull(progress) : undefined,
    onDefined: (vm) => {
      progress.done();
      if (!progress.enabled) return undefined;
      const serialLog = vmPaths(ctx.dirs, vm.id).serialLog;
      return showStart(progress, { name: vm.name, serialLog, verb: "launching" });
    },
    note: (message) => {
      progress.done();
      ctx.note(message);
    },
  }).finally(() => progress.done());
  const { vm, started, image } = launched;
  if (ctx.json) {
    ctx.outJson({
      id: vm.id,
      name: vm.name,
      status: "running",
      pid: started.vm.pid,
      image: { path: image.path, format: image.format, id: image.cached?.id ?? null },
      tcg_fallback: launched.tcg,
    });
  } else {
    ctx.out(`launched ${vm.name} (pid ${started.vm.pid}): qvm ssh ${vm.name}`);
  }
  return 0;
}
