"""Backups and restores of one host's volumes, run on the server (python3 standard library only).

This package travels with the switcher in every generation (GEN/activate/backup/). `bundle
build` adds GEN/scripts/backup.py, a launcher that runs this package from the same generation,
and the plan beside it in GEN/scripts/backup.json (made from the stack's [backup] table by
builder/render/features/backup.py); backup.service runs the launcher from backup.timer. By
hand, as root (as the host's user on a rootless host, with its ~/.local/state/bundle instead of
/var/lib/bundle; docs/operations.md):

    /var/lib/bundle/current/scripts/backup.py                       back up every volume now
    /var/lib/bundle/current/scripts/backup.py list [SERVICE]        the snapshots, by run
    /var/lib/bundle/current/scripts/backup.py restore SERVICE [--snapshot ID]
    /var/lib/bundle/current/scripts/backup.py restore --all         every service (a new host)

What a backup does, for each group of volumes (the named volumes of `stateful` containers; a
pod's volumes form one group, so an application and its database are saved together):

1. take the switcher's lock (STATE/lock, activate/lock.py), so no deploy starts or stops
   containers meanwhile;
2. stop every container that mounts one of the group's volumes;
3. bind-mount each volume at /run/bundle-backup/volumes/VOLUME (the same path on every host,
   so snapshots of a volume follow each other whatever the storage path) and back it up with
   restic or kopia, tagged `volume:VOLUME` and `run:RUN` (RUN = the run's UTC start time);
4. start again, whatever happened, every container that was running before.

With method "snapshot", the containers of every group are stopped together only while an LVM
or btrfs snapshot of their filesystems is taken (seconds), and the backup reads the snapshot.
A volume on any other filesystem falls back to "stop", and the journal says so.

On a rootless host (`rootless = true`, docs/rootless.md) it runs as the host's user, from
that user's systemd (backup.service is a user unit): units are stopped and started with
`systemctl --user`, and each volume is read or written from inside the user namespace
(`podman unshare`, where the container's owners are the same numbers as inside the
containers, so a restore gives the files back to the same users), in a private mount
namespace whose /run is a copy holding /run/bundle-backup: the path is the same as on a
rootful host, so snapshots move between the two. The cache is ~/.cache/bundle-backup.

On success: ping HEALTHCHECK_URL, write the node-exporter textfile metric
`bundle_backup_last_success_timestamp_seconds{host="HOST"}`, record STATE/backup/last.json.
On any failure: ping HEALTHCHECK_URL/fail (with the reason as the body), exit 1.

Secrets (repository password, S3 keys, healthcheck URL) are read from the files the switcher
completes under STATE/rendered/ (root only) and given to restic/kopia in their environment,
never on a command line and never printed.
"""
