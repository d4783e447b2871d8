"""`optuna-grpc-storage`: the user's commands (the operator's are `storage-proxy`).

    optuna-grpc-storage status [--json] [--follow]      every study: counts, best, last update
    optuna-grpc-storage journals                         the journals of your namespace
    optuna-grpc-storage export journal.log [--journal default]
    optuna-grpc-storage import journal.log [--journal nfs] [--replace | --resume]
    optuna-grpc-storage delete-journal NAME --yes
    optuna-grpc-storage logs STUDY [TRIAL_NUMBER] [--follow]   what trials printed
    optuna-grpc-storage run config.yaml --session pkg.module:single_session
    optuna-grpc-storage dashboard [--port 8080]
    optuna-grpc-storage token share --journal cnn --read-only --expires 7d [--note TEXT]
    optuna-grpc-storage token show

Endpoint and token come from --endpoint/--token or OPTUNA_GRPC_STORAGE_ENDPOINT /
OPTUNA_GRPC_STORAGE_TOKEN (better: a command line is visible to every user of the machine, and
--token prints a warning saying so).
Every command that talks to the proxy first makes sure it answers, within REACH_SECONDS, so
a wrong address is an error in seconds (later calls ride out restarts as usual). Every error
is one `error:` line and a non-zero exit; OPTUNA_GRPC_STORAGE_DEBUG=1 shows the traceback of
an unexpected one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from optuna_grpc_storage.protocol.quota import QuotaStatus, format_bytes
from optuna_grpc_storage.protocol.version import __version__
from optuna_grpc_storage.storage.client import JournalClient
from optuna_grpc_storage.storage.connection import ENDPOINT_ENV, TOKEN_ENV, Connection
from optuna_grpc_storage.storage.errors import GrpcStorageError
from optuna_grpc_storage.tools.dashboard import DashboardError
from optuna_grpc_storage.tools.journals import DEFAULT_JOURNAL, require_journals
from optuna_grpc_storage.tools.tokens import add_token_commands
from optuna_grpc_storage.tools.transfer import TransferRefused
from optuna_grpc_storage.tools.yaml_config import ConfigError

REACH_SECONDS = 10.0  # how long a command tries to reach the proxy before it says it cannot
DEBUG_ENV = "OPTUNA_GRPC_STORAGE_DEBUG"


def _client(args: argparse.Namespace, deadline: float | None = None) -> JournalClient:
    if deadline is None:
        return JournalClient(Connection(args.endpoint, args.token), use_stream=False)
    return JournalClient(Connection(args.endpoint, args.token, timeout=deadline,
                                    retry_deadline=deadline), use_stream=False)


def _reach(args: argparse.Namespace) -> None:
    """One WhoAmI with a short deadline: an unreachable proxy, a missing or refused token
    are reported now, not after the minute of retries the later calls may take."""
    client = _client(args, REACH_SECONDS)
    try:
        client.who_am_i()
    finally:
        client.close()


def _named_journal(args: argparse.Namespace) -> str:
    """--journal if given, else the default journal."""
    return args.journal or DEFAULT_JOURNAL


def cmd_status(args: argparse.Namespace) -> int:
    from optuna_grpc_storage.tools.status import Overview, show

    if args.journal:  # every journal named must exist (journals.py)
        client = _client(args)
        try:
            require_journals(client, args.journal)
        finally:
            client.close()
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
    journal = _named_journal(args)
    count = export_journal(args.endpoint, args.token, journal,
                           sys.stdout.buffer if to_stdout else args.file,
                           progress=not args.quiet)
    where = "stdout" if to_stdout else args.file
    print(f"exported {count} entries of journal {journal!r} to {where}", file=sys.stderr)
    if args.with_artifacts:
        from optuna_grpc_storage.tools import artifact_transfer as at

        if to_stdout:
            raise ValueError("--with-artifacts writes beside a file: give a file, not -")
        n = at.export_artifacts(_artifact_store(args), journal, args.file)
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
    result = import_journal(args.endpoint, args.token, _named_journal(args), args.file,
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
    from optuna_grpc_storage.tools.experiment import run_command  # optuna, cloudpickle: here

    return run_command(args)


def cmd_logs(args: argparse.Namespace) -> int:
    from optuna_grpc_storage.tools.logs import main_logs

    if args.journal:  # a journal named must exist (journals.py)
        client = _client(args)
        try:
            require_journals(client, [args.journal])
        finally:
            client.close()
    return main_logs(args.endpoint, args.token, _named_journal(args), args.study,
                     args.trial_number, args.follow)


def cmd_dashboard(args: argparse.Namespace) -> int:
    from optuna_grpc_storage.tools.dashboard import serve

    if args.journal:  # a journal named must exist; the default one may be empty yet
        client = _client(args)
        try:
            require_journals(client, [args.journal])
        finally:
            client.close()
    return serve(args.endpoint, args.token, _named_journal(args), args.host, args.port,
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
    journal.add_argument("--journal", help=f"journal name (default: {DEFAULT_JOURNAL})")
    quiet = argparse.ArgumentParser(add_help=False)
    quiet.add_argument("--quiet", action="store_true", help="no progress bar")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_study_commands(sub, common, journal, quiet)
    _add_journal_commands(sub, common, journal, quiet)
    add_token_commands(sub, common)
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
    p.add_argument("--interval", type=float, default=2.0,
                   help="seconds between refreshes with --follow (default: 2)")
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
    p.set_defaults(func=cmd_run, reach=False)  # the controller checks, and --check needs none

    p = sub.add_parser("dashboard", parents=[common, journal],
                       help="optuna-dashboard on your studies, live")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080,
                   help="port to listen on (default: 8080; 0 picks a free one)")
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
    p.add_argument("study", help="the study's name")
    p.add_argument("trial_number", nargs="?", type=int, help="one trial (default: every one)")
    p.add_argument("--follow", "-f", action="store_true",
                   help="keep printing as trials print, until they have ended")
    p.set_defaults(func=cmd_logs)


def _add_journal_commands(sub: Any, common: argparse.ArgumentParser,
                          journal: argparse.ArgumentParser,
                          quiet: argparse.ArgumentParser) -> None:
    """journals, export, import, delete-journal: what the user does with whole journals."""
    p = sub.add_parser("journals", parents=[common], help="the journals of your namespace")
    p.add_argument("--json", action="store_true", help="one JSON list of the journals")
    p.set_defaults(func=cmd_journals)

    p = sub.add_parser("export", parents=[common, journal, quiet],
                       help="write a journal to a file Optuna's JournalFileBackend opens")
    p.add_argument("file", help="output file, or - for stdout")
    p.add_argument("--with-artifacts", action="store_true",
                   help="also the journal's artifacts, into FILE.artifacts/")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("import", parents=[common, journal, quiet],
                       help="load a JSON-lines journal file (e.g. a JournalFileBackend's)")
    p.add_argument("file", help="the JSON-lines journal file, e.g. a JournalFileBackend's")
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
    p.add_argument("name", help="the journal to delete, with every study in it")
    p.add_argument("--yes", action="store_true", help="really delete it")
    p.set_defaults(func=cmd_delete_journal)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "token", None) is not None:
        print(f"warning: --token puts your token in the shell history and in `ps` for every "
              f"user of this machine; set it in the environment instead: export "
              f"{TOKEN_ENV}=...", file=sys.stderr)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # "A new study created...": noise here
    try:
        if getattr(args, "reach", True):
            _reach(args)
        return int(args.func(args))
    except ConfigError as e:
        print(f"error in the config: {e}", file=sys.stderr)
        return 2
    except (TransferRefused, GrpcStorageError, ValueError, DashboardError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        where = f" {e.filename}" if e.filename else ""
        print(f"error:{where} {e.strerror or e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # a bug: one line, unless asked for the traceback
        if os.environ.get(DEBUG_ENV):
            raise
        print(f"error: unexpected {type(e).__name__}: {e} (set {DEBUG_ENV}=1 to see the "
              "traceback, and please report it)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
