"""The signs of a render that met its memory limit, read from the real helm, and a Go crash's dump kept out of a
status message."""

from __future__ import annotations

import os
import pathlib

import pytest

from agent.sources import tools
from agent.sources.render import helm

BOMB = '{{- $s := "0123456789abcdef" }}{{- range until 40 }}{{ $s = printf "%s%s" $s $s }}{{- end }}\n'


@pytest.mark.parametrize("procs", [2, 3, 6, 12, 24, 36])
def test_helm_meeting_its_memory_limit_is_told_apart_whichever_allocation_meets_it(
    tmp_path: pathlib.Path, procs: int
) -> None:
    # Which allocation meets the limit first (the heap, its arena metadata, a new thread's stack) depends on the
    # number of threads the Go runtime runs: CI saw "pthread_create failed" where this machine saw "out of memory".
    (tmp_path / "templates").mkdir()
    (tmp_path / "Chart.yaml").write_text("apiVersion: v2\nname: bomb\nversion: 0.1.0\n")
    (tmp_path / "templates" / "cm.yaml").write_text(BOMB)
    env = {**os.environ, "GOMAXPROCS": str(procs)}
    binary = helm.binary()
    assert binary is not None
    limits = tools.Limits(60, 256 << 20)
    done = tools.run([binary, "template", str(tmp_path)], limits, env=env)
    assert done.returncode != 0
    assert tools.out_of_memory(done, limits), (done.stderr[:300], getattr(done, "peak", None))
    assert len(tools.error_text(done.stderr).splitlines()) <= 2


def test_a_go_crash_dump_is_cut_to_what_it_says() -> None:
    dump = (
        "runtime/cgo: pthread_create failed: Resource temporarily unavailable\nSIGABRT: abort\n"
        "PC=0x7effc83a4eec m=3 sigcode=18446744073709551610\n\ngoroutine 0 gp=0x32f8273530e0 m=3 [idle]:\n"
        + "runtime.gopark(0x0?)\n"
        * 500
    )
    assert tools.error_text(dump) == (
        "runtime/cgo: pthread_create failed: Resource temporarily unavailable"
        " (the tool crashed; its stack dump is left out)"
    )
    panic = "panic: assignment to entry in nil map\n\ngoroutine 1 [running]:\nmain.main()\n"
    assert tools.error_text(panic) == (
        "panic: assignment to entry in nil map (the tool crashed; its stack dump is left out)"
    )
    plain = 'Error: template: bomb/templates/cm.yaml:1: function "nope" not defined'
    assert tools.error_text(plain + "\n") == plain
    long = "x" * (tools.MESSAGE_MAX + 10)
    assert tools.error_text(long).endswith("... (10 more characters)")


def test_out_of_memory_is_not_read_into_other_failures() -> None:
    limits = tools.Limits(60, 256 << 20)
    helm = tools.Done(["helm"], 1, "", 'Error: template: cm.yaml:1: function "nope" not defined', 50 << 20)
    assert not tools.out_of_memory(helm, limits)
    kustomize = tools.Done(["kustomize"], 1, b"", b"Error: accumulating resources: open /x: no such file", 20 << 20)
    assert not tools.out_of_memory(kustomize, limits)
    small_crash = tools.Done(["helm"], 2, "", "SIGSEGV: segmentation violation\nPC=0x130f65d m=6\n", 20 << 20)
    assert not tools.out_of_memory(small_crash, limits)  # a crash far from the limit is a crash, not memory
    panic = tools.Done(["helm"], 2, "", "panic: nil map\n\ngoroutine 1 [running]:\n", 200 << 20)
    assert not tools.out_of_memory(panic, limits)  # the program's own panic, however big
    big_crash = tools.Done(["helm"], 2, "", "SIGSEGV: segmentation violation\nPC=0x130f65d m=6\n", 200 << 20)
    assert tools.out_of_memory(big_crash, limits)


def test_a_run_reports_its_output_exit_code_and_peak_memory() -> None:
    done = tools.run(["sh", "-c", "cat; echo err >&2; exit 3"], tools.Limits(10, 0), stdin="in\n")
    assert (done.stdout, done.stderr, done.returncode) == ("in\n", "err\n", 3)
    assert isinstance(done, tools.Done)
    assert done.peak > 0
    with pytest.raises(tools.RenderTimeoutError):
        tools.run(["sleep", "30"], tools.Limits(0.5, 0))
