""":data:`FAULTS`, the faults injected by the tests, as the README's Reliability table shows them.

Every test function in tests/faults/ appears in :data:`FAULTS` (a unit test checks both ways),
so the README's table of faults is the list of what is actually tested. The helpers these tests
start, kill and compare runs with are in tests/_run_helpers.py.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Fault:
    test: str  # "<file under tests/>::<test function>"
    fault: str  # what is done to hsd
    guarantee: str  # what the test asserts


FAULTS: tuple[Fault, ...] = (
    Fault("faults/test_kill_validate.py::test_five_sigkills_then_resume_equal_uninterrupted_run",
          "validation SIGKILLed 5 times at seeded points (right after a batch was written, and at a random "
          "offset inside the next batch), resumed after each",
          "records equal an uninterrupted greedy run (label, raw response, parse status, prompt hash); "
          "no sample lost or recorded twice after any kill"),
    Fault("faults/test_kill_validate.py::test_torn_last_line_is_dropped_and_redone",
          "half a JSON line appended to a shard (a write cut off by a kill)",
          "the torn line is cut, that sample redone once; the shard stays valid JSONL"),
    Fault("integration/test_resume.py::test_sigkill_then_resume_equals_uninterrupted",
          "validation SIGKILLed mid-run plus a torn line, one resume",
          "every sample once, records equal an uninterrupted run, both attempts in the log"),
    Fault("integration/test_sharded_validate.py::test_resume_shard_and_injected_oom_give_the_single_process_records",
          "out of memory injected on rank 1 of 2 (`HSD_INJECT_FAULT=oom:1:2`) in a lock-step backend "
          "(`deepspeed`, `tp`), in a run resumed from a single process's partial shard",
          "every rank halves its batch and retries; the run completes with records equal to a single-process "
          "`hf` run, each sample once, the resumed ones not redone"),
    Fault("integration/test_lockstep.py::test_an_error_on_one_rank_ends_every_rank",
          "an error (or out of memory at batch size 1) on one rank of a lock-step backend",
          "every rank stops with an error after the same number of collective calls: no rank is left waiting"),
    Fault("integration/test_sharded_validate.py::test_a_killed_rank_ends_the_job",
          "one of 2 ranks of a `tp` validation SIGKILLed at its second batch, ranks started without torchrun "
          "(as submitit's local executor does)",
          "the surviving rank exits with an error instead of waiting; nothing is merged"),
    Fault("faults/test_kill_train.py::test_sigkill_while_saving_checkpoint_resumes_from_last_complete",
          "training SIGKILLed while a checkpoint is being written (its temp dir exists), and the newest "
          "finished checkpoint left without its COMPLETE marker",
          "the partial checkpoints are removed, training resumes from the last complete one, and the "
          "losses of the redone steps equal those before the kill; adapter saved as safetensors"),
    Fault("faults/test_write_failure.py::test_disk_full_mid_run_one_error_earlier_results_intact",
          "the disk fills during a validation (file size limit: writes fail with EFBIG)",
          "one `error:` line (exit 2, no traceback); an earlier run's files byte-identical; the "
          "interrupted run resumes to completion once space is back"),
    Fault("faults/test_write_failure.py::test_disk_full_on_a_real_small_disk",
          "the results disk (a 64 KiB tmpfs) fills up during a validation (ENOSPC; skipped where mounting "
          "is not allowed)",
          "one `error:` line, exit 2; an earlier run on that disk byte-identical; resumes once the disk grows"),
    Fault("faults/test_write_failure.py::test_results_dir_is_a_file_one_error",
          "`results_dir` is a regular file (a write that fails even for root)",
          "one `error:` line naming the path, exit 2, nothing created"),
    Fault("faults/test_run_dirs.py::test_second_process_on_same_run_dir_refuses",
          "two processes start on the same run directory at once",
          "the second exits 2 with `in use by pid …` and writes nothing; the first finishes intact"),
    Fault("faults/test_run_dirs.py::test_default_run_dirs_never_shared",
          "runs started within the same second (default, timestamped names)",
          "each gets its own directory (`…_<ts>-2`); existing directories untouched"),
    Fault("faults/test_run_dirs.py::test_racing_processes_get_distinct_dirs",
          "8 processes claim the same run name at the same moment",
          "8 distinct directories"),
    Fault("faults/test_kill_validate.py::test_interrupted_run_says_so_and_resumes",
          "Ctrl-C (SIGINT) or SIGTERM (`kill`, `timeout`) sent to `hsd validate` mid-run",
          "exit 130 / 143 with one `interrupted` line and no traceback; the manifest says INTERRUPTED (not "
          "RUNNING), the lock is free, every record kept; the same command completes to the uninterrupted records"),
    Fault("integration/test_old_runs.py::test_an_old_interrupted_run_resumes_to_the_old_complete_runs_records",
          "a validation SIGKILLed by hsd as it was before the run lifecycle was rebuilt (real files, "
          "status `running`), resumed by today's hsd",
          "completes (attempt 2, the old records byte-for-byte first, the first attempt's file-name timestamp) "
          "with the records of the old hsd's uninterrupted run"),
    Fault("integration/test_old_runs.py::test_an_old_complete_run_is_left_as_it_is_and_the_experiment_collates",
          "a finished run of the old hsd (status `complete`) validated again, then its experiment collated",
          "nothing to do: every file byte-identical; the reports and the comparison are written"),
    Fault("faults/test_bytes.py::test_shard_torn_inside_a_multibyte_character_resumes_equal_to_uninterrupted",
          "a shard's last line cut after 2 of an emoji's 4 bytes (texts hold é — 😀 مرحبا; shards are "
          "written with ensure_ascii=False)",
          "the torn line is cut at the last newline and its sample redone once; merged records equal an "
          "uninterrupted run"),
    Fault("faults/test_bytes.py::test_non_utf8_config_is_one_error_naming_file_and_position",
          "a config YAML holding a Latin-1 byte",
          "one `error:` line naming the file, line, column and byte offset; exit 2; every file byte-identical"),
    Fault("faults/test_bytes.py::test_non_utf8_data_file_is_one_error_naming_file_and_line",
          "a dataset file holding a Latin-1 byte",
          "one `error:` line naming file, line, column and offset, with a fix that writes a new file first; "
          "exit 2; nothing created"),
    Fault("faults/test_bytes.py::test_non_utf8_byte_mid_shard_is_one_error_naming_shard_and_line",
          "a Latin-1 byte on line 2 of 3 of a shard",
          "one `error:` line naming the shard and line 2 (keep a copy, delete that line: its sample is redone); "
          "exit 2; every file byte-identical"),
    Fault("faults/test_bytes.py::test_non_utf8_legacy_file_under_report_is_one_error_old_run_untouched",
          "`hsd report` on an old pipeline run whose jsonl has a bad byte on line 3",
          "one `error:` line (file, line, column); exit 2; the old run byte-identical, no `.lock` left there"),
    Fault("faults/test_bytes.py::test_non_utf8_legacy_file_under_import_legacy_is_one_error_old_run_untouched",
          "`hsd import-legacy` of the same run",
          "one `error:` line (file, line, column; the fix made in a copy); exit 2; the old run byte-identical; "
          "no output directory"),
    Fault("faults/test_bytes.py::test_legacy_run_killed_mid_write_imports_with_no_phantom_strategy",
          "an old run whose last jsonl line is cut inside a 4-byte character, before its strategy",
          "imported as `unknown` under the run's only strategy (no phantom `legacy` strategy with F1 nan); "
          "`hsd report` of the import succeeds; the old run byte-identical"),
    Fault("integration/test_jobs_faults.py::test_ctrl_c_mid_baseline_stops_its_job_and_the_experiment_moved_elsewhere_resumes_to_the_uninterrupted_records",
          "Ctrl-C (SIGINT to `hsd submit`, local executor) mid-baseline; then the experiment moved with `mv` "
          "(its jobs.json rewritten with absolute paths, as older hsd wrote it)",
          "exit 130 with one `interrupted: …; resume with: hsd submit resume EXP` line; the job's process group "
          "is gone; baseline and collate CANCELLED; at the new place `hsd status` shows them and `hsd submit "
          "resume` completes, writing nothing at the old place, with the records of an uninterrupted run"),
    Fault("integration/test_jobs_faults.py::test_sigterm_mid_training_stops_every_process_and_resume_equals_an_uninterrupted_pipeline",
          "SIGTERM to `hsd submit pipeline` (local executor) after the training's first checkpoint",
          "exit 143, one line; no process of the training job's group survives; train, finetuned and collate "
          "CANCELLED; resume continues training from its checkpoint and the fine-tuned validation's records "
          "equal an uninterrupted train + validate"),
    Fault("integration/test_jobs_faults.py::test_hsd_cancel_stops_a_running_local_experiment_and_a_second_cancel_changes_nothing",
          "`hsd cancel EXP` while a local baseline runs",
          "its `hsd submit` stops the job and exits 143; baseline and collate CANCELLED; a second cancel says "
          "nothing to cancel and changes no byte"),
    Fault("unit/test_status.py::test_cancel_stops_the_groups_of_a_killed_submission_and_a_finished_one_is_left_alone",
          "`hsd cancel` after `hsd submit` was SIGKILLed, its jobs still running (one ignoring SIGTERM)",
          "each process group stopped (SIGKILL after the grace for the stubborn one); every unfinished stage "
          "CANCELLED; a second cancel changes no byte"),
    Fault("integration/test_jobs_faults.py::test_a_damaged_jobs_json_is_one_error_line_and_nothing_changes",
          "jobs.json cut in half, `[]`, or holding a non-UTF-8 byte, then `hsd status` / `submit resume` / "
          "`cancel`",
          "each: exit 2, one `error:` line naming the file and the fix; every file of the experiment "
          "byte-identical"),
    Fault("integration/test_jobs_faults.py::test_a_lora_target_the_model_lacks_is_refused_before_any_job_starts",
          "a sweep entry (or the pipeline) with `target_modules: [qq_proj]`, or `[q_proj, qq_proj]` (peft "
          "would train q_proj alone)",
          "exit 2, one `error: sweep.lora[1]: train.lora.target_modules: ['qq_proj'] name no module …` line "
          "before any submission: no experiment or run directory"),
)
