#!/usr/bin/env python3
"""Helpers for build-images.sh (python3 stdlib only).

Subcommands:
  modorder KO...            print module names in load order (dependencies first),
                            computed from each module's ELF .modinfo `depends=`;
                            fails if a dependency is neither given nor builtin
                            (see --builtin FILE, the kernel's modules.builtin).
  modinfo KO                print the key=value strings of a module's .modinfo section.
  applets BUSYBOX           print the applet names compiled into a busybox binary
                            (parsed from its sorted, NUL-separated applet-name table;
                            works for any target architecture, nothing is executed).
  mkcpio ROOTDIR OUT.gz [--dev PATH:c|b:MAJOR:MINOR:MODE]...
                            pack ROOTDIR as a gzip'ed newc cpio: owner 0:0, mtime 0,
                            sorted entries -> byte-for-byte reproducible. --dev adds
                            device nodes without needing root or mknod.
  elfinstall ROOT LIBDIR PKGDIR[:PKGDIR...] SRC=DEST...
                            install dynamically linked ELF programs into ROOT:
                            each SRC (a file under a PKGDIR) as ROOT/DEST, plus
                            the closure of their DT_NEEDED libraries and program
                            interpreter (read from the ELF program headers),
                            looked up in PKGDIR/{lib,usr/lib}/<multiarch>,
                            {lib,usr/lib}, and installed as real files in
                            ROOT/LIBDIR (the PT_INTERP path becomes a symlink
                            to it). Fails if a library is missing, has the
                            wrong machine type, or DEST already exists (e.g. a
                            busybox applet link).
  elfdeps ELF               print an ELF file's machine, interpreter and
                            DT_NEEDED entries.
  tarextract MEMBER OUT      read an uncompressed tar stream on stdin, write MEMBER's
                            contents to OUT and stop reading as soon as it is found
                            (exit 1 if the stream has no such member).
  mkdisk OUT SIZE SEED      write a deterministic pseudo-random raw disk image:
                            every 512-byte sector starts with the 16-byte tag
                            "HVDISK" + LBA as 8 hex digits + "\\n\\0", the other 496
                            bytes are SHA-256(SEED | LBA | i) output. Prints md5.
"""
import gzip
import hashlib
import os
import re
import stat
import struct
import sys


# ---------------------------------------------------------------- ELF / modinfo
def elf_section(path, wanted):
    """Return the bytes of section `wanted` of an ELF file (32/64-bit, LE/BE)."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"\x7fELF":
        raise SystemExit(f"{path}: not an ELF file")
    is64 = data[4] == 2
    end = "<" if data[5] == 1 else ">"
    if is64:
        shoff, = struct.unpack_from(end + "Q", data, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from(end + "HHH", data, 0x3A)
    else:
        shoff, = struct.unpack_from(end + "I", data, 0x20)
        shentsize, shnum, shstrndx = struct.unpack_from(end + "HHH", data, 0x2E)

    def shdr(i):
        base = shoff + i * shentsize
        if is64:
            name, _typ, _flags, _addr, off, size = struct.unpack_from(end + "IIQQQQ", data, base)
        else:
            name, _typ, _flags, _addr, off, size = struct.unpack_from(end + "IIIIII", data, base)
        return name, off, size

    _, stroff, strsize = shdr(shstrndx)
    strtab = data[stroff:stroff + strsize]
    for i in range(shnum):
        name, off, size = shdr(i)
        nm = strtab[name:strtab.index(b"\0", name)].decode()
        if nm == wanted:
            return data[off:off + size]
    raise SystemExit(f"{path}: no {wanted} section")


def modinfo(path):
    info = {}
    for s in elf_section(path, ".modinfo").split(b"\0"):
        if b"=" in s:
            k, v = s.decode(errors="replace").split("=", 1)
            info.setdefault(k, v)  # first occurrence wins (depends/name are unique)
    return info


def modname(path, info):
    return info.get("name") or os.path.basename(path).split(".ko")[0].replace("-", "_")


def cmd_modorder(args):
    builtin = set()
    kos = []
    it = iter(args)
    for a in it:
        if a == "--builtin":
            with open(next(it)) as f:
                for line in f:
                    line = line.strip()
                    if line:
                        builtin.add(os.path.basename(line).split(".ko")[0].replace("-", "_"))
        else:
            kos.append(a)
    mods = {}  # name -> list of deps, in the order given on the command line
    order_given = []
    for ko in kos:
        info = modinfo(ko)
        name = modname(ko, info)
        deps = [d.replace("-", "_") for d in info.get("depends", "").split(",") if d]
        mods[name] = deps
        order_given.append(name)
    out, state = [], {}

    def visit(n, chain):
        if state.get(n) == "done":
            return
        if state.get(n) == "active":
            raise SystemExit("module dependency cycle: " + " -> ".join(chain + [n]))
        state[n] = "active"
        for d in mods[n]:
            if d in mods:
                visit(d, chain + [n])
            elif d not in builtin:
                raise SystemExit(f"module {n} depends on {d}, which is neither in the set nor builtin")
        state[n] = "done"
        out.append(n)

    for n in order_given:
        visit(n, [])
    print("\n".join(out))


# ---------------------------------------------------------------- dynamic linking
PT_LOAD, PT_DYNAMIC, PT_INTERP = 1, 2, 3
DT_NULL, DT_NEEDED, DT_STRTAB = 0, 1, 5
EM_NAMES = {3: "i386", 40: "arm", 62: "x86_64", 183: "aarch64"}
# Multiarch triplet directories searched, by ELF machine (Debian layout).
MULTIARCH = {183: "aarch64-linux-gnu", 62: "x86_64-linux-gnu", 40: "arm-linux-gnueabihf",
             3: "i386-linux-gnu"}


def elf_dynamic(path):
    """Return (e_machine, interpreter or None, [DT_NEEDED names]) of an ELF
    file, from its program headers (works on stripped files)."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"\x7fELF":
        raise SystemExit(f"{path}: not an ELF file")
    is64 = data[4] == 2
    end = "<" if data[5] == 1 else ">"
    machine, = struct.unpack_from(end + "H", data, 0x12)
    if is64:
        phoff, = struct.unpack_from(end + "Q", data, 0x20)
        phentsize, phnum = struct.unpack_from(end + "HH", data, 0x36)
    else:
        phoff, = struct.unpack_from(end + "I", data, 0x1C)
        phentsize, phnum = struct.unpack_from(end + "HH", data, 0x2A)
    loads, dyn, interp = [], None, None
    for i in range(phnum):
        base = phoff + i * phentsize
        if is64:
            typ, _flags, off, vaddr, _paddr, filesz = struct.unpack_from(end + "IIQQQQ", data, base)
        else:
            typ, off, vaddr, _paddr, filesz = struct.unpack_from(end + "IIIII", data, base)
        if typ == PT_LOAD:
            loads.append((vaddr, off, filesz))
        elif typ == PT_DYNAMIC:
            dyn = (off, filesz)
        elif typ == PT_INTERP:
            interp = data[off:off + filesz].split(b"\0")[0].decode()
    if dyn is None:
        return machine, interp, []  # statically linked

    def file_offset(vaddr):
        for va, off, size in loads:
            if va <= vaddr < va + size:
                return vaddr - va + off
        raise SystemExit(f"{path}: address {vaddr:#x} is in no PT_LOAD segment")

    entsize, fmt = (16, end + "qQ") if is64 else (8, end + "iI")
    needed, strtab = [], None
    for off in range(dyn[0], dyn[0] + dyn[1] - entsize + 1, entsize):
        tag, val = struct.unpack_from(fmt, data, off)
        if tag == DT_NULL:
            break
        if tag == DT_NEEDED:
            needed.append(val)
        elif tag == DT_STRTAB:
            strtab = file_offset(val)
    if needed and strtab is None:
        raise SystemExit(f"{path}: DT_NEEDED entries but no DT_STRTAB")

    def string(i):
        start = strtab + i
        return data[start:data.index(b"\0", start)].decode()

    return machine, interp, [string(i) for i in needed]


def cmd_elfdeps(args):
    machine, interp, needed = elf_dynamic(args[0])
    print(f"machine {EM_NAMES.get(machine, machine)}")
    print(f"interpreter {interp or 'none'}")
    for n in needed:
        print(f"needed {n}")


def cmd_elfinstall(args):
    if len(args) < 4:
        raise SystemExit("usage: elfinstall ROOT LIBDIR PKGDIR[:PKGDIR...] SRC=DEST...")
    root, libdir, pkgdirs = args[0], args[1].strip("/"), args[2].split(":")
    progs = []
    for a in args[3:]:
        src, sep, dest = a.partition("=")
        if not sep or not dest:
            raise SystemExit(f"elfinstall: expected SRC=DEST, got {a}")
        progs.append((src, dest.lstrip("/")))

    def target(rel):
        full = os.path.join(root, rel)
        if os.path.lexists(full):
            what = f" (a link to {os.readlink(full)})" if os.path.islink(full) else ""
            raise SystemExit(f"elfinstall: /{rel} already exists in the image{what}; not overwriting it")
        os.makedirs(os.path.dirname(full), exist_ok=True)
        return full

    def copy(src, rel, mode):
        full = target(rel)
        with open(src, "rb") as f:
            data = f.read()
        with open(full, "wb") as f:
            f.write(data)
        os.chmod(full, mode)
        return len(data)

    def find_lib(name, machine, who):
        dirs = []
        for sub in (MULTIARCH.get(machine), None):
            for top in ("lib", "usr/lib"):
                dirs.append(os.path.join(top, sub) if sub else top)
        for pkg in pkgdirs:
            for d in dirs:
                cand = os.path.join(pkg, d, name)
                if os.path.isfile(cand):  # follows symlinks inside the package
                    m = elf_dynamic(cand)[0]
                    if m != machine:
                        raise SystemExit(f"elfinstall: {cand} (needed by {who}) is for "
                                         f"{EM_NAMES.get(m, m)}, not {EM_NAMES.get(machine, machine)}")
                    return cand
        raise SystemExit(f"elfinstall: library {name}, needed by {who}, is in none of the "
                         f"extracted packages ({', '.join(pkgdirs)}); add the package that "
                         f"ships it to build-images.sh")

    libs = {}      # soname -> source file
    interps = {}   # interpreter path -> soname
    queue = []
    total = 0
    for src, dest in progs:
        if not os.path.isfile(src):
            raise SystemExit(f"elfinstall: program {src} not found")
        total += copy(src, dest, 0o755)
        queue.append((src, "/" + dest))
        print(f"program /{dest} <- {src}")
    machine0 = None
    while queue:
        path, who = queue.pop(0)
        machine, interp, needed = elf_dynamic(path)
        machine0 = machine0 or machine
        if machine != machine0:
            raise SystemExit(f"elfinstall: {who} is for {EM_NAMES.get(machine, machine)}, "
                             f"the others for {EM_NAMES.get(machine0, machine0)}")
        names = list(needed)
        if interp:
            interps[interp] = os.path.basename(interp)
            names.append(os.path.basename(interp))
        for name in names:
            if name in libs:
                continue
            libs[name] = find_lib(name, machine, who)
            queue.append((libs[name], name))
    for name in sorted(libs):
        mode = 0o755 if name in interps.values() else 0o644
        size = copy(libs[name], os.path.join(libdir, name), mode)
        total += size
        print(f"library /{libdir}/{name} ({size} bytes)")
    for interp, name in sorted(interps.items()):
        rel = interp.lstrip("/")
        if rel != os.path.join(libdir, name):
            link = os.path.relpath(os.path.join(libdir, name), os.path.dirname(rel))
            os.symlink(link, target(rel))
            print(f"interpreter {interp} -> {link}")
    print(f"elfinstall: {len(progs)} programs, {len(libs)} libraries, {total} bytes")


def cmd_modinfo(args):
    for k, v in modinfo(args[0]).items():
        print(f"{k}={v}")


# ---------------------------------------------------------------- busybox applets
NAME_RE = re.compile(rb"^[a-z0-9_.\[\]-]{1,32}$")


def cmd_applets(args):
    with open(args[0], "rb") as f:
        data = f.read()
    parts = data.split(b"\0")
    best, cur = [], []
    for p in parts:
        if NAME_RE.match(p) and (not cur or p > cur[-1]):
            cur.append(p)
        else:
            if len(cur) > len(best):
                best = cur
            cur = [p] if NAME_RE.match(p) else []
    if len(cur) > len(best):
        best = cur
    if len(best) < 20:
        raise SystemExit(f"{args[0]}: could not find the busybox applet table")
    for n in best:
        if n != b"busybox":
            print(n.decode())


# ---------------------------------------------------------------- newc cpio
def newc_entry(name, mode, data=b"", ino=0, nlink=1, rdev=(0, 0)):
    nameb = name.encode() + b"\0"
    hdr = "070701" + "".join("%08X" % v for v in (
        ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rdev[0], rdev[1], len(nameb), 0))
    out = hdr.encode() + nameb
    out += b"\0" * (-len(out) % 4)
    out += data
    out += b"\0" * (-len(out) % 4)
    return out


def cmd_mkcpio(args):
    root, outpath, devs = args[0], args[1], []
    it = iter(args[2:])
    for a in it:
        if a == "--dev":
            p, kind, maj, mino, mode = next(it).split(":")
            devs.append((p.lstrip("/"), kind, int(maj), int(mino), int(mode, 8)))
        else:
            raise SystemExit(f"mkcpio: unknown argument {a}")
    entries = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel = os.path.relpath(dirpath, root)
        for n in [None] + sorted(filenames) + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            full = dirpath if n is None else os.path.join(dirpath, n)
            name = rel if n is None else os.path.normpath(os.path.join(rel, n))
            if name == ".":
                continue
            st = os.lstat(full)
            perm = stat.S_IMODE(st.st_mode)
            if stat.S_ISLNK(st.st_mode):
                entries[name] = (stat.S_IFLNK | 0o777, os.readlink(full).encode(), (0, 0))
            elif stat.S_ISDIR(st.st_mode):
                entries[name] = (stat.S_IFDIR | perm, b"", (0, 0))
            elif stat.S_ISREG(st.st_mode):
                with open(full, "rb") as f:
                    entries[name] = (stat.S_IFREG | perm, f.read(), (0, 0))
            else:
                raise SystemExit(f"mkcpio: unsupported file type: {full}")
    for p, kind, maj, mino, mode in devs:
        entries[p] = ((stat.S_IFCHR if kind == "c" else stat.S_IFBLK) | mode, b"", (maj, mino))
    blob = bytearray()
    for ino, name in enumerate(sorted(entries), start=1):
        mode, data, rdev = entries[name]
        blob += newc_entry(name, mode, data, ino=ino, nlink=2 if stat.S_ISDIR(mode) else 1, rdev=rdev)
    blob += newc_entry("TRAILER!!!", 0)
    tmp = outpath + ".tmp"
    with open(tmp, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", compresslevel=9, fileobj=raw, mtime=0) as gz:
            gz.write(bytes(blob))
    os.replace(tmp, outpath)
    print(f"{len(entries)} entries, {len(blob)} bytes uncompressed")


# ---------------------------------------------------------------- tar member
def cmd_tarextract(args):
    import tarfile
    member, outpath = args[0].lstrip("./"), args[1]
    with tarfile.open(fileobj=sys.stdin.buffer, mode="r|") as tf:
        for ti in tf:
            if ti.name.lstrip("./") == member and ti.isfile():
                src = tf.extractfile(ti)
                tmp = outpath + ".tmp"
                with open(tmp, "wb") as f:
                    while True:
                        b = src.read(1 << 20)
                        if not b:
                            break
                        f.write(b)
                os.replace(tmp, outpath)
                return
    raise SystemExit(f"tarextract: {member} not found")


# ---------------------------------------------------------------- disk image
def cmd_mkdisk(args):
    outpath, size, seed = args[0], int(args[1], 0), args[2].encode()
    if size % 512:
        raise SystemExit("mkdisk: size must be a multiple of 512")
    md5 = hashlib.md5()
    tmp = outpath + ".tmp"
    with open(tmp, "wb") as f:
        for lba in range(size // 512):
            sector = bytearray(b"HVDISK%08x\n\0" % lba)
            i = 0
            while len(sector) < 512:
                sector += hashlib.sha256(seed + b"|%d|%d" % (lba, i)).digest()
                i += 1
            sector = bytes(sector[:512])
            md5.update(sector)
            f.write(sector)
    os.replace(tmp, outpath)
    print(md5.hexdigest())


def main():
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    cmd, args = sys.argv[1], sys.argv[2:]
    fn = {"modorder": cmd_modorder, "modinfo": cmd_modinfo, "applets": cmd_applets,
          "mkcpio": cmd_mkcpio,
          "elfdeps": cmd_elfdeps, "elfinstall": cmd_elfinstall, "tarextract": cmd_tarextract, "mkdisk": cmd_mkdisk}.get(cmd)
    if fn is None:
        raise SystemExit(__doc__)
    fn(args)


if __name__ == "__main__":
    main()
