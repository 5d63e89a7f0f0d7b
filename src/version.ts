/** qvm's version, printed by `qvm --version`. */
export const VERSION = "0.1.0";
