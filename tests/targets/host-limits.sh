#!/bin/sh
# Raise the host's inotify instance limit so that the suite's targets can all boot at once.
# Each booted target's systemd, dbus and logind hold 8 inotify instances, all charged to
# root: 16 targets up together (the fleet tests) hold 128 (measured), which is exactly
# Debian's default fs.inotify.max_user_instances, so any other target booting at that
# moment (the second pytest worker) dies with "Failed to allocate manager object: Too many
# open files". 1024 is what the LXD snap sets on its hosts (canonical/lxd-pkg-snap, PR #361
# "bump fs.inotify.max_user_watches" notes it); LXD's "Server settings for a production
# setup" suggests far more. Runtime only (lost at reboot); never lowers a limit that is
# already higher. Run as root.
set -eu

WANTED=1024
current=$(cat /proc/sys/fs/inotify/max_user_instances)
if [ "$current" -lt "$WANTED" ]; then
    echo "$WANTED" > /proc/sys/fs/inotify/max_user_instances
    echo "host-limits: fs.inotify.max_user_instances $current -> $WANTED"
else
    echo "host-limits: fs.inotify.max_user_instances is $current"
fi
