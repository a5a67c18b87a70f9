"""The CLI end to end in subprocesses: exit codes, one-line errors, no partial output."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tests.conftest import tiny_base

from r3mem.api import R3Mem

# slow: every test spawns `r3mem` processes, each importing torch (seconds apiece)
pytestmark = pytest.mark.slow


def run(*args: str, env_home: Path) -> subprocess.CompletedProcess:
    env = {"R3MEM_HOME": str(env_home), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "r3mem.cli", *args], capture_output=True, text=True,
                          env=env, timeout=300)


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("r3mem: error: "), proc.stderr
    return lines[0]


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "in.txt"
    path.write_text("Mr. Bennet replied that he had not. " * 5)
    return path


def test_compress_info_expand(tmp_path, tiny_model_dir, text_file):
    out = tmp_path / "out.r3m"
    proc = run("-q", "compress", str(text_file), "-o", str(out), "--ratio", "4", "--model", str(tiny_model_dir),
               env_home=tmp_path)
    assert proc.returncode == 0, proc.stderr
    info = run("info", str(out), "--json", env_home=tmp_path)
    assert info.returncode == 0
    fields = json.loads(info.stdout)
    assert fields["ratio"] == 128 / 32 and fields["segments"] == 1 and fields["verifiable"] is True
    proc = run("-q", "expand", str(out), "--model", str(tiny_model_dir), env_home=tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip()
    proc = run("expand", str(out), "--model", str(tiny_model_dir), "--beams", "1", env_home=tmp_path)
    assert proc.returncode == 0 and "verified: 0 of 1 segment(s)" in proc.stderr  # an untrained model
    target = tmp_path / "back.txt"
    proc = run("-q", "expand", str(out), "--model", str(tiny_model_dir), "--require-verified", "-o", str(target),
               env_home=tmp_path)
    assert proc.returncode == 9 and "segment(s) 0 differ" in one_line_error(proc) and not target.exists()


def test_non_utf8_input(tmp_path, tiny_model_dir):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"caf\xe9 au lait")
    out = tmp_path / "out.r3m"
    proc = run("compress", str(bad), "-o", str(out), "--model", str(tiny_model_dir), env_home=tmp_path)
    assert proc.returncode == 2 and "not UTF-8" in one_line_error(proc)
    assert not out.exists()


@pytest.mark.parametrize("content", ["", "  \n\n "])
def test_empty_input(tmp_path, content, tiny_model_dir):
    path = tmp_path / "empty.txt"
    path.write_text(content)
    proc = run("compress", str(path), "-o", str(tmp_path / "o.r3m"), "--model", str(tiny_model_dir),
               env_home=tmp_path)
    assert proc.returncode == 2 and "empty" in one_line_error(proc)
    assert not (tmp_path / "o.r3m").exists()


def test_missing_and_corrupt_memory_files(tmp_path):
    proc = run("info", str(tmp_path / "absent.r3m"), env_home=tmp_path)
    assert proc.returncode == 4 and "no such memory file" in one_line_error(proc)
    junk = tmp_path / "junk.r3m"
    junk.write_bytes(b"\x00" * 64)
    proc = run("info", str(junk), env_home=tmp_path)
    assert proc.returncode == 4
    one_line_error(proc)


def test_missing_model_and_checkpoint(tmp_path, text_file, tiny_model_dir):
    proc = run("compress", str(text_file), "-o", str(tmp_path / "o.r3m"), "--model", "no/such-model",
               env_home=tmp_path)
    assert proc.returncode == 3 and "offline" in one_line_error(proc)
    proc = run("compress", str(text_file), "-o", str(tmp_path / "o.r3m"), "--model", str(tiny_model_dir),
               "--checkpoint", str(tmp_path / "nope"), env_home=tmp_path)
    assert proc.returncode == 4 and "not a checkpoint" in one_line_error(proc)
    assert not (tmp_path / "o.r3m").exists()


def test_checkpoint_for_another_model(tmp_path, text_file, tiny_model_dir):
    R3Mem.from_base(tiny_base(seed=7), device="cpu").save_checkpoint(tmp_path / "other-ckpt")
    proc = run("compress", str(text_file), "-o", str(tmp_path / "o.r3m"), "--model", str(tiny_model_dir),
               "--checkpoint", str(tmp_path / "other-ckpt"), env_home=tmp_path)
    assert proc.returncode == 5 and "made for base model" in one_line_error(proc)
    assert not (tmp_path / "o.r3m").exists()


def test_bad_usage_exits_2(tmp_path):
    assert run("compress", env_home=tmp_path).returncode == 2
    assert run("frobnicate", env_home=tmp_path).returncode == 2


@pytest.mark.parametrize("beams", ["0", "17"])
def test_expand_refuses_a_bad_beam_count_before_reading_anything(tmp_path, beams):
    proc = run("expand", str(tmp_path / "absent.r3m"), "--beams", beams, env_home=tmp_path)
    assert proc.returncode == 2
    assert "beams must be an integer" in one_line_error(proc)


@pytest.mark.parametrize("guidance", ["-0.5", "100", "inf"])
def test_expand_refuses_a_bad_guidance_before_reading_anything(tmp_path, guidance):
    proc = run("expand", str(tmp_path / "absent.r3m"), "--guidance", guidance, env_home=tmp_path)
    assert proc.returncode == 2
    assert "guidance must be a number from 0 to 64" in one_line_error(proc)


@pytest.mark.parametrize("samples", ["-1", "33"])
def test_expand_refuses_a_bad_sample_count_before_reading_anything(tmp_path, samples):
    proc = run("expand", str(tmp_path / "absent.r3m"), "--samples", samples, env_home=tmp_path)
    assert proc.returncode == 2
    assert "samples must be an integer" in one_line_error(proc)
