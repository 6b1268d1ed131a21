"""A stress and fault test of the whole workflow, for a user's own machine:
``python -m chaosgd.tools.stress [--parallel N] [--rounds M] [--seed S] [--summary FILE]``.

In scratch checkouts under ``--workdir`` (copies of this checkout's Snakefile, ``workflow/``,
``config/``, ``profiles/``, ``envs/`` and ``pyproject.toml``) it

1. runs the config (``--configfile``, default ``config/tiny.yaml``) once, undisturbed: the
   clean reference;
2. runs it in N checkouts side by side, sends SIGKILL or SIGTERM to their jobs at moments a
   seeded RNG picks, reruns each to completion, and repeats that M times (from the second round
   on with the jobs of a random rule forced to rerun);
3. moves a finished checkout elsewhere: Snakemake must find nothing to do, and run no job;
4. exports its results as an archive (``chaosgd.tools.archive``) and imports them into fresh
   checkouts: under the same config nothing reruns; under one with another learning rate the
   import refuses, the Snakefile stops on the imported runs, and once ``chaosgd.tools.stale
   --move`` moved them aside exactly the jobs the rate shapes are scheduled;
5. in a copy of the reference, on a tmpfs mounted over ``results/`` in a private mount
   namespace (``unshare``; skipped, with the reason, where none can be made): a full disk, and
   ``results/`` remounted read-only before a run and in the middle of a job; each failure must
   name the file and the cause and leave no half-written output; then it frees the space or
   remounts read-write and reruns to completion;
6. after every recovery compares every file under ``results/`` with the reference, bit for bit
   but for the timings and dates listed in :data:`compare.EXCLUSIONS`.

The command line and the order of these steps are in :mod:`chaosgd.tools.stress.cli`;
``--no-namespace`` runs the fallback without a mount namespace. It prints a summary (runs,
kills by signal, faults by kind, files and bytes compared, mismatches, escapes: a raw
traceback, a fault not named, a half-written output), writes it as JSON to ``--summary``, and
exits 1 if any check failed. Every command has a time limit.
"""
