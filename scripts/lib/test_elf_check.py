"""Tests of elf_check.py on a real binary built here and on copies altered as a newer
distribution's or an arm64 host's build would be. Run: python3 -m unittest scripts/lib/test_elf_check.py"""

import os
import shutil
import struct
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import elf_check  # noqa: E402


class ElfCheck(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp()
        src = os.path.join(cls.dir, "main.c")
        with open(src, "w") as f:
            f.write("int main(void) { return 0; }\n")
        cls.binary = os.path.join(cls.dir, "bootstrap")
        subprocess.run(["cc", "-O0", "-o", cls.binary, src], check=True)
        with open(cls.binary, "rb") as f:
            cls.data = f.read()

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir)

    def variant(self, name, data):
        path = os.path.join(self.dir, name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def test_a_binary_built_here_reads_its_machine_and_glibc(self):
        machine, versions = elf_check.inspect(self.data)
        self.assertEqual(machine, "x86_64" if os.uname().machine == "x86_64" else "arm64")
        self.assertTrue(versions and versions[-1] >= (2, 2), versions)

    def test_a_newer_glibc_than_lambdas_is_refused(self):
        machine, versions = elf_check.inspect(self.data)
        newest = "GLIBC_" + ".".join(map(str, versions[-1]))
        newer = "GLIBC_2.99"[: len(newest)].ljust(len(newest), "9")
        path = self.variant("newer", self.data.replace(newest.encode(), newer.encode()))
        found, _ = elf_check.problems(path, machine)
        self.assertEqual(len(found), 1, found)
        self.assertIn("newer than Lambda's provided.al2023 (2.34)", found[0])

    def test_another_machine_is_refused(self):
        machine, _ = elf_check.inspect(self.data)
        other = 183 if machine == "x86_64" else 62
        data = bytearray(self.data)
        struct.pack_into("<H", data, 18, other)
        found, _ = elf_check.problems(self.variant("other", bytes(data)), machine)
        self.assertTrue(any("built for" in line for line in found), found)

    def test_not_an_elf_file(self):
        found, _ = elf_check.problems(self.variant("text", b"#!/bin/sh\n"), "x86_64")
        self.assertEqual(found, [f"{os.path.join(self.dir, 'text')}: not an ELF file"])

    def test_the_command_exits_1_naming_the_problem(self):
        machine, _ = elf_check.inspect(self.data)
        other = "arm64" if machine == "x86_64" else "x86_64"
        self.assertEqual(elf_check.main([machine, self.binary]), 0)
        self.assertEqual(elf_check.main([other, self.binary]), 1)

    def test_a_lower_ceiling_refuses_what_lambdas_accepts(self):
        # A release's binaries must run on glibc 2.17; this one, linked here, needs more than 2.0.
        machine, versions = elf_check.inspect(self.data)
        self.assertEqual(elf_check.main(["--glibc", "99.0", machine, self.binary]), 0)
        self.assertEqual(elf_check.main(["--glibc", "2.0", machine, self.binary]), 1)
        found, _ = elf_check.problems(self.binary, machine, (2, 0))
        self.assertIn("newer than 2.0", found[0])


if __name__ == "__main__":
    unittest.main()
