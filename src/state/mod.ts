/** The state module: the SQLite store and where qvm's files live. */
export {
  type NewVm,
  observedParam,
  type ObservedRow,
  SQL,
  StateStore,
  type StatusFields,
  type StoredStatus,
  type VmBrief,
  type VmRecord,
} from "./store.ts";
export { type OpenOptions } from "./open.ts";
export {
  checkDir,
  databasePath,
  type Dirs,
  ensurePrivateDir,
  listCachePath,
  refuseUnsafeDirs,
  resolveDirs,
  unsafeDirReason,
} from "./paths.ts";
export { LATEST_VERSION, MIGRATIONS } from "./migrate.ts";
export {
  type Backup,
  BACKUP_GENERATIONS,
  BACKUP_INTERVAL_MS,
  backupFolder,
  countVms,
  listBackups,
  readVms,
} from "./backup.ts";
export { probeDatabaseWrite } from "./_faults.ts";
