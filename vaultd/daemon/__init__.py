"""The daemon's parts, one noun each: `process` (the Daemon: composition root and work loop),
`files` (lock, pid/port info, token), `control` (start/stop from another process), `server`
(the loopback HTTP API), `connections` (its connection limits and deadlines), `client` (talk
to it; stdlib only), `watcher` (file events → work), `service` (systemd/launchd units).

Imports nothing, so `vaultd.daemon.client` stays light: `vaultd search` with the daemon up
loads neither numpy nor onnxruntime nor the index code.
"""
