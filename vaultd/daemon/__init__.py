"""The daemon's parts, one noun each.

The process: `process` (the Daemon: composition root — builds, wires, starts and stops the
rest), `work_loop` (the main thread, the index's only writer), `commands` (the typed work it
is handed), `vector_fill` (the vectors phase of indexing), `jobs` (lifecycle phases and the
flush), `schedule` (the cron jobs that queue them), `reads` (searches on the HTTP threads),
`recalls` (search recalls, written aside), `own_files` (the watch over its `.vaultd/` files),
`stats` (its counters, /health and /status), `watcher` (file events → work).

The HTTP API: `server` (connections and the order of the checks), `guards` (the security
checks and limits, pure), `routes` (one function per endpoint), `payloads` (request values and
answer shapes), `connections` (connection limits and deadlines).

Around it: `discovery` (lock, pid/port info, token: how clients find it), `control`
(start/stop from another process), `client` (talk to it; stdlib only), `service`
(systemd/launchd units).

Imports nothing, so `vaultd.daemon.client` stays light: `vaultd search` with the daemon up
loads neither numpy nor onnxruntime nor the index code.
"""
