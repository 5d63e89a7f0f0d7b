/**
 * What the progress line (`src/progress.ts`) says while a VM starts or stops: the step, what it
 * waits for, the time left, and the guest's last serial line.
 */
import type { StartProgress } from "../vm/start.ts";
import type { WaitFor } from "../vm/ready.ts";
import { type OnStopStep, STEP_LABELS } from "../vm/stop.ts";
import { formatSeconds, lastLineAfter, printable, type Progress } from "../progress.ts";

/** How a `--wait-for` value reads on a progress line. */
export function describeWait(waitFor: WaitFor): string {
  switch (waitFor.kind) {
    case "process":
      return "the QEMU process";
    case "qmp":
      return "QMP";
    case "serial":
      return `"${printable(waitFor.text)}" on the serial console`;
    case "ssh":
      return "SSH";
    case "agent":
      return "the guest agent";
  }
}

/**
 * Shows a start on `progress`: `starting NAME`, then the disk being created or what it waits
 * for, the time since the command began, and the guest's last serial line. Returns the
 * `onProgress` callback to hand to the start.
 */
export function showStart(
  progress: Progress,
  vm: { name: string; serialLog: string; verb?: string },
): (event: StartProgress) => void {
  const began = Date.now();
  const verb = vm.verb ?? "starting";
  const elapsed = () => progress.dim(formatSeconds(Date.now() - began));
  progress.show(() => `${verb} ${vm.name} · ${elapsed()}`);
  return (event) => {
    if (event.step === "disk") {
      progress.show(() => `${verb} ${vm.name}: preparing disk ${event.file} · ${elapsed()}`);
      return;
    }
    const what = describeWait(event.waitFor);
    progress.show(() => {
      const line = lastLineAfter(vm.serialLog, event.serialOffset);
      const tail = line ? ` · ${progress.dim(`serial: ${line}`)}` : "";
      return `${verb} ${vm.name}: waiting for ${what} · ${elapsed()}${tail}`;
    });
  };
}

/** Shows a stop on `progress`: the escalation step being taken and the time left in it. */
export function showStop(
  progress: Progress,
  vm: { name: string; verb?: string },
): OnStopStep {
  const verb = vm.verb ?? "stopping";
  progress.show(() => `${verb} ${vm.name}`);
  return (step, waitMs) => {
    const ends = Date.now() + waitMs;
    progress.show(() =>
      `${verb} ${vm.name}: ${STEP_LABELS[step]} · ` +
      progress.dim(`${formatSeconds(ends - Date.now())} left`)
    );
  };
}
