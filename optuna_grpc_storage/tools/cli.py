"""`optuna-grpc-storage`: the user's commands (the operator's are `storage-proxy`).

    optuna-grpc-storage status [--json] [--follow]      every study: counts, best, last update
    optuna-grpc-storage journals                         the journals of your namespace
    optuna-grpc-storage export journal.log [--journal default]
    optuna-grpc-storage import journal.log [--journal nfs] [--replace | --resume]
    optuna-grpc-storage delete-journal NAME --yes
    optuna-grpc-storage logs STUDY [TRIAL_NUMBER] [--follow]   what trials printed
    optuna-grpc-storage run config.yaml --session pkg.module:single_session
    optuna-grpc-storage dashboard [--port 8080]

Endpoint and token come from --endpoint/--token or OPTUNA_GRPC_STORAGE_ENDPOINT /
OPTUNA_GRPC_STORAGE_TOKEN (better: a command line is visible to every user of the machine).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from optuna_grpc_storage.protocol.quota import QuotaStatus, format_bytes
from optuna_grpc_storage.protocol.version import __version__
from optuna_grpc_storage.storage.client import JournalClient
from optuna_grpc_storage.storage.connection import ENDPOINT_ENV, TOKEN_ENV, Connection
from optuna_grpc_storage.storage.errors import GrpcStorageError
from optuna_grpc_storage.tools.transfer import TransferRefused
from optuna_grpc_storage.tools.yaml_config import ConfigError


def _client(args: argparse.Namespace) -> JournalClient:
    return JournalClient(Connection(args.endpoint, args.token), use_stream=False)


def cmd_status(args: argparse.Namespace) -> int:
    from optuna_grpc_storage.tools.status import Overview, show

    overview = Overview(args.endpoint, args.token, args.journal)
    return show(overview, as_json=args.json, follow=args.follow, interval=args.interval)


def cmd_journals(args: argparse.Namespace) -> int:
    client = _client(args)
    journals = client.list_journals()
    quota = QuotaStatus.from_proto(client.who_am_i().quota)
    rows = [{"name": j.name, "entries": j.length, "snapshot_position": j.snapshot_position,
             "snapshot_bytes": j.snapshot_bytes, "bytes": j.bytes} for j in journals]
    if args.json:
        print(json.dumps(rows))
        return 0
    width = max([len("JOURNAL"), *(len(r["name"]) for r in rows)])
    print(f"{'JOURNAL':{width}}  {'ENTRIES':>10}  {'BYTES':>10}  SNAPSHOT")
    for r in rows:
        snap = f"at {r['snapshot_position']} ({r['snapshot_bytes']} bytes)" \
            if r["snapshot_position"] >= 0 else "-"
        print(f"{r['name']:{width}}  {r['entries']:>10}  {format_bytes(r['bytes']):>10}  {snap}")
    if quota is not None:
        lim = quota.limits
        print(f"quota: {format_bytes(quota.bytes_used)} of {format_bytes(lim.bytes)} used "
              f"(reserved by your journals), {quota.journals} of {lim.journals} journals; "
              f"a snapshot up to {format_bytes(lim.snapshot_bytes)}, an entry up to "
              f"{format_bytes(lim.entry_bytes)}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from optuna_grpc_storage.tools.transfer import export_journal

    to_stdout = args.file == "-"
    count = export_journal(args.endpoint, args.token, args.journal,
                           sys.stdout.buffer if to_stdout else args.file,
                           progress=not args.quiet)
    where = "stdout" if to_stdout else args.file
    print(f"exported {count} entries of journal {args.journal!r} to {where}", file=sys.stderr)
    if args.with_artifacts:
        from optuna_grpc_storage.tools import artifact_transfer as at

        if to_stdout:
            raise ValueError("--with-artifacts writes beside a file: give a file, not -")
        n = at.export_artifacts(_artifact_store(args), args.journal, args.file)
        print(f"exported {n} artifacts to {at.artifacts_dir(args.file)}", file=sys.stderr)
    return 0


def _artifact_store(args: argparse.Namespace) -> Any:
    from optuna_grpc_storage.storage import GrpcArtifactStore

    return GrpcArtifactStore(args.endpoint, args.token)


def cmd_import(args: argparse.Namespace) -> int:
    from optuna_grpc_storage.tools.transfer import import_journal

    if args.with_artifacts:  # a damaged export is refused before the journal is written
        from optuna_grpc_storage.tools.artifact_transfer import check_export

        check_export(args.file)
    result = import_journal(args.endpoint, args.token, args.journal, args.file,
                            replace=args.replace, resume=args.resume,
                            snapshot=not args.no_snapshot, progress=not args.quiet)
    if result.ignored_last_line:
        print(f"warning: the last line of {args.file} has no newline: Optuna's "
              "JournalFileBackend reads it as a write in progress and ignores it; so did this "
              "import", file=sys.stderr)
    kept = result.entries - result.appended
    print(f"imported {result.entries} entries into journal {result.journal!r}"
          + (f" ({kept} were there already)" if kept else "")
          + ("; snapshot saved" if result.snapshot else ""), file=sys.stderr)
    if args.with_artifacts:
        from optuna_grpc_storage.tools import artifact_transfer as at

        n = at.import_artifacts(_artifact_store(args), args.journal, args.file)
        print(f"imported {n} artifacts from {at.artifacts_dir(args.file)}", file=sys.stderr)
    return 0


def cmd_delete_journal(args: argparse.Namespace) -> int:
    if not args.yes:
        print(f"this deletes every study of journal {args.name!r} for good; add --yes",
              file=sys.stderr)
        return 2
    deleted = _client(args).delete_journal(args.name)
    print(f"journal {args.name!r} " + ("deleted" if deleted else "did not exist"),
          file=sys.stderr)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    import dataclasses

    from optuna_grpc_storage.tools.experiment import load_session, run_experiment, summary
    from optuna_grpc_storage.tools.yaml_config import load_config

    experiment = load_config(args.config)
    changes = {k: v for k, v in (("n_trials", args.n_trials), ("parallelism", args.parallelism),
                                 ("journal", args.journal)) if v is not None}
    experiment = dataclasses.replace(experiment, **changes)
    ref = args.session or experiment.session
    if not ref:
        raise ConfigError("session: give --session pkg.module:function (or `session:` in the "
                          "config)")
    session = load_session(ref)
    if args.check:
        print(f"{args.config}: OK; study {experiment.study_name!r}, {experiment.n_trials} "
              f"trials, {len(experiment.search_space)} parameters, session {ref}")
        return 0
    study, status = run_experiment(experiment, session, endpoint=args.endpoint,
                                   token=args.token, launcher=_launcher(args),
                                   wait=not args.no_wait, progress=not args.quiet)
    print(json.dumps(status))
    if args.no_wait:
        return 0
    print(summary(study.get_study()))
    if status["count_failed"] == status["count_total"]:
        print(f"error: every trial failed; last error: {status['last_error']}", file=sys.stderr)
        return 1
    return 0


def _launcher(args: argparse.Namespace):
    if args.kubernetes_namespace:
        from optuna_grpc_storage.runner.launchers import KubernetesLauncher

        return KubernetesLauncher(namespace=args.kubernetes_namespace)
    if args.workdir:
        from optuna_grpc_storage.runner.launchers import LocalLauncher

        return LocalLauncher(Path(args.workdir))
    return None


def cmd_logs(args: argparse.Namespace) -> int:
    from optuna_grpc_storage.tools.logs import main_logs

    return main_logs(args.endpoint, args.token, args.journal, args.study, args.trial_number,
                     args.follow)


def cmd_dashboard(args: argparse.Namespace) -> int:
    from optuna_grpc_storage.tools.dashboard import serve

    return serve(args.endpoint, args.token, args.journal, args.host, args.port,
                 allowed_hosts=args.allowed_host or (), read_only=args.read_only,
                 login=not args.no_login)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="optuna-grpc-storage",
                                     description="Your studies on an optuna-grpc-storage proxy.")
    parser.add_argument("--version", action="version",
                        version=f"optuna-grpc-storage {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--endpoint", help=f"host:port of the proxy (default ${ENDPOINT_ENV})")
    common.add_argument("--token", help=f"your token (default ${TOKEN_ENV}, which is better: "
                        "a command line is visible to other users)")
    journal = argparse.ArgumentParser(add_help=False)
    journal.add_argument("--journal", default="default", help="journal name (default: default)")
    quiet = argparse.ArgumentParser(add_help=False)
    quiet.add_argument("--quiet", action="store_true", help="no progress bar")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_study_commands(sub, common, journal, quiet)
    _add_journal_commands(sub, common, journal, quiet)
    return parser


def _add_study_commands(sub: Any, common: argparse.ArgumentParser,
                        journal: argparse.ArgumentParser,
                        quiet: argparse.ArgumentParser) -> None:
    """status, run, dashboard: what the user does with studies."""
    p = sub.add_parser("status", parents=[common], help="your studies: trials by state, best")
    p.add_argument("--journal", action="append", help="only this journal (repeatable; "
                   "default: every journal)")
    p.add_argument("--json", action="store_true", help="JSON (one document per line)")
    p.add_argument("--follow", action="store_true", help="keep showing changes until Ctrl-C")
    p.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("run", parents=[common, quiet],
                       help="run a YAML-defined experiment on the controller's workers")
    p.add_argument("config", help="the experiment's YAML file")
    p.add_argument("--session", help="pkg.module:function or path/file.py:function")
    p.add_argument("--n-trials", type=int, help="override n_trials")
    p.add_argument("--parallelism", type=int, help="override parallelism")
    p.add_argument("--journal", help="override journal")
    p.add_argument("--no-wait", action="store_true", help="return once the workers started")
    p.add_argument("--check", action="store_true", help="check the config and the session only")
    p.add_argument("--workdir", help="local workers' files and logs (default: a temp dir)")
    p.add_argument("--kubernetes-namespace", help="run the workers as a Kubernetes Job there")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("dashboard", parents=[common, journal],
                       help="optuna-dashboard on your studies, live")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    p.add_argument("--allowed-host", action="append", metavar="NAME",
                   help="a host name browsers may use to reach it besides localhost and "
                   "--host (repeatable); requests naming another Host are refused")
    p.add_argument("--read-only", action="store_true",
                   help="refuse every change (a read-only token makes it so by itself)")
    p.add_argument("--no-login", action="store_true",
                   help="no password: anyone who reaches the port can read and change your "
                   "studies (by default a login is required)")
    p.set_defaults(func=cmd_dashboard)

    p = sub.add_parser("logs", parents=[common, journal],
                       help="what trials printed (stdout, stderr, traceback), kept with them")
    p.add_argument("study")
    p.add_argument("trial_number", nargs="?", type=int, help="one trial (default: every one)")
    p.add_argument("--follow", "-f", action="store_true",
                   help="keep printing as trials print, until they have ended")
    p.set_defaults(func=cmd_logs)


def _add_journal_commands(sub: Any, common: argparse.ArgumentParser,
                          journal: argparse.ArgumentParser,
                          quiet: argparse.ArgumentParser) -> None:
    """journals, export, import, delete-journal: what the user does with whole journals."""
    p = sub.add_parser("journals", parents=[common], help="the journals of your namespace")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_journals)

    p = sub.add_parser("export", parents=[common, journal, quiet],
                       help="write a journal to a file Optuna's JournalFileBackend opens")
    p.add_argument("file", help="output file, or - for stdout")
    p.add_argument("--with-artifacts", action="store_true",
                   help="also the journal's artifacts, into FILE.artifacts/")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("import", parents=[common, journal, quiet],
                       help="load a JSON-lines journal file (e.g. a JournalFileBackend's)")
    p.add_argument("file")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--replace", action="store_true",
                      help="delete the journal first if it holds entries")
    mode.add_argument("--resume", action="store_true",
                      help="finish an interrupted import of this same file")
    p.add_argument("--no-snapshot", action="store_true",
                   help="do not save a snapshot after importing 10k+ entries")
    p.add_argument("--with-artifacts", action="store_true",
                   help="also the artifacts exported beside FILE (FILE.artifacts/)")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("delete-journal", parents=[common], help="delete a journal for good")
    p.add_argument("name")
    p.add_argument("--yes", action="store_true", help="really")
    p.set_defaults(func=cmd_delete_journal)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # "A new study created...": noise here
    try:
        return int(args.func(args))
    except ConfigError as e:
        print(f"error in the config: {e}", file=sys.stderr)
        return 2
    except (TransferRefused, GrpcStorageError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
