"""The allocator policy of timed blocks (rtseg.memory): with "reuse" a large tensor freed and
allocated again costs no fresh pages; without it glibc hands back and faults in every one.
Page faults are counted by the kernel, not timed, so these assertions do not depend on load."""

import json
import os
import subprocess
import sys

import pytest

from rtseg.errors import RtsegError
from rtseg.inference import Backend
from rtseg.memory import ENVIRONMENT, AllocatorRecord, FaultCounter, allocator, faults_record, minor_page_faults
from rtseg.profiling.plain_program import program_environment
from rtseg.profiling.speed import memory_warnings, precision_warnings

glibc = pytest.mark.skipif(not sys.platform.startswith("linux") or minor_page_faults() is None,
                           reason="glibc's mallopt and the kernel's fault count are Linux features")

# 64 MiB: above glibc's largest mmap threshold (32 MiB), the size of a 512x1024 feature map.
_ELEMENTS = 16 * 1024 * 1024


# Run in a child process: glibc raises its mmap threshold after large frees, so in a process
# that has already freed large tensors (this test suite) "system" may fault nothing at all;
# only a fresh heap has glibc's defaults, the state a deployed program starts from.
_REUSE_AGAINST_SYSTEM = """
import json, torch
from rtseg.memory import AllocatorRecord, FaultCounter, allocator, faults_record

ELEMENTS = 16 * 1024 * 1024

def faults_of_fresh_tensors(rounds=4, warmup=12):
    for _ in range(warmup):  # glibc's free lists reach a steady state after about ten rounds
        torch.ones(ELEMENTS)
    counter = FaultCounter(lambda: float(torch.ones(ELEMENTS)[0]))
    for _ in range(rounds):
        counter()
    return faults_record(AllocatorRecord("any", False, ""), [counter])["page_faults_per_run"]

def in_heap(pointer):
    with open("/proc/self/maps") as maps:
        for line in maps:
            if line.rstrip().endswith("[heap]"):
                start, end = (int(v, 16) for v in line.split()[0].split("-"))
                return start <= pointer < end
    return False

with allocator("system") as record:
    system_applied = record.applied
    system = faults_of_fresh_tensors()
with allocator("reuse") as record:
    reuse_applied, reuse_policy = record.applied, record.policy
    reused = faults_of_fresh_tensors()
    kept_in_heap = in_heap(torch.empty(2 * ELEMENTS).data_ptr())
# glibc's settings are back: a large block that no kept chunk holds is a mapping of its own again
restored = not in_heap(torch.empty(8 * ELEMENTS).data_ptr())
print(json.dumps(dict(system_applied=system_applied, system=system, reuse_applied=reuse_applied,
                      reuse_policy=reuse_policy, reused=reused, kept_in_heap=kept_in_heap, restored=restored)))
"""


@glibc
def test_reuse_keeps_a_freed_large_tensor_in_the_process_and_system_does_not():
    env = {name: value for name, value in os.environ.items() if name not in ENVIRONMENT}
    result = json.loads(subprocess.run([sys.executable, "-c", _REUSE_AGAINST_SYSTEM], env=env,
                                       capture_output=True, text=True, check=True).stdout)
    pages = _ELEMENTS * 4 / 4096
    assert not result["system_applied"]
    assert result["reuse_applied"] and result["reuse_policy"] == "reuse"
    assert result["system"] > 0.5 * pages  # every round touched fresh pages
    assert result["reused"] < 0.01 * pages
    assert result["kept_in_heap"]
    assert result["restored"]


@glibc
def test_a_deployment_gets_the_same_from_the_environment_the_plain_program_is_given():
    program = ("import torch, resource\n"
               "for _ in range(12): torch.ones(16 * 1024 * 1024)\n"
               "before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
               "for _ in range(4): torch.ones(16 * 1024 * 1024)\n"
               "print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 4)\n")
    faults = {policy: float(subprocess.run([sys.executable, "-c", program], env=program_environment(policy),
                                           capture_output=True, text=True, check=True).stdout)
              for policy in ("reuse", "system")}
    assert faults["reuse"] < 200 < faults["system"]
    assert all(program_environment("reuse")[name] == value for name, value in ENVIRONMENT.items())
    assert not set(ENVIRONMENT) & set(program_environment("system"))


_KEPT_AFTER_A_REUSE_BLOCK = """
import json, torch
from rtseg.memory import allocator

def in_heap(pointer):
    with open("/proc/self/maps") as maps:
        for line in maps:
            if line.rstrip().endswith("[heap]"):
                start, end = (int(v, 16) for v in line.split()[0].split("-"))
                return start <= pointer < end
    return False

with allocator("reuse") as record:  # as a runner's build times its labels choice
    applied = record.applied
print(json.dumps(dict(applied=applied, kept=in_heap(torch.empty(32 * 1024 * 1024).data_ptr()))))
"""


@glibc
def test_a_reuse_block_leaves_a_deployment_that_keeps_freed_memory_keeping_it():
    """Building a runner times its labels choice in a reuse block; its end set glibc back to its
    defaults, undoing a deployed program's MALLOC_ settings (the plainest program then ran
    SkipNet-ShuffleNet 1.4-1.7x slower than the protocol, paying fresh pages every frame)."""
    result = json.loads(subprocess.run([sys.executable, "-c", _KEPT_AFTER_A_REUSE_BLOCK],
                                       env=program_environment("reuse"), capture_output=True, text=True,
                                       check=True).stdout)
    assert not result["applied"]  # the environment keeps freed memory already
    assert result["kept"]  # a 128 MiB block still comes from the heap, not a mapping of its own


def test_the_faults_record_is_per_call_over_all_counters_and_none_where_not_counted():
    counters = [FaultCounter(lambda: 0.0), FaultCounter(lambda: 0.0)]
    counters[0].faults, counters[0].calls, counters[1].faults, counters[1].calls = 30, 2, 10, 2
    record = faults_record(AllocatorRecord("reuse", True, "glibc mallopt"), counters)
    assert record == {"policy": "reuse", "applied": True, "how": "glibc mallopt", "page_faults_per_run": 10.0}
    counters[1].faults = None  # a system that does not count them
    assert faults_record(AllocatorRecord("reuse", True, ""), counters)["page_faults_per_run"] is None
    assert faults_record(AllocatorRecord("reuse", True, ""), [])["page_faults_per_run"] is None


def test_a_preloaded_allocator_is_left_alone(monkeypatch):
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2")
    with allocator("reuse") as record:
        assert not record.applied and "jemalloc" in record.how
    assert not set(ENVIRONMENT) & set(program_environment("reuse"))


def test_an_unknown_allocator_policy_is_one_line_naming_the_choices():
    with pytest.raises(RtsegError, match="allocator 'arena' is not one of reuse, system"):
        Backend(allocator="arena").check()
    with pytest.raises(RtsegError, match="allocator"):
        with allocator("arena"):
            pass


def test_a_figure_paid_for_in_fresh_pages_is_flagged_with_its_cause():
    system = {**AllocatorRecord("system", False, "as it is").as_dict(), "page_faults_per_run": 46000.0}
    (text,) = memory_warnings(system)
    assert "46000 page faults" in text and "180 MiB" in text and "--allocator reuse" in text
    reused = {**AllocatorRecord("reuse", True, "glibc mallopt").as_dict(), "page_faults_per_run": 9000.0}
    assert "although freed memory was to be kept" in memory_warnings(reused)[0]
    assert memory_warnings({**reused, "page_faults_per_run": 3.0}) == []
    assert memory_warnings({**reused, "page_faults_per_run": None}) == []


def test_bf16_on_a_cpu_without_bf16_instructions_is_flagged_as_emulated():
    zen2 = {"cpu": "AMD EPYC", "cpu_flags": ["avx2"], "torch_cpu_capability": "AVX2"}
    assert "no bfloat16 instructions" in precision_warnings("bf16", "cpu", zen2)[0]
    assert precision_warnings("fp32", "cpu", zen2) == []
    assert precision_warnings("bf16", "cuda", zen2) == []
    assert precision_warnings("bf16", "cpu", {**zen2, "cpu_flags": ["avx512f", "avx512_bf16"]}) == []
