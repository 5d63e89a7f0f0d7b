/** What `launch` and `image pull` share: the verification flags and the download's progress line. */
import type { OptionSpec } from "./spec.ts";
import { formatSize } from "./_size.ts";
import type { PullProgress } from "../vm/images.ts";

/** `--sha256 HEX` and `--insecure-no-checksum`. */
export const verifyFlagOptions: Record<string, OptionSpec> = {
  sha256: {
    type: "string",
    value: "HEX",
    description: "the download's SHA-256 (else SHA256SUMS/SHA512SUMS beside it are read)",
  },
  "insecure-no-checksum": {
    type: "boolean",
    description: "use a download no checksum vouches for (never needed with --sha256)",
  },
};

/** A pull's progress as one line: what is fetched, how much has arrived, how fast. */
export function pullProgressLine(progress: PullProgress, elapsedMs = 0): string {
  if (progress.step === "checksums") return `fetching ${progress.url}`;
  if (progress.step === "verify") return `verifying ${progress.name} (${progress.algorithm})`;
  const { name, received, total, resumedFrom } = progress;
  const got = formatSize(received);
  const of = total ? ` of ${formatSize(total)} (${Math.floor((received / total) * 100)}%)` : "";
  const resumed = resumedFrom > 0 ? `, resumed at ${formatSize(resumedFrom)}` : "";
  const rate = elapsedMs >= 1000
    ? ` · ${formatSize(Math.round((received - resumedFrom) / (elapsedMs / 1000)))}/s`
    : "";
  return `downloading ${name}: ${got}${of}${resumed}${rate}`;
}

/**
 * The `onPull` callback that shows a pull on `progress`: the line is set up once per step and
 * redrawn on the progress line's own tick, not on every chunk that arrives.
 */
export function showPull(
  progress: { show(render: () => string): void },
): (event: PullProgress) => void {
  let latest: PullProgress | undefined;
  let since = 0;
  return (event) => {
    const step = latest?.step;
    latest = event;
    if (event.step === step && event.step !== "checksums") return;
    since = Date.now();
    progress.show(() => pullProgressLine(latest!, Date.now() - since));
  };
}
