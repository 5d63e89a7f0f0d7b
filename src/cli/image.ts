/**
 * `qvm image ls|pull|rm|catalog`: the cache of downloaded base images (verified before they are
 * cached, kept in `<data-dir>/images`), and the catalog of names `launch` and `pull` accept.
 */
import type { Context } from "./context.ts";
import type { CommandSpec, ParsedArgs } from "./spec.ts";
import { table } from "./_format.ts";
import { formatSize } from "./_size.ts";
import { progressModule } from "./_format.ts";
import { listImages, pullImage, removeImages } from "../vm/images.ts";
import { loadCatalog } from "../cloud/catalog.ts";
import { showPull, verifyFlagOptions } from "./_pull.ts";

/** The command's subcommands and their arguments. */
export const spec: CommandSpec = {
  name: "image",
  summary: "list, pull or remove cached base images; show the image catalog",
  description: "Downloaded images live in <data-dir>/images, named by their SHA-256, for as\n" +
    "long as a VM's root disk may stand on them. Local image files are never copied there.",
  positionals: [],
  options: {},
  subcommands: [
    {
      name: "ls",
      summary: "list cached images, the VMs on each, and unfinished downloads",
      positionals: [],
      options: {},
      examples: ["qvm image ls", "qvm image ls --json"],
    },
    {
      name: "pull",
      summary: "download and verify an image into the cache (nothing if it is there)",
      description:
        "Verified against --sha256, else the SHA256SUMS or SHA512SUMS file beside the image\n" +
        "(a catalog entry may name its own). A mismatch, a missing checksum, or a download that\n" +
        "is cut short or is not a qcow2/raw disk is refused (exit 3) and nothing is cached. An\n" +
        "interrupted download resumes where it stopped.",
      positionals: [{
        name: "SOURCE",
        description: "http(s) URL or catalog name",
      }],
      options: {
        ...verifyFlagOptions,
        quiet: { type: "boolean", short: "q", description: "no progress line on a terminal" },
      },
      examples: ["qvm image pull debian-12", "qvm image pull https://example.org/disk.qcow2"],
    },
    {
      name: "rm",
      summary: "remove cached images (refused while a VM's root disk stands on one)",
      description: "IMAGE is an id from 'image ls' (or more of its SHA-256), a catalog name, a\n" +
        "URL or a file name it was fetched as; a URL also drops its unfinished download.",
      positionals: [{ name: "IMAGE", description: "images to remove", variadic: true }],
      options: {},
      examples: ["qvm image rm debian-12", "qvm image rm 3fa94c1d02be"],
    },
    {
      name: "catalog",
      summary: "list the catalog names (built in, and $QVM_CATALOG's)",
      positionals: [],
      options: {},
      examples: ["qvm image catalog"],
    },
  ],
  examples: ["qvm image ls", "qvm image pull debian-12", "qvm image rm debian-12"],
};

async function pull(ctx: Context, args: ParsedArgs): Promise<number> {
  const { Progress } = await progressModule();
  const progress = new Progress(ctx, { quiet: args.values.quiet === true });
  const { image, fetched } = await pullImage(ctx, {
    source: args.positionals[0],
    sha256: args.values.sha256 as string | undefined,
    insecure: args.values["insecure-no-checksum"] === true,
  }, progress.enabled ? showPull(progress) : undefined)
    .finally(() => progress.done());
  if (ctx.json) {
    ctx.outJson({ ...image, fetched });
  } else {
    ctx.out(
      `${fetched ? "pulled" : "already cached:"} ${image.id} ${image.alias ?? image.name} ` +
        `(${image.format}, ${formatSize(image.size)}; ${image.verified})`,
    );
  }
  return 0;
}

function ls(ctx: Context): number {
  const { images, partial } = listImages(ctx);
  if (ctx.json) {
    ctx.outJson({
      images,
      partial: partial.map(({ url, bytes, total }) => ({ url, bytes, total: total ?? null })),
    });
    return 0;
  }
  if (images.length === 0 && partial.length === 0) {
    ctx.note("no cached images (qvm image pull NAME|URL, or qvm launch NAME|URL)");
    return 0;
  }
  if (images.length > 0) {
    ctx.out(table(
      ["ID", "NAME", "FORMAT", "SIZE", "DISK", "FETCHED", "VMS", "VERIFIED"],
      images.map((i) => [
        i.id,
        i.alias ?? i.name,
        i.format,
        formatSize(i.size),
        formatSize(i.virtual_size),
        i.fetched_at.slice(0, 10),
        i.vms.join(",") || "-",
        i.verified,
      ]),
    ));
  }
  for (const p of partial) {
    const of = p.total ? ` of ${formatSize(p.total)}` : "";
    ctx.note(
      `unfinished download (resumes on the next pull): ${p.url}, ${formatSize(p.bytes)}${of}`,
    );
  }
  return 0;
}

async function rm(ctx: Context, args: ParsedArgs): Promise<number> {
  const removed = await removeImages(ctx, args.positionals);
  if (ctx.json) {
    ctx.outJson({
      removed: removed.images.map((i) => ({ id: i.id, sha256: i.sha256, path: i.path })),
      partial: removed.partial.map((p) => p.url),
    });
    return 0;
  }
  for (const image of removed.images) ctx.out(`removed ${image.id} (${image.alias ?? image.name})`);
  for (const p of removed.partial) ctx.out(`removed the unfinished download of ${p.url}`);
  return 0;
}

async function catalog(ctx: Context): Promise<number> {
  const entries = await loadCatalog();
  if (ctx.json) {
    ctx.outJson(entries);
    return 0;
  }
  ctx.out(
    table(["NAME", "DESCRIPTION", "URL"], entries.map((e) => [e.name, e.description, e.url])),
  );
  return 0;
}

/** Runs the chosen subcommand. */
export function run(ctx: Context, args: ParsedArgs): Promise<number> | number {
  switch (args.subcommand) {
    case "pull":
      return pull(ctx, args);
    case "rm":
      return rm(ctx, args);
    case "catalog":
      return catalog(ctx);
    default:
      return ls(ctx);
  }
}
