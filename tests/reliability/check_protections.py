"""Remove each protection in turn and show that its reliability test then fails.

``python tests/reliability/check_protections.py [NAME ...]`` copies src/transduce
to a temporary folder, applies one mutation (a text replacement that disables
one protection), runs the tests that guard it against the mutated copy
(PYTHONPATH first; subprocesses inherit it) and expects them to FAIL. It prints
one line per protection and exits 1 when a test still passed without its
protection. The working tree is never changed. Not part of the pytest run
(several minutes: the kill test runs twice).
"""
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
R = "tests/reliability/"
MUTATIONS = [  # (name, file, text, replacement, tests that must fail)
    ("skip non-finite updates", "train.py",
     "if not self.scaler.is_enabled() and not (loss_finite and math.isfinite(norm)):", "if False:",
     [R + "test_nonfinite.py::test_nan_losses_are_skipped_then_training_stops"]),
    ("stop after max_nonfinite", "train.py", "if self.nonfinite >= opts.max_nonfinite:", "if False:",
     [R + "test_nonfinite.py::test_nan_losses_are_skipped_then_training_stops"]),
    ("trainer: never save NaN weights", "train.py", "        bad = checkpoint.non_finite(self.model.state_dict())",
     "        bad = []", [R + "test_nonfinite.py::test_non_finite_weights_are_never_saved"]),
    ("writers refuse NaN tensors", "checkpoint.py", "    bad = non_finite(tensors)\n",
     "    bad = [] if doing == 'write' else non_finite(tensors)\n",
     [R + "test_nonfinite.py::test_checkpoint_writers_refuse_non_finite_tensors"]),
    ("loaders refuse NaN tensors", "checkpoint.py", "    bad = non_finite(tensors)\n",
     "    bad = [] if doing == 'load' else non_finite(tensors)\n",
     [R + "test_corrupt_folders.py::test_a_corrupt_model_folder_is_refused_naming_the_file[weights NaN]",
      R + "test_corrupt_folders.py::test_a_corrupt_training_state_is_refused_naming_the_file[optimizer NaN]"]),
    ("SafetensorError is a disk-full OSError", "checkpoint.py", "    except SafetensorError as exc:",
     "    except ZeroDivisionError as exc:", [R + "test_disk_full.py::test_an_injected_full_disk"]),
    ("run-log writes on a full disk", "runlog.py", "        except OSError as exc:\n            raise CheckpointError",
     "        except ZeroDivisionError as exc:\n            raise CheckpointError",
     [R + "test_disk_full.py::test_a_log_record_on_a_full_disk"]),
    ("atomic text writes on a full disk", "checkpoint.py", "    except OSError as exc:\n        tmp.unlink",
     "    except ZeroDivisionError as exc:\n        tmp.unlink", [R + "test_disk_full.py::test_a_real_full_disk"]),
    ("stale temp folders removed", "train.py", "            for path in self.folder.remove_stale():",
     "            for path in []:", [R + "test_kill_resume.py"]),
    ("atomic checkpoint folders", "checkpoint.py",
     "        tmp.mkdir()\n        yield tmp\n        if final.exists():\n            _move_into(tmp, final)\n"
     "        else:\n            os.rename(tmp, final)\n",
     "        final.mkdir(exist_ok=True)\n        yield final\n", [R + "test_kill_resume.py"]),
    ("meta.json schema", "checkpoint.py", "    check_schema(meta, META_SCHEMA, path)\n", "",
     [R + "test_corrupt_folders.py::test_a_corrupt_model_folder_is_refused_naming_the_file[meta.json string step]"]),
    ("vocabulary sizes", "checkpoint.py", "    _check_vocab_rows(dir, state, sizes)\n", "",
     [R + "test_corrupt_folders.py::test_a_corrupt_model_folder_is_refused_naming_the_file"
      "[tgt vocab shorter than weights]"]),
    ("trainer state schema", "train.py",
     '    checkpoint.check_schema(training.state, TRAINER_SCHEMA, folder / checkpoint.STATE, "trainer")\n', "",
     [R + "test_corrupt_folders.py::test_a_corrupt_training_state_is_refused_naming_the_file"
      "[state.json string step]"]),
    ("rng tensors checked", "train.py",
     "    checkpoint.check_tensors(training.tensors, RNG_TENSORS, folder / checkpoint.RNG)\n", "",
     [R + "test_corrupt_folders.py::test_a_corrupt_training_state_is_refused_naming_the_file"
      "[rng missing a tensor]"]),
    ("no pickle: safetensors only", "checkpoint.py",
     '        raise CheckpointError(f"{path}: corrupt or truncated safetensors file ({exc})") from None',
     "        return torch.load(str(path), weights_only=False)",
     [R + "test_corrupt_folders.py::test_a_corrupt_model_folder_is_refused_naming_the_file"
      "[weights pickle payload]"]),
    ("declared config ranges", "config.py", "        if problem:\n            raise _mismatch",
     "        if False:\n            raise _mismatch",
     [R + "test_bad_values.py::test_a_bad_config_value_is_refused_up_front"]),
    ("Translator argument types", "translator.py", "    if isinstance(texts, (str, bytes)):",
     "    if False:", [R + "test_fuzz_translate.py::test_bad_argument_types_are_a_type_error"]),
]


def _mutated(tmp: Path, file: str, text: str, replacement: str) -> Path:
    """A copy of src/transduce under ``tmp`` with ``text`` (found exactly once) replaced."""
    shutil.copytree(ROOT / "src" / "transduce", tmp / "transduce")
    path = tmp / "transduce" / file
    source = path.read_text()
    assert source.count(text) == 1, f"{file}: the protected text is not found exactly once: {text!r}"
    path.write_text(source.replace(text, replacement))
    return tmp


def check(name: str, file: str, text: str, replacement: str, tests: list[str]) -> bool:
    """True when ``tests`` fail without the protection (as they must)."""
    with tempfile.TemporaryDirectory() as tmp:
        src = _mutated(Path(tmp), file, text, replacement)
        env = dict(os.environ, PYTHONPATH=f"{src}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests],
                              cwd=ROOT, env=env, capture_output=True, text=True)
    failed = proc.returncode != 0
    why = next((line[2:].strip() for line in proc.stdout.splitlines() if line.startswith("E ")), "")
    print(f"{'ok    ' if failed else 'HELD? '} {name}: tests {'fail' if failed else 'still pass'} without it"
          f"{f' ({why[:150]})' if why else ''}", flush=True)
    return failed


def main(names: list[str]) -> int:
    """Check every mutation (or those named); 1 when a test passed without its protection."""
    chosen = [m for m in MUTATIONS if not names or m[0] in names]
    return 0 if all([check(*m) for m in chosen]) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
