/**
 * maqet configs run unchanged: config files in, QEMU options (or exit 3) out. Each row is one rule
 * of maqet's format; `@` in an expected argument stands for the folder of the config files.
 */
import assert from "node:assert/strict";
import {
  type DiskStorage,
  loadConfigs,
  storageId,
  type VirtfsStorage,
} from "../../src/config/mod.ts";
import { QvmError } from "../../src/errors.ts";
import { configArgv } from "../../src/qemu/argv.ts";
import { createDiskIfMissing, createShareIfMissing } from "../../src/qemu/img.ts";
import { launchArgv } from "../../src/qemu/launch.ts";
import { vmPaths } from "../../src/vm_files.ts";
import { ensureGuest } from "../fixture/mod.ts";
import { GUEST_READY_MARKER, guestConfig, WAIT_READY } from "../helpers/guest.ts";
import { exists, withEnv } from "../helpers/qvm.ts";

interface Row {
  /** The rule, as it reads in maqet's docs or code. */
  rule: string;
  /** Config files, merged left to right (`add A.yaml B.yaml`). */
  files: string[];
  /** The QEMU options built from them (qvm's own parts left out); `@` is the config folder. */
  argv?: string[];
  /** Or: the UsageError (exit 3) message it is refused with. */
  refused?: RegExp;
  /** A warning that must be given. */
  warns?: RegExp;
}

const rows: Row[] = [
  // Storage items without a name are named by position in the merged list and all kept.
  {
    rule: "an unnamed disk in each of two files gives two disks, storage0 and storage1",
    files: ["storage:\n  - size: 1G\n", "storage:\n  - size: 2G\n"],
    argv: [
      "-drive",
      "file=/d/storage0.qcow2,format=qcow2,if=virtio,id=storage0",
      "-drive",
      "file=/d/storage1.qcow2,format=qcow2,if=virtio,id=storage1",
    ],
  },
  {
    rule: "named items merge by name while unnamed ones are appended by position",
    files: [
      "storage:\n  - {name: hdd, interface: ide}\n  - {size: 1G}\n",
      "storage:\n  - {name: hdd, type: raw}\n  - {size: 2G}\n  - {size: 3G, type: raw}\n",
    ],
    argv: [
      "-drive",
      "file=/d/hdd.raw,format=raw,if=ide,id=hdd",
      "-drive",
      "file=/d/storage1.qcow2,format=qcow2,if=virtio,id=storage1",
      "-drive",
      "file=/d/storage2.qcow2,format=qcow2,if=virtio,id=storage2",
      "-drive",
      "file=/d/storage3.raw,format=raw,if=virtio,id=storage3",
    ],
  },
  {
    rule: "an unnamed item whose positional name is taken by a named one is a duplicate",
    files: ["storage:\n  - {size: 1G}\n", "storage:\n  - {name: storage0, size: 2G}\n"],
    refused: /duplicate storage name 'storage0'/,
  },

  // maqet's options: form of storage items.
  {
    rule: "a virtfs item's options: map gives mount_tag, security_model and readonly",
    files: [
      "storage:\n  - name: share\n    type: virtfs\n    path: ./share\n    options:\n" +
      "      mount_tag: host0\n      security_model: none\n      readonly: true\n",
    ],
    argv: [
      "-virtfs",
      "local,path=@/share,mount_tag=host0,security_model=none,id=share,readonly=on",
    ],
  },
  {
    rule: "a virtfs item without mount_tag or security_model: its name, and mapped-xattr",
    files: ["storage:\n  - {name: data, type: virtfs, path: /srv/data}\n"],
    argv: [
      "-virtfs",
      "local,path=/srv/data,mount_tag=data,security_model=mapped-xattr,id=data",
    ],
  },
  {
    rule: "an unnamed virtfs item's tag is its positional name",
    files: ["storage:\n  - {type: virtfs, path: /srv}\n"],
    argv: ["-virtfs", "local,path=/srv,mount_tag=storage0,security_model=mapped-xattr,id=storage0"],
  },
  {
    rule: "a virtfs item's options: id names the share, other keys are extra sub-options",
    files: [
      "storage:\n  - name: s\n    type: virtfs\n    path: /srv\n" +
      "    options: {id: fs9, multidevs: remap, security_model: none}\n",
    ],
    argv: ["-virtfs", "local,path=/srv,mount_tag=s,security_model=none,id=fs9,multidevs=remap"],
  },
  {
    rule: "media: cdrom makes a read-only CD-ROM drive on any interface",
    files: [
      "storage:\n  - {name: install, type: raw, file: /iso/a.iso, interface: sata, media: cdrom}\n" +
      "  - {name: tools, type: raw, file: /iso/b.iso, interface: IDE, media: CDROM}\n" +
      "  - {name: drivers, type: raw, file: /iso/c.iso, interface: scsi, media: cdrom}\n" +
      "  - {name: hdd, media: disk}\n",
    ],
    argv: [
      "-drive",
      "file=/iso/a.iso,format=raw,if=none,id=install,media=cdrom",
      "-device",
      "ahci,id=ahci0",
      "-device",
      "ide-cd,drive=install,bus=ahci0.0",
      "-drive",
      "file=/iso/b.iso,format=raw,if=ide,id=tools,media=cdrom",
      "-drive",
      "file=/iso/c.iso,format=raw,if=none,id=drivers,media=cdrom",
      "-device",
      "virtio-scsi-pci,id=scsi0",
      "-device",
      "scsi-cd,drive=drivers,bus=scsi0.0",
      "-drive",
      "file=/d/hdd.qcow2,format=qcow2,if=virtio,id=hdd",
    ],
  },
  {
    rule: "a disk's options: map may hold its known keys and extra -drive sub-options",
    files: [
      "storage:\n  - name: hdd\n    options: {interface: ide, cache: none, discard: unmap, " +
      "file: ./hdd.qcow2}\n",
    ],
    argv: ["-drive", "file=@/hdd.qcow2,format=qcow2,if=ide,id=hdd,cache=none,discard=unmap"],
  },
  {
    rule: "options: may not set what qvm writes itself (format, if, id)",
    files: ["storage:\n  - name: hdd\n    options: {format: raw}\n"],
    refused: /options\.format for storage 'hdd': qvm sets 'format' itself/,
  },
  {
    rule: "a key given both at the top and under options: with different values is refused",
    files: [
      "storage:\n  - {name: s, type: virtfs, path: /srv, mount_tag: a, options: {mount_tag: b}}\n",
    ],
    refused: /mount_tag is given twice/,
  },

  // Relative paths inside option text resolve against the config's folder.
  {
    rule: "file= in a -drive string",
    files: ['arguments:\n  - drive: "file=./disk.qcow2,if=virtio"\n'],
    argv: ["-drive", "file=@/disk.qcow2,if=virtio"],
  },
  {
    rule: "path= in an -fsdev map, file= in a -drive map and in a further key of the item",
    files: [
      "arguments:\n  - fsdev: {fsdriver: local, id: fs0, path: ./share, security_model: none}\n" +
      "  - drive: {file: ./a.qcow2, if: virtio}\n" +
      "  - {drive: null, file: b.img, format: raw, if: ide}\n",
    ],
    argv: [
      "-fsdev",
      "fsdriver=local,id=fs0,path=@/share,security_model=none",
      "-drive",
      "file=@/a.qcow2,if=virtio",
      "-drive",
      "file=@/b.img,format=raw,if=ide",
    ],
  },
  {
    rule: "file= in a -drive list, with an escaped comma in the name",
    files: ["arguments:\n  - drive: ['file=./a,,b.img', if=ide]\n"],
    argv: ["-drive", "file=@/a,,b.img,if=ide"],
  },
  {
    rule: "a chardev's path= in a string and as a further key",
    files: [
      'arguments:\n  - chardev: "socket,id=c0,path=./c0.sock,server=on,wait=off"\n' +
      "  - {chardev: socket, id: c1, path: sub/c1.sock, server: true, wait: false}\n",
    ],
    argv: [
      "-chardev",
      "socket,id=c0,path=@/c0.sock,server=on,wait=off",
      "-chardev",
      "socket,id=c1,path=@/sub/c1.sock,server=on,wait=off",
    ],
  },
  {
    rule: "dotted path keys (file.filename=) resolve; a -blockdev file= naming a node does not",
    files: [
      "arguments:\n  - blockdev: {driver: file, node-name: f0, filename: ./a.img}\n" +
      "  - blockdev: {driver: qcow2, node-name: q0, file: f0, backing.file: f1}\n" +
      '  - drive: "file.driver=file,file.filename=./b.img,if=none,id=b"\n',
    ],
    argv: [
      "-blockdev",
      "driver=file,node-name=f0,filename=@/a.img",
      "-blockdev",
      "driver=qcow2,node-name=q0,file=f0,backing.file=f1",
      "-drive",
      "file.driver=file,file.filename=@/b.img,if=none,id=b",
    ],
  },
  {
    rule: "other path keys: logfile=, script=, romfile=, mem-path=",
    files: [
      "arguments:\n  - {chardev: file, id: log0, path: ./out.txt, logfile: ./log.txt}\n" +
      "  - {netdev: tap, id: t0, script: ./up.sh, downscript: 'no'}\n" +
      "  - {device: e1000, romfile: ./efi.rom}\n" +
      "  - object: {qom-type: memory-backend-file, id: m0, size: 64M, mem-path: ./mem}\n",
    ],
    argv: [
      "-chardev",
      "file,id=log0,path=@/out.txt,logfile=@/log.txt",
      "-netdev",
      "tap,id=t0,script=@/up.sh,downscript=no",
      "-device",
      "e1000,romfile=@/efi.rom",
      "-object",
      "qom-type=memory-backend-file,id=m0,size=64M,mem-path=@/mem",
    ],
  },
  {
    rule: "only paths resolve: loadvm, incoming, append, URIs and absolute paths stay as written",
    files: [
      'arguments:\n  - chardev: "pipe,id=p0,path=fifo"\n' +
      "  - loadvm: snap1\n  - incoming: 'defer'\n  - append: 'root=./x file=./y'\n" +
      '  - drive: "file=nbd:localhost:10809,if=virtio"\n  - drive: {file: /abs/a.img}\n' +
      '  - netdev: "user,id=n0,hostfwd=tcp::2222-:22"\n',
    ],
    argv: [
      "-chardev",
      "pipe,id=p0,path=@/fifo",
      "-loadvm",
      "snap1",
      "-incoming",
      "defer",
      "-append",
      "root=./x file=./y",
      "-drive",
      "file=nbd:localhost:10809,if=virtio",
      "-drive",
      "file=/abs/a.img",
      "-netdev",
      "user,id=n0,hostfwd=tcp::2222-:22",
    ],
  },
  {
    rule: "short-form character devices: -serial file:, -monitor unix:, -parallel pipe:",
    files: [
      "arguments:\n  - serial: file:./serial.log\n  - monitor: 'unix:mon.sock,server=on,wait=off'\n" +
      "  - parallel: pipe:./lp\n  - qmp: 'tcp:127.0.0.1:4444,server=on,wait=off'\n" +
      "  - debugcon: 'unix:/run/abs.sock'\n",
    ],
    argv: [
      "-serial",
      "file:@/serial.log",
      "-monitor",
      "unix:@/mon.sock,server=on,wait=off",
      "-parallel",
      "pipe:@/lp",
      "-qmp",
      "tcp:127.0.0.1:4444,server=on,wait=off",
      "-debugcon",
      "unix:/run/abs.sock",
    ],
  },
  {
    rule: "raw args: the value after a path option and path keys in option text",
    files: ['args: ["-drive", "file=./raw.img,format=raw", "-cdrom", "x.iso", "-S"]\n'],
    argv: ["-drive", "file=@/raw.img,format=raw", "-cdrom", "@/x.iso", "-S"],
  },

  // Path options: the whole value is a path.
  {
    rule: "cdrom, hda-hdd, fda/fdb, sd and mtdblock resolve like kernel and initrd",
    files: [
      "arguments:\n  - cdrom: ./install.iso\n  - hda: a.img\n  - hdb: ./b.img\n  - hdc: c.img\n" +
      "  - hdd: d.img\n  - fda: ./floppy.img\n  - fdb: f2.img\n  - sd: ./card.img\n" +
      "  - mtdblock: ./flash.img\n  - kernel: ./vmlinuz\n  - initrd: initrd.cpio\n",
    ],
    argv: [
      "-cdrom",
      "@/install.iso",
      "-hda",
      "@/a.img",
      "-hdb",
      "@/b.img",
      "-hdc",
      "@/c.img",
      "-hdd",
      "@/d.img",
      "-fda",
      "@/floppy.img",
      "-fdb",
      "@/f2.img",
      "-sd",
      "@/card.img",
      "-mtdblock",
      "@/flash.img",
      "-kernel",
      "@/vmlinuz",
      "-initrd",
      "@/initrd.cpio",
    ],
  },

  // Empty nested maps and list-valued sub-options.
  {
    rule: "an empty nested map is a bare value: {display: {gtk: {}}} is -display gtk",
    files: ["arguments:\n  - display: {gtk: {}}\n"],
    argv: ["-display", "gtk"],
  },
  {
    rule: "an empty first key followed by sub-options: {display: {gtk: {}, zoom-to-fit: on}}",
    files: ["arguments:\n  - display: {gtk: {}, zoom-to-fit: on}\n"],
    argv: ["-display", "gtk,zoom-to-fit=on"],
  },
  {
    rule: "a list-valued sub-option repeats its key: hostfwd=A,hostfwd=B",
    files: [
      "arguments:\n  - netdev: user\n    id: n0\n    hostfwd: ['tcp::2222-:22', 'tcp::8080-:80']\n",
    ],
    argv: ["-netdev", "user,id=n0,hostfwd=tcp::2222-:22,hostfwd=tcp::8080-:80"],
  },
  {
    rule: "a list under -blockdev, which QEMU parses as keyval, is indexed: children.0=a",
    files: [
      "arguments:\n  - blockdev: {driver: quorum, node-name: q, vote-threshold: 1, " +
      "children: [a, b]}\n",
    ],
    argv: ["-blockdev", "driver=quorum,node-name=q,vote-threshold=1,children.0=a,children.1=b"],
  },
  {
    rule: "a list inside the option's map repeats its key too",
    files: ["arguments:\n  - netdev: {type: user, id: n0, hostfwd: ['tcp::1-:1', 'udp::2-:2']}\n"],
    argv: ["-netdev", "type=user,id=n0,hostfwd=tcp::1-:1,hostfwd=udp::2-:2"],
  },

  // Flags given twice.
  {
    rule: "a bare flag given in two files is written once; options with values stay as given",
    files: [
      "arguments:\n  - enable-kvm\n  - device: virtio-rng-pci\n",
      "arguments:\n  - enable-kvm\n  - no-reboot\n  - device: virtio-rng-pci\n",
    ],
    argv: ["-enable-kvm", "-device", "virtio-rng-pci", "-no-reboot", "-device", "virtio-rng-pci"],
  },
  {
    rule: "a flag spelled three ways in one file is written once",
    files: ["arguments:\n  - no-reboot\n  - -no-reboot\n  - {no-reboot: null}\n"],
    argv: ["-no-reboot"],
  },

  // A top-level key and the same option in arguments: QEMU keeps the later one.
  {
    rule: "memory before arguments: the {m: ...} argument comes later and wins",
    files: ["memory: 4G\narguments:\n  - m: 2G\n"],
    argv: ["-m", "2G"],
    warns: /memory is given twice.*QEMU uses the later one, so qvm keeps '\{m: 2G\}'/,
  },
  {
    rule: "arguments before memory: the memory key comes later and wins",
    files: ["arguments:\n  - m: 2G\nmemory: 4G\n"],
    argv: ["-m", "4G"],
    warns: /memory is given twice.*so qvm keeps 'memory: 4G'/,
  },
  {
    rule: "display given as a key and as an argument",
    files: ["display: none\narguments:\n  - display: {gtk: {}}\n"],
    argv: ["-display", "gtk"],
    warns: /display is given twice/,
  },
  {
    rule: "cpu and smp, and vga both ways",
    files: ["arguments:\n  - smp: 4\n  - vga: std\ncpu: 2\nvga: none\n"],
    argv: ["-smp", "2", "-vga", "none"],
    warns: /cpu is given twice/,
  },
  {
    rule: "across files the later file wins whichever way it spells it",
    files: ["memory: 4G\narguments:\n  - m: 3G\n", "memory: 2G\n", "arguments:\n  - m: 1G\n"],
    argv: ["-m", "1G"],
    warns:
      /vm2\.yaml: memory is given twice, as 'memory: 2G' in an earlier config and as '\{m: 1G\}' here; the later config wins/,
  },

  // Case-insensitive words.
  {
    rule: "type: QCOW2, Raw and VirtFS in any case",
    files: [
      "storage:\n  - {name: a, type: QCOW2}\n  - {name: b, type: Raw, interface: IDE}\n" +
      "  - {name: c, type: VirtFS, path: /srv, security_model: None}\n",
    ],
    argv: [
      "-drive",
      "file=/d/a.qcow2,format=qcow2,if=virtio,id=a",
      "-drive",
      "file=/d/b.raw,format=raw,if=ide,id=b",
      "-virtfs",
      "local,path=/srv,mount_tag=c,security_model=none,id=c",
    ],
  },
  {
    rule: "security_model: mapped, QEMU's other name for mapped-xattr, is accepted",
    files: ["storage:\n  - {name: s, type: virtfs, path: /srv, security_model: Mapped}\n"],
    argv: ["-virtfs", "local,path=/srv,mount_tag=s,security_model=mapped-xattr,id=s"],
  },
  {
    rule: "readonly: yes (a boolean to maqet's YAML parser) is true",
    files: ["storage:\n  - {name: s, type: virtfs, path: /srv, readonly: yes}\n"],
    argv: ["-virtfs", "local,path=/srv,mount_tag=s,security_model=mapped-xattr,id=s,readonly=on"],
  },

  {
    rule: "readonly: 1 and 0, numbers maqet takes by their truth, are true and false",
    files: [
      "storage:\n  - {name: a, type: virtfs, path: /srv, readonly: 1}\n" +
      "  - {name: b, type: virtfs, path: /srv, options: {readonly: 0}}\n",
    ],
    argv: [
      "-virtfs",
      "local,path=/srv,mount_tag=a,security_model=mapped-xattr,id=a,readonly=on",
      "-virtfs",
      "local,path=/srv,mount_tag=b,security_model=mapped-xattr,id=b",
    ],
  },

  // Keys that are commands.
  ...["start", "stop", "add", "rm", "snapshot", "qmp"].map((key): Row => ({
    rule: `a '${key}:' key is a command, not a setting, and is refused`,
    files: [`name: vm1\n${key}:\n  timeout: 10\n`],
    refused: new RegExp(`config key '${key}' is a qvm command, not a VM setting`),
  })),

  // Disks in system folders.
  ...["/etc", "/usr/lib", "/bin", "/sbin", "/boot", "/proc", "/sys", "/dev"].map((folder): Row => ({
    rule: `a new disk in ${folder} is refused`,
    files: [`storage:\n  - {name: hdd, file: ${folder}/qvm-test-disk.qcow2}\n`],
    refused: new RegExp(`refusing to create disk 'hdd' at '${folder}/qvm-test-disk\\.qcow2'`),
  })),

  // nographic.
  {
    rule: "nographic is left out: qvm runs the VM headless, serial on its console",
    files: ["arguments:\n  - nographic\n  - no-reboot\n"],
    argv: ["-no-reboot"],
    warns: /nographic: .*headless \(-display none\).*'qvm console'/,
  },
  {
    rule: "log_file, maqet's own log, is ignored with a pointer to qvm's logs",
    files: ["log_file: /tmp/vm.log\narguments:\n  - no-reboot\n"],
    argv: ["-no-reboot"],
    warns: /^log_file is maqet's own log \(ignored\): see 'qvm logs VM'/,
  },
  {
    rule: "nographic in raw args is left out too",
    files: ["args: [-nographic, -no-reboot]\n"],
    argv: ["-no-reboot"],
    warns: /nographic: .*headless \(-display none\).*'qvm console'/,
  },
  {
    rule: "a serial port or monitor on stdio is left out: QEMU refuses stdio when detached",
    files: [
      "arguments:\n  - nographic\n  - serial: mon:stdio\n  - monitor: stdio\n" +
      "  - serial: 'file:/tmp/com2.log'\nargs: [-serial, stdio, -no-reboot]\n",
    ],
    argv: ["-serial", "file:/tmp/com2.log", "-no-reboot"],
    warns: /^serial mon:stdio: qvm runs QEMU detached, where stdio is refused; .*'qvm console'/,
  },
  {
    rule: "a stdio chardev is refused with the reason",
    files: ["arguments:\n  - chardev: stdio\n    id: c0\n    mux: true\n"],
    refused: /chardev stdio cannot be used: qvm runs QEMU detached \(-daemonize\)/,
  },
  {
    rule: "the curses display is refused with the reason, as a key or an argument",
    files: ["display: curses\n"],
    refused: /display curses cannot be used: qvm runs QEMU detached/,
  },
  {
    rule: "the curses display in arguments is refused too",
    files: ["arguments:\n  - display: {curses: {}, charset: CP437}\n"],
    refused: /display curses cannot be used/,
  },

  // More spellings of the rules above.
  {
    rule: "a flag written {flag: {}} or {flag: []} is the same flag, kept once",
    files: [
      "arguments:\n  - enable-kvm\n  - {enable-kvm: {}}\n",
      "arguments:\n  - {--enable-kvm: {}}\n  - {enable-kvm: []}\n",
    ],
    argv: ["-enable-kvm"],
  },
  {
    rule: "unix: sockets of -vnc and -gdb, -option-rom and a vde sock= resolve too",
    files: [
      "arguments:\n  - vnc: unix:./vnc.sock\n  - gdb: 'unix:gdb.sock,server=on,wait=off'\n" +
      "  - option-rom: ./pxe.rom\n  - netdev: 'vde,id=v0,sock=./vde.ctl'\n  - vnc: ':1'\n",
    ],
    argv: [
      "-vnc",
      "unix:@/vnc.sock",
      "-gdb",
      "unix:@/gdb.sock,server=on,wait=off",
      "-option-rom",
      "@/pxe.rom",
      "-netdev",
      "vde,id=v0,sock=@/vde.ctl",
      "-vnc",
      ":1",
    ],
  },
  {
    rule: "a YAML 1.1 octal number reaches QEMU as written: fmode: 0644 is 0644, not 420",
    files: [
      "storage:\n  - name: s\n    type: virtfs\n    path: /srv\n" +
      "    options: {dmode: 0755, fmode: 0644, security_model: mapped-file}\n" +
      "arguments:\n  - {fsdev: local, id: f1, path: /srv, security_model: mapped, fmode: 0600}\n" +
      "  - {fsdev: local, id: f2, path: /srv, security_model: mapped, fmode: '0640'}\n",
    ],
    argv: [
      "-virtfs",
      "local,path=/srv,mount_tag=s,security_model=mapped-file,id=s,dmode=0755,fmode=0644",
      "-fsdev",
      "local,id=f1,path=/srv,security_model=mapped,fmode=0600",
      "-fsdev",
      "local,id=f2,path=/srv,security_model=mapped,fmode=0640",
    ],
  },

  // Round three: what maqet's own code makes of these.
  {
    rule: "cpu: a full -smp string is passed on as it is",
    files: ["cpu: 4,sockets=1,cores=2,threads=2\n"],
    argv: ["-smp", "4,sockets=1,cores=2,threads=2"],
  },
  {
    rule: "args before arguments in the file: its options come first",
    files: ["args: [-no-reboot]\narguments:\n  - no-shutdown\nmemory: 256M\n"],
    argv: ["-no-reboot", "-no-shutdown", "-m", "256M"],
  },
  {
    rule: "a storage key before a -drive in arguments puts that disk first",
    files: [
      "storage:\n  - {name: first, type: raw, file: /img/a.img}\n" +
      "arguments:\n  - drive: file=/img/b.img,format=raw,if=virtio\n",
    ],
    argv: [
      "-drive",
      "file=/img/a.img,format=raw,if=virtio,id=first",
      "-drive",
      "file=/img/b.img,format=raw,if=virtio",
    ],
  },
  {
    rule: "a later file's new keys come after the earlier file's keys",
    files: ["arguments:\n  - no-reboot\n", "memory: 1G\narguments:\n  - no-shutdown\n"],
    argv: ["-no-reboot", "-no-shutdown", "-m", "1G"],
  },
  {
    rule: "{enable-kvm: true} is the bare flag -enable-kvm (QEMU refuses -enable-kvm on)",
    files: ["arguments:\n  - enable-kvm: true\n  - {no-reboot: on}\n  - {sandbox: true}\n"],
    argv: ["-enable-kvm", "-no-reboot", "-sandbox", "on"],
  },
  {
    rule: "{flag: false} leaves the flag out, with a warning",
    files: ["arguments:\n  - enable-kvm: false\n  - no-reboot\n"],
    argv: ["-no-reboot"],
    warns: /arguments\[0\] .*turns a flag off: it is left out/,
  },
  {
    rule: "a flag with any other value is refused: QEMU would read the value as a disk image",
    files: ["arguments:\n  - enable-kvm: 1\n"],
    refused: /-enable-kvm takes no value; write 'enable-kvm' or \{enable-kvm: true\}/,
  },
  {
    rule: "a storage name with spaces and other letters names its file; its QEMU id is derived",
    files: ["storage:\n  - {name: my disk, size: 1M}\n  - {name: données, type: raw}\n"],
    argv: [
      "-drive",
      `file=/d/my disk.qcow2,format=qcow2,if=virtio,id=${storageId("my disk")}`,
      "-drive",
      `file=/d/données.raw,format=raw,if=virtio,id=${storageId("données")}`,
    ],
  },
  {
    rule: "a virtfs share whose path is a file is refused up front",
    files: ["storage:\n  - {name: s, type: virtfs, path: /etc/hostname}\n"],
    refused:
      /invalid path '\/etc\/hostname' for storage 's': it is a file, and a virtfs share is a folder/,
  },
  {
    rule: "a backing_file that does not exist is refused when the VM is defined",
    files: ["storage:\n  - {name: top, file: ./top.qcow2, backing_file: ./nope.qcow2}\n"],
    refused: /backing_file '.*\/nope\.qcow2' for storage 'top' not found/,
  },
  {
    rule: "YAML merge keys (<<: *anchor), which maqet's parser applies, are applied",
    files: [
      "x-disk: &disk {type: raw, size: 1G, interface: ide}\nstorage:\n" +
      "  - <<: *disk\n    name: a\n  - <<: [*disk]\n    name: b\n    interface: scsi\n",
    ],
    argv: [
      "-drive",
      "file=/d/a.raw,format=raw,if=ide,id=a",
      "-drive",
      "file=/d/b.raw,format=raw,if=none,id=b",
      "-device",
      "virtio-scsi-pci,id=scsi0",
      "-device",
      "scsi-hd,drive=b,bus=scsi0.0",
    ],
  },
  {
    rule: "an empty arguments item (- or - {}) is skipped, as maqet does, with a warning",
    files: ["arguments:\n  -\n  - {}\n  - no-reboot\n"],
    argv: ["-no-reboot"],
    warns: /^arguments\[1\] is empty \(ignored\)$/,
  },
  ...["binary", "memory", "storage"].map((key): Row => ({
    rule:
      `{${key}: ...} in arguments, an option QEMU does not have, is refused saying where it goes`,
    files: [`arguments:\n  - ${key}: x\n`],
    refused: new RegExp(`'${key}' is a config key, not a QEMU option \\(QEMU has no -${key}\\)`),
  })),
  {
    rule: "an unquoted MAC address stays text (YAML 1.1 would read a base-60 number)",
    files: ["arguments:\n  - device: virtio-net-pci\n    mac: 52:54:00:12:34:56\n"],
    argv: ["-device", "virtio-net-pci,mac=52:54:00:12:34:56"],
  },
  {
    rule: "memory: 1.5G, a size QEMU's -m takes, is written in whole MiB",
    files: ["memory: 1.5G\n"],
    argv: ["-m", "1536M"],
  },
  {
    rule: "a later file sets a named item's key under options: where an earlier set it on top",
    files: [
      "storage:\n  - {name: hdd, file: ./a.qcow2}\n" +
      "  - {name: s, type: virtfs, path: /srv, options: {readonly: true}}\n",
      "storage:\n  - {name: hdd, options: {file: ./b.qcow2}}\n  - {name: s, readonly: false}\n",
    ],
    argv: [
      "-drive",
      "file=@/b.qcow2,format=qcow2,if=virtio,id=hdd",
      "-virtfs",
      "local,path=/srv,mount_tag=s,security_model=mapped-xattr,id=s",
    ],
  },
];

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "qvm-maqet-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function build(dir: string, files: string[], warn: (m: string) => void): Promise<string[]> {
  const paths: string[] = [];
  for (const [i, text] of files.entries()) {
    paths.push(`${dir}/vm${i}.yaml`);
    await Deno.writeTextFile(paths[i], text);
  }
  const config = await loadConfigs(paths, {}, { warn });
  return configArgv(config, { diskDir: "/d" });
}

for (const row of rows) {
  Deno.test(`maqet config: ${row.rule}`, async () => {
    await withDir(async (dir) => {
      const warnings: string[] = [];
      const attempt = build(dir, row.files, (m) => warnings.push(m));
      if (row.refused) {
        await assert.rejects(attempt, (error: unknown) => {
          assert.ok(error instanceof QvmError, String(error));
          assert.equal(error.exitCode, 3);
          assert.match(error.message, row.refused!);
          return true;
        });
        return;
      }
      const expected = row.argv!.map((arg) => arg.replaceAll("@", dir));
      assert.deepEqual(await attempt, expected);
      if (row.warns) assert.ok(warnings.some((w) => row.warns!.test(w)), warnings.join("\n"));
    });
  });
}

Deno.test("an existing image in a system folder may be named; a new one beside it may not", async () => {
  await withDir(async (dir) => {
    const existing = "storage:\n  - {name: null0, type: raw, file: /dev/null, interface: ide}\n";
    assert.deepEqual(await build(dir, [existing], () => {}), [
      "-drive",
      "file=/dev/null,format=raw,if=ide,id=null0",
    ]);
    await assert.rejects(
      build(dir, [existing + "  - {name: new0, type: raw, file: /dev/qvm-new0.img}\n"], () => {}),
      /refusing to create disk 'new0' at '\/dev\/qvm-new0\.img': \/dev is a system folder/,
    );
  });
});

async function qemuImg(args: string[]): Promise<string> {
  const out = await new Deno.Command("qemu-img", { args, stdout: "piped", stderr: "piped" })
    .output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  return new TextDecoder().decode(out.stdout);
}

Deno.test("an overlay without a size is created as big as its backing file", async () => {
  await withDir(async (dir) => {
    await qemuImg(["create", "-q", "-f", "qcow2", `${dir}/base.qcow2`, "20M"]);
    await Deno.writeTextFile(
      `${dir}/vm.yaml`,
      "storage:\n  - {name: top, file: ./top.qcow2, backing_file: ./base.qcow2}\n",
    );
    const [disk] = (await loadConfigs([`${dir}/vm.yaml`], {})).storage;
    assert.ok(disk.type === "qcow2");
    assert.equal(await createDiskIfMissing(disk, disk.file!), true);
    const info = JSON.parse(await qemuImg(["info", "--output=json", `${dir}/top.qcow2`]));
    assert.equal(info["virtual-size"], 20 * 1024 * 1024);
    assert.equal(info["backing-filename"], `${dir}/base.qcow2`);
  });
});

Deno.test("backing_format: QCOW2 is read in any case, as type: is (qemu-img knows only qcow2)", async () => {
  await withDir(async (dir) => {
    await qemuImg(["create", "-q", "-f", "qcow2", `${dir}/base.qcow2`, "4M"]);
    await Deno.writeTextFile(
      `${dir}/vm.yaml`,
      "storage:\n  - {name: top, type: QCOW2, file: ./top.qcow2, backing_file: ./base.qcow2, " +
        "backing_format: QCOW2}\n",
    );
    const [disk] = (await loadConfigs([`${dir}/vm.yaml`], {})).storage;
    assert.ok(disk.type === "qcow2");
    assert.equal(disk.backing_format, "qcow2");
    assert.equal(await createDiskIfMissing(disk, disk.file!), true);
  });
});

Deno.test("a new disk in /dev/shm, a RAM disk for users, is accepted", async () => {
  await withDir(async (dir) => {
    const file = `/dev/shm/qvm-test-${crypto.randomUUID()}.qcow2`;
    assert.deepEqual(await build(dir, [`storage:\n  - {name: ram, file: ${file}}\n`], () => {}), [
      "-drive",
      `file=${file},format=qcow2,if=virtio,id=ram`,
    ]);
  });
});

Deno.test("a disk in a folder that is a symlink to a system folder is refused too", async () => {
  await withDir(async (dir) => {
    await Deno.symlink("/etc", `${dir}/conf`);
    await assert.rejects(
      build(dir, ["storage:\n  - {name: hdd, file: ./conf/x.qcow2}\n"], () => {}),
      /refusing to create disk 'hdd' at .*: \/etc is a system folder/,
    );
  });
});

Deno.test("a disk file that is a dangling symlink into a system folder is refused", async () => {
  await withDir(async (dir) => {
    const target = `/etc/qvm-test-${crypto.randomUUID()}.qcow2`;
    await Deno.symlink(target, `${dir}/disk.qcow2`);
    await Deno.symlink("./disk.qcow2", `${dir}/again.qcow2`);
    for (const file of ["./disk.qcow2", "again.qcow2"]) {
      await assert.rejects(
        build(dir, [`storage:\n  - {name: hdd, file: ${file}, size: 1M}\n`], () => {}),
        /refusing to create disk 'hdd' at .*: \/etc is a system folder/,
      );
    }
    const disk: DiskStorage = { name: "hdd", type: "qcow2", size: "1M", interface: "virtio" };
    await assert.rejects(
      createDiskIfMissing(disk, `${dir}/disk.qcow2`),
      /\/etc is a system folder/,
    );
    assert.equal(exists(target), false);
  });
});

Deno.test("apply: maqet's options: form changes what a stored item has at the top", async () => {
  await withDir(async (dir) => {
    await Deno.writeTextFile(
      `${dir}/a.yaml`,
      "storage:\n  - {name: s, type: virtfs, path: /srv}\n  - {name: hdd, file: ./a.qcow2}\n",
    );
    await Deno.writeTextFile(
      `${dir}/b.yaml`,
      "storage:\n  - {name: s, options: {security_model: none, mount_tag: t9}}\n" +
        "  - {name: hdd, options: {file: ./b.qcow2, cache: none}}\n",
    );
    const base = await loadConfigs([`${dir}/a.yaml`], {});
    const applied = await loadConfigs([`${dir}/b.yaml`], {}, { base });
    assert.deepEqual(configArgv(applied, { diskDir: "/d" }), [
      "-virtfs",
      "local,path=/srv,mount_tag=t9,security_model=none,id=s",
      "-drive",
      `file=${dir}/b.qcow2,format=qcow2,if=virtio,id=hdd,cache=none`,
    ]);
  });
});

Deno.test("a relative backing_file is found beside its disk, as qemu-img and maqet do", async () => {
  await withDir(async (dir) => {
    await Deno.mkdir(`${dir}/vms`);
    await Deno.mkdir(`${dir}/images`);
    await Deno.writeTextFile(`${dir}/vms/base.qcow2`, "");
    await Deno.writeTextFile(`${dir}/images/base.qcow2`, "");
    await Deno.writeTextFile(
      `${dir}/vm.yaml`,
      "storage:\n  - {name: a, file: vms/a.qcow2, backing_file: base.qcow2}\n" +
        "  - {name: b, options: {file: ./vms/b/b.qcow2, backing_file: ../base.qcow2}}\n" +
        "  - {name: c, backing_file: images/base.qcow2}\n",
    );
    const backing = (await loadConfigs([`${dir}/vm.yaml`], {})).storage.map((disk) =>
      disk.type === "virtfs" ? undefined : disk.backing_file
    );
    assert.deepEqual(backing, [
      `${dir}/vms/base.qcow2`,
      `${dir}/vms/base.qcow2`,
      `${dir}/images/base.qcow2`, // no file: the disk lives in qvm's data dir; the config's folder
    ]);
  });
});

Deno.test("a nographic VM gets qvm's serial console and no display", async () => {
  await withDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/vm.yaml`, "arguments:\n  - nographic\n");
    const config = await loadConfigs([`${dir}/vm.yaml`], {});
    const paths = vmPaths({ dataDir: "/data", runtimeDir: "/run/qvm" }, crypto.randomUUID());
    const argv = launchArgv(
      { id: "0b7f1f7e-0000-4000-8000-000000000000", name: "x", config },
      paths,
    );
    assert.ok(!argv.includes("-nographic"));
    assert.deepEqual(argv.slice(argv.indexOf("-display"), argv.indexOf("-display") + 2), [
      "-display",
      "none",
    ]);
    assert.equal(argv[argv.indexOf("-serial") + 1], "chardev:qvm-serial");
  });
});

Deno.test("qvm add refuses a config key that is a command with exit 3 and says why", async () => {
  await withEnv(async (env) => {
    const path = await env.file("old.yaml", "name: old\nstart:\n  wait_for: qmp\n");
    const result = await env.run(["add", path]);
    assert.equal(result.code, 3);
    assert.match(result.stderr, /config key 'start' is a qvm command, not a VM setting/);
    assert.equal(env.snapshot(), "");
  });
});

Deno.test("qvm add refuses to create a disk under /etc with exit 3", async () => {
  await withEnv(async (env) => {
    const path = await env.file("etc.yaml", "storage:\n  - {name: hdd, file: /etc/qvm-x.qcow2}\n");
    const result = await env.run(["add", path]);
    assert.equal(result.code, 3);
    assert.match(result.stderr, /\/etc is a system folder/);
  });
});

Deno.test("qvm start refuses to create a disk whose folder has become a system folder", async () => {
  await withEnv(async (env) => {
    const place = `${env.root}/place`;
    await Deno.mkdir(`${env.root}/disks`);
    await Deno.symlink(`${env.root}/disks`, place);
    const name = `qvm-test-${crypto.randomUUID()}.qcow2`;
    const extra = `storage:\n  - {name: hdd, file: ${place}/${name}, size: 1M}`;
    await env.ok(["add", await guestConfig(env, { name: "moved", extra })]);
    await Deno.remove(place);
    await Deno.symlink("/etc", place);
    try {
      const result = await env.run(["start", "moved"]);
      assert.equal(result.code, 3);
      assert.match(result.stderr, /refusing to create disk 'hdd' .*\/etc is a system folder/);
      assert.equal(exists(`/etc/${name}`), false);
    } finally {
      await Deno.remove(`/etc/${name}`).catch(() => {});
    }
  });
});

Deno.test({
  name: "relative cdrom, hdb, drive file= and CD-ROM storage paths boot from the config's folder",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    await withEnv(async (env) => {
      const folder = `${env.root}/cfg`;
      await Deno.mkdir(`${folder}/images`, { recursive: true });
      await Deno.writeFile(`${folder}/images/media.iso`, new Uint8Array(2048));
      await Deno.writeFile(`${folder}/hdb.img`, new Uint8Array(1 << 20));
      await Deno.writeFile(`${folder}/extra,1.img`, new Uint8Array(1 << 20));
      await Deno.writeFile(`${folder}/images/install.iso`, new Uint8Array(2048));
      const extra = [
        "  - cdrom: ./images/media.iso",
        "  - hdb: hdb.img",
        '  - drive: "file=./extra,,1.img,format=raw,if=virtio,id=extra"',
      ].join("\n");
      const storage =
        "storage:\n  - {name: install, type: raw, file: images/install.iso, interface: sata, " +
        "media: cdrom}";
      const path = await guestConfig(env, { name: "rel", extra: `${extra}\n${storage}` });
      await Deno.rename(path, `${folder}/rel.yaml`);
      await env.ok(["add", `${folder}/rel.yaml`]);
      await env.ok(["start", "rel", ...WAIT_READY]);
      const blocks = JSON.parse(await env.ok(["qmp", "run", "rel", "query-block"]));
      const files = blocks.flatMap((b: { inserted?: { file: string } }) =>
        b.inserted ? [b.inserted.file] : []
      ).sort();
      assert.deepEqual(files, [
        `${folder}/extra,1.img`,
        `${folder}/hdb.img`,
        `${folder}/images/install.iso`,
        `${folder}/images/media.iso`,
      ]);
    });
  },
});

Deno.test({
  name:
    "a VM with -machine accel= in raw args and its serial on stdio boots, serial on qvm's console",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    await withEnv(async (env) => {
      const guest = await ensureGuest();
      const path = await env.file(
        "term.yaml",
        [
          "name: term",
          "memory: 192M",
          "arguments:",
          `  - kernel: ${guest.kernel}`,
          `  - initrd: ${guest.initrdAcpi}`,
          `  - append: "${guest.append}"`,
          "  - nographic",
          "  - serial: mon:stdio",
          "  - monitor: stdio",
          "  - no-reboot",
          'args: ["-machine", "pc,accel=tcg"]',
        ].join("\n"),
      );
      await env.ok(["add", path]);
      const dry = JSON.parse(await env.ok(["start", "term", "--dry-run", "--json"]));
      assert.ok(!dry.argv.includes("-accel"), dry.argv.join(" "));
      assert.ok(!dry.argv.some((arg: string) => arg.includes("stdio")), dry.argv.join(" "));
      await env.ok(["start", "term", ...WAIT_READY]);
      assert.match(await env.ok(["logs", "term"]), new RegExp(GUEST_READY_MARKER));
      await env.ok(["stop", "term", "--force"]);
    });
  },
});

Deno.test("a missing shared folder is made at start, as maqet makes it; never in /etc", async () => {
  await withDir(async (dir) => {
    const share = (path: string): VirtfsStorage => ({
      name: "s",
      type: "virtfs",
      path,
      mount_tag: "s",
      security_model: "mapped-xattr",
      readonly: false,
    });
    assert.equal(createShareIfMissing(share(`${dir}/a/b`)), true);
    assert.ok((await Deno.stat(`${dir}/a/b`)).isDirectory);
    assert.equal(createShareIfMissing(share(`${dir}/a/b`)), false);
    const etc = `/etc/qvm-test-${crypto.randomUUID()}`;
    assert.throws(() => createShareIfMissing(share(etc)), /\/etc is a system folder/);
    assert.equal(exists(etc), false);
  });
});

Deno.test({
  name: "a VM whose shared folder does not exist yet starts, the folder made beside its config",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    await withEnv(async (env) => {
      const extra = "storage:\n  - {name: work, type: virtfs, path: ./later/work}";
      const path = await guestConfig(env, { name: "later", extra });
      await env.ok(["add", path]);
      await env.ok(["start", "later"]);
      assert.ok(Deno.statSync(`${env.root}/later/work`).isDirectory);
      await env.ok(["stop", "later", "--force"]);
    });
  },
});

/** A TCP port nothing listens on right now. */
function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

Deno.test({
  name: "a nographic VM with two port forwards from a list boots; --dry-run --json is its argv",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    await withEnv(async (env) => {
      const [ssh, web] = [freePort(), freePort()];
      const extra = [
        "  - nographic",
        "  - netdev: user",
        "    id: n0",
        `    hostfwd: ['tcp:127.0.0.1:${ssh}-:22', 'tcp:127.0.0.1:${web}-:80']`,
        "  - device: {driver: virtio-net-pci, netdev: n0}",
      ].join("\n");
      const path = await guestConfig(env, { name: "fwd", extra });
      await env.ok(["add", path]);
      const dry = JSON.parse(await env.ok(["start", "fwd", "--dry-run", "--json"]));
      const forwards =
        `user,id=n0,hostfwd=tcp:127.0.0.1:${ssh}-:22,hostfwd=tcp:127.0.0.1:${web}-:80`;
      assert.equal(dry.argv[dry.argv.indexOf("-netdev") + 1], forwards);

      await env.ok(["start", "fwd", ...WAIT_READY]);
      const status = await env.status("fwd");
      const cmdline = Deno.readTextFileSync(`/proc/${status.pid}/cmdline`).split("\0");
      assert.deepEqual(cmdline.slice(0, -1), dry.argv);
      for (const port of [ssh, web]) {
        const conn = await Deno.connect({ hostname: "127.0.0.1", port });
        conn.close();
      }
      const usernet = await env.ok([
        "qmp",
        "run",
        "fwd",
        "human-monitor-command",
        '{"command-line": "info usernet"}',
      ]);
      assert.match(usernet, new RegExp(`HOST_FORWARD.*127\\.0\\.0\\.1\\s+${ssh}\\s.*22`));
      assert.match(usernet, new RegExp(`HOST_FORWARD.*127\\.0\\.0\\.1\\s+${web}\\s.*80`));
    });
  },
});

Deno.test("every qvm command is a config key that is refused, except storage and image", async () => {
  const { COMMANDS } = await import("../../src/cli/registry.ts");
  const { COMMAND_KEYS } = await import("../../src/config/mod.ts");
  const missing = COMMANDS.map((c) => c.name).filter((n) =>
    n !== "storage" && n !== "image" && !COMMAND_KEYS.has(n)
  );
  assert.deepEqual(missing, []);
});

Deno.test("qvm add refuses a virtfs file and a missing backing_file (exit 3), defining nothing", async () => {
  await withEnv(async (env) => {
    await env.file("share.txt", "a file, not a folder\n");
    const cases: [string, RegExp][] = [
      [
        "storage:\n  - {name: s, type: virtfs, path: ./share.txt}\n",
        /it is a file, and a virtfs share is a folder/,
      ],
      [
        "storage:\n  - {name: top, file: ./top.qcow2, backing_file: ./gone.qcow2}\n",
        /backing_file '.*\/gone\.qcow2' for storage 'top' not found/,
      ],
    ];
    for (const [text, message] of cases) {
      const result = await env.run(["add", await env.file("vm.yaml", text)]);
      assert.equal(result.code, 3, result.stderr);
      assert.match(result.stderr, message);
      assert.equal(result.stderr.trim().split("\n").length, 1, result.stderr);
      assert.equal(env.snapshot(), "");
    }
  });
});

Deno.test({
  name: "a disk named with spaces and non-ASCII letters boots, its file named after it",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    await withEnv(async (env) => {
      const extra = "storage:\n  - {name: 'my disk é', size: 1M}\n" +
        "  - {name: 'partage ü', type: virtfs, path: ./share}";
      const id = (await env.ok(["add", await guestConfig(env, { name: "odd", extra })])).trim();
      await env.ok(["start", "odd", ...WAIT_READY]);
      const file = `${env.dataDir}/disks/${id}/my disk é.qcow2`;
      assert.ok(Deno.statSync(file).isFile, file);
      const blocks = JSON.parse(await env.ok(["qmp", "run", "odd", "query-block"]));
      const device = blocks.find((b: { inserted?: { file: string } }) => b.inserted?.file === file);
      assert.equal(device?.device, storageId("my disk é"));
      const listing = JSON.parse(await env.ok(["snapshot", "list", "odd", "--json"]));
      assert.equal(JSON.stringify(listing).includes("my disk é"), true, JSON.stringify(listing));
      await env.ok(["stop", "odd", "--force"]);
    });
  },
});
