"""``dirgw app``: create, check, remove and show the Entra app registration of a Microsoft 365
source (issue 6; graph.md §10).

- `commands`: argument parsing, ``main(argv, stdout, stderr)`` and the exit codes;
- `steps`: generate (with undo), remove, show; `check`: the access check and its verdicts;
- `graph_admin`: device-code sign-in and the Graph provisioning calls;
- `configfile`: rewrites one ``[[sources]]`` table keeping every other line (atomic write);
- `certificate`, `metadata`, `files`, `target`, `runtime`, `errors`: the parts they share.
"""
