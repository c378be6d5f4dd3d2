"""Checks that the baseline code of attnkit's extension uses no AVX.

attnkit's extension must import and run on any x86-64 CPU: only the kernels
that CMake compiles per ISA (csrc/cpu/isa, once per attnkit_add_cpu_isa) may
use AVX/AVX2/FMA/AVX-512, and they run only after CPUID said the CPU has them.
A VEX/EVEX instruction anywhere else (an inline function whose AVX copy the
linker kept, a static initializer in an ISA file, a -march flag that leaked) is
an illegal instruction on an older CPU.

The check disassembles the extension (objdump), splits it into functions by its
symbol table, and fails if a function that does not belong to an ISA uses an
AVX instruction: a 'v'-prefixed SIMD mnemonic, or a ymm, zmm or opmask (k)
register. A function belongs to an ISA when its demangled name names
attnkit::cpu::isa::<name>:: for any <name> but generic (the baseline copy) - as
its namespace (this covers the compiler's clones, e.g. ".constprop.0",
".cold") or as a template argument
(probe_kernels::memory_read<attnkit::cpu::isa::avx512::Vec, 4> is instantiated
only in the avx512 objects). It also fails when an ISA's functions use no AVX
at all: then it is not seeing what it should (a renamed namespace, a parse
failure).

    python .ci/check_baseline_isa.py [path/to/_C*.so]

Without a path it checks the attnkit._C that Python imports.
"""

from __future__ import annotations

import platform
import re
import shutil
import subprocess
import sys
from collections import defaultdict

# An ISA's namespace in a name, but not as a pointer template argument
# (&attnkit::cpu::isa::avx2::f names a function, it is not one).
ISA_NAMESPACE = re.compile(r"(?<![&\w])attnkit::cpu::isa::(\w+)::")
BASELINE_ISA = "generic"
FUNCTION_HEADER = re.compile(r"^([0-9a-f]+) <(.*)>:$")
INSTRUCTION = re.compile(r"^\s*[0-9a-f]+:\t(.*)$")
AVX_REGISTER = re.compile(r"%(?:[yz]mm\d+|k[0-7])\b")
# 'v' mnemonics that are not SIMD: virtualization (VMX, SVM) and segment checks.
NOT_SIMD_V = {
    "verr",
    "verw",
    "vmcall",
    "vmlaunch",
    "vmresume",
    "vmxoff",
    "vmxon",
    "vmread",
    "vmwrite",
    "vmptrld",
    "vmptrst",
    "vmclear",
    "vmfunc",
    "vmrun",
    "vmload",
    "vmsave",
    "vmmcall",
    "vmgexit",
}
MAX_SHOWN = 25
PREFIXES = {
    "lock",
    "rep",
    "repz",
    "repe",
    "repnz",
    "repne",
    "notrack",
    "bnd",
    "data16",
    "addr32",
    "cs",
    "ds",
    "es",
    "fs",
    "gs",
    "ss",
    "xacquire",
    "xrelease",
}


def is_avx(instruction: str) -> bool:
    tokens = instruction.split()
    while tokens and tokens[0] in PREFIXES:
        tokens = tokens[1:]
    if not tokens:
        return False
    mnemonic = tokens[0]
    if mnemonic.startswith("v") and mnemonic not in NOT_SIMD_V:
        return True
    return bool(AVX_REGISTER.search(instruction))


def owning_isa(name: str):
    """The ISA whose kernels the function `name` belongs to; None for baseline code."""
    for match in ISA_NAMESPACE.finditer(name):
        if match.group(1) != BASELINE_ISA:
            return match.group(1)
    return None


def extension_path() -> str:
    import importlib.util

    spec = importlib.util.find_spec("attnkit._C")
    if spec is None or not spec.origin:
        sys.exit("check_baseline_isa: cannot find attnkit._C; is attnkit installed?")
    return spec.origin


def has_symbol_table(path: str) -> bool:
    """objdump -t lists .symtab only (a stripped file keeps just .dynsym, the
    exported names, which leave hidden and local functions unnamed)."""
    symbols = subprocess.run(["objdump", "-t", path], check=True, capture_output=True, text=True).stdout
    return any(re.match(r"^[0-9a-f]{8,} ", line) for line in symbols.splitlines())


def avx_use_by_function(path: str) -> dict:
    """function name -> the AVX instructions it contains (possibly none)."""
    listing = subprocess.run(
        ["objdump", "-d", "-C", "-w", "--no-show-raw-insn", path], check=True, capture_output=True, text=True
    ).stdout
    uses = defaultdict(list)
    function = None
    for line in listing.splitlines():
        header = FUNCTION_HEADER.match(line)
        if header:
            function = header.group(2)
            uses[function]  # record it, even with no AVX
            continue
        instruction = INSTRUCTION.match(line)
        if instruction and function is not None and is_avx(instruction.group(1)):
            # objdump's "# address <symbol>" comments only add noise
            uses[function].append(instruction.group(1).split("#")[0].strip())
    return uses


def main(argv: list) -> int:
    if platform.machine().lower() not in ("x86_64", "amd64"):
        print(f"check_baseline_isa: {platform.machine()} has no AVX; nothing to check")
        return 0
    path = argv[1] if len(argv) > 1 else extension_path()
    if shutil.which("objdump") is None:
        print("check_baseline_isa: FAIL: objdump (GNU binutils) is not installed")
        return 1
    if not has_symbol_table(path):
        print(
            f"check_baseline_isa: FAIL: {path} has no symbol table, so its code cannot be "
            "split into named functions. Build the extension unstripped: no strip after "
            "linking (pybind11_add_module(... NO_EXTRAS ...) in CMakeLists.txt) and none at "
            "install ([tool.scikit-build] install.strip = false in pyproject.toml)."
        )
        return 1

    uses = avx_use_by_function(path)
    counts = defaultdict(lambda: [0, 0])  # ISA -> [its functions, those that use AVX]
    violations = {}
    for name, found in uses.items():
        isa = owning_isa(name)
        if isa is None:
            if found:
                violations[name] = found
        else:
            counts[isa][0] += 1
            counts[isa][1] += bool(found)
    isas = sorted(counts)
    print(f"check_baseline_isa: {path}")
    summary = ", ".join(f"{isa} {total} ({with_avx} use AVX)" for isa, (total, with_avx) in sorted(counts.items()))
    print(f"  {len(uses)} functions; of the ISA kernels: {summary or 'none'}")

    if violations:
        print(f"  FAIL: {len(violations)} baseline functions use AVX instructions:")
        shown = sorted(violations.items())[:MAX_SHOWN]
        for name, found in shown:
            print(f"    {name}: {len(found)} AVX instructions, e.g. {'; '.join(found[:3])}")
        if len(violations) > len(shown):
            print(f"    ... and {len(violations) - len(shown)} more")
        return 1
    # Every x86 ISA beyond the baseline is compiled with AVX flags; finding
    # none, or an ISA without any, means this check is not seeing the kernels
    # (a renamed namespace, a parse failure).
    if not isas:
        print("  FAIL: no function of an ISA's kernels found; the check cannot be trusted on this file")
        return 1
    silent = [isa for isa in isas if counts[isa][1] == 0]
    if silent:
        print(f"  FAIL: no AVX instruction in any function of {', '.join(silent)}; the check cannot be trusted")
        return 1
    print(f"  OK: no AVX instruction outside the kernels of {', '.join(isas)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
