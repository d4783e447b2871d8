"""The user's command, `optuna-grpc-storage`, and what it drives.

    cli.py          the command and its subcommands
    status.py       every study of a namespace, as a table or JSON, optionally live
    dashboard.py    optuna-dashboard on a GrpcJournalStorage
    transfer.py     export/import of journals as JSON-lines files
    journals.py     the one rule for a journal that does not exist
    experiment.py   YAML-defined experiments run on the controller
    yaml_config.py  the YAML experiment format, checked
"""
