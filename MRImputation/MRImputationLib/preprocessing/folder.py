"""Preprocessing a folder of subjects, several at a time, with one manifest for the lot.

Each subject runs in its own process (`jobs` at a time) with the cores shared between them;
the workers end with this process, even when it is killed (core/parent_watch.py). A
subject that fails is recorded with its error; the others' results are kept.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Sequence

from .. import __version__
from ..core.atomic import write_text
from ..core.errors import InputError
from ..core.outputs import check_apart, check_output_folder, check_owned_folder, mark_owned_folder
from ..core.parent_watch import exit_with_parent
from ..core.progress import Progress
from ..data.discovery import SubjectFiles, discover_subjects
from .manifest import MANIFEST_FORMAT, MANIFEST_NAME
from .subject import PreprocessConfig, preprocess_subject


def set_thread_count(threads: int) -> None:
    """Limit ITK/ANTs (and torch, if loaded) to `threads` threads in this process."""
    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(threads)
    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)


def _run_one(subject: SubjectFiles, out: str, config: PreprocessConfig, threads: int) -> dict:
    set_thread_count(threads)
    try:
        return preprocess_subject(subject, out, config)
    except InputError as error:
        return {"subject": subject.subject, "status": "failed", "error": str(error), "bad_input": True}
    except Exception as error:  # noqa: BLE001 - one subject's crash must not lose the others
        detail = traceback.format_exception_only(type(error), error)[-1].strip()
        return {"subject": subject.subject, "status": "failed", "error": detail, "bad_input": False}


def _worker_pool(jobs: int) -> ProcessPoolExecutor:
    """`jobs` spawned worker processes, each ending when this process does, even if it is killed with kill -9."""
    return ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                               initializer=exit_with_parent, initargs=(os.getpid(),))


def preprocess_folder(
    source: str | Path,
    out: str | Path,
    config: PreprocessConfig,
    jobs: int = 1,
    progress: Progress | None = None,
    contrasts: Sequence[str] | None = None,
) -> dict:
    """Preprocess every subject under `source` into `out`; write and return the manifest.

    `out` is checked before anything is written: a folder that can be written, apart from `source` (neither
    inside the other, links resolved), and new, empty or written by an earlier preprocess (never a folder of
    other files, whose subject folders would be replaced)."""
    progress = progress or Progress("none")
    out = check_output_folder(out, "OUT")
    subjects = discover_subjects(source, contrasts)
    check_apart(out, source, "OUT", "IN")
    check_owned_folder(out, "OUT", "preprocess", signs=(MANIFEST_NAME,))
    mark_owned_folder(out, "preprocess")
    jobs = max(1, min(jobs, len(subjects)))
    threads = max(1, (os.cpu_count() or 1) // jobs)
    start = time.monotonic()
    records: dict[str, dict] = {}
    progress.update("preprocess", 0.0, f"{len(subjects)} subject(s), {jobs} at a time")
    if jobs == 1:
        for i, subject in enumerate(subjects):
            report = progress.callback("preprocess", i / len(subjects), (i + 1) / len(subjects))
            set_thread_count(threads)
            try:
                records[subject.subject] = preprocess_subject(
                    subject, out, config, on_progress=lambda f, m, s=subject: report(f, f"{s.subject}: {m}")
                )
            except InputError as error:
                records[subject.subject] = {"subject": subject.subject, "status": "failed", "error": str(error),
                                            "bad_input": True}
            _report_failure(progress, records[subject.subject])
    else:
        with _worker_pool(jobs) as pool:
            pending = {pool.submit(_run_one, s, str(out), config, threads): s for s in subjects}
            try:
                while pending:
                    finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in finished:
                        subject = pending.pop(future)
                        records[subject.subject] = future.result()
                        _report_failure(progress, records[subject.subject])
                        progress.update("preprocess", len(records) / len(subjects), f"{subject.subject} done")
            except BaseException:
                for process in list(getattr(pool, "_processes", {}).values()):
                    process.terminate()
                pool.shutdown(wait=False, cancel_futures=True)
                raise
    manifest = {
        "format": MANIFEST_FORMAT,
        "software": f"MRImputationLib {__version__}",
        "source": str(Path(source).resolve()),
        "config": config.to_dict(),
        "seconds": round(time.monotonic() - start, 2),
        "subjects": [records[s.subject] for s in subjects],
    }
    write_text(out / MANIFEST_NAME, json.dumps(manifest, indent=2))
    return manifest


def _report_failure(progress: Progress, record: dict) -> None:
    if record.get("status") != "ok":
        progress.log(f"subject {record['subject']} failed: {record['error']}")
