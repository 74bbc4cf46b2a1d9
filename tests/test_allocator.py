"""The glibc allocator settings of `metarl.allocator`."""

import os
import platform
import subprocess
import sys

import pytest

PROBE = "from metarl.allocator import keep_freed_memory; print(keep_freed_memory())"


def _probe(**env: str) -> str:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith("MALLOC_") and k != "METARL_KEEP_FREED_MEMORY"}
    done = subprocess.run([sys.executable, "-c", PROBE], env={**clean, **env},
                          capture_output=True, text=True, check=True)
    return done.stdout.strip()


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_applied_on_glibc_by_default():
    assert _probe() == "True"


@pytest.mark.parametrize("env", [{"METARL_KEEP_FREED_MEMORY": "0"},
                                 {"MALLOC_ARENA_MAX": "2"}])
def test_left_alone_when_opted_out_or_user_tuned(env):
    assert _probe(**env) == "False"


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_large_tensors_still_allocate_and_free_after_it():
    code = (PROBE + "\nimport torch\n"
            "for _ in range(3):\n"
            "    x = torch.ones(40_000_000); assert float(x.sum()) == 4e7; del x\n"
            "print('ok')")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    done = subprocess.run([sys.executable, "-c", code], env=clean, capture_output=True,
                          text=True, check=True)
    assert done.stdout.split() == ["True", "ok"]
