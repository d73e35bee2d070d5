#!/usr/bin/env bash
# The demo: build a disposable Debian target (systemd, OpenSSH, sudo, waagent, cloud-init
# in its own network namespace), generalize it with `imageprep run`, and print the
# report's summary and what changed on the target's disk. Run as root on Debian 12.
# Nothing outside the disposable target is changed except the cache under
# /var/cache/imageprep-tests and the demo folder printed at the end.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

bash tests/setup.sh

demo="${IMAGEPREP_DEMO_DIR:-$(mktemp -d /tmp/imageprep-demo.XXXXXX)}"
mkdir -p "$demo"
echo "demo folder: $demo"

# `up` prints one JSON line describing the target, then keeps it alive until signalled.
.venv/bin/python -m tests.targets up > "$demo/target.json" 2> "$demo/target.log" &
up_pid=$!
cleanup() { kill -TERM "$up_pid" 2>/dev/null || true; wait "$up_pid" 2>/dev/null || true; }
trap cleanup EXIT

for _ in $(seq 1 600); do
    if [ -s "$demo/target.json" ]; then break; fi
    if ! kill -0 "$up_pid" 2>/dev/null; then
        echo "demo: the target did not start; see $demo/target.log" >&2
        tail -n 20 "$demo/target.log" >&2
        exit 1
    fi
    sleep 0.2
done
field() { .venv/bin/python -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())[sys.argv[2]])' "$demo/target.json" "$1"; }
host=$(field host); user=$(field user); key=$(field key_path)
known_hosts=$(field known_hosts_path); root=$(field root)
echo "target: ssh://$user@$host (disposable, in its own network namespace)"

set +e
.venv/bin/imageprep run \
    --target "ssh://$user@$host" --identity "$key" --known-hosts "$known_hosts" \
    --backup "archive:$demo/backups" --run-dir "$demo/run" --log-format text
status=$?
set -e

echo
echo "what changed on the target's disk, read from outside:"
show() { printf '  %-44s %s\n' "$1" "$2"; }
show "/etc/machine-id size" "$(stat -c %s "$root/etc/machine-id" 2>/dev/null || echo missing)"
show "SSH host keys left" "$(ls "$root"/etc/ssh/ssh_host_* 2>/dev/null | wc -l)"
show "user $user in /etc/passwd" "$(grep -c "^$user:" "$root/etc/passwd" || true)"
show "/home/$user exists" "$([ -e "$root/home/$user" ] && echo yes || echo no)"
show "/var/lib/waagent/ovf-env.xml exists" "$([ -e "$root/var/lib/waagent/ovf-env.xml" ] && echo yes || echo no)"
echo "exit code: $status; report: $demo/run/result.json"
exit "$status"
