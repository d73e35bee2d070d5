set -eu
# Enabled, not started: the agent has no wire server to talk to before Azure.
units=({{ vars.agent_service }}.service)
if {{ vars.expect_cloud_init }}; then
  # Unit files as installed, aliases aside (they cannot be enabled by that name).
  known=" $(systemctl list-unit-files --no-legend --no-pager --type=service |
            awk '$2 != "alias" { printf "%s ", $1 }')"
  missing=""
  for want in {{ vars.cloud_init_units }}; do
    found=""
    IFS="|" read -r -a alts <<<"$want"
    for alt in "${alts[@]}"; do
      case "$known" in *" ${alt%\?} "*) found=${alt%\?}; break ;; esac
    done
    if [ -n "$found" ]; then units+=("$found")
    elif [ "${want%\?}" = "$want" ]; then missing="$missing $want"; fi
  done
  if [ -n "$missing" ]; then
    echo "cloud-init units not installed:$missing" >&2
    exit 1
  fi
fi
systemctl enable "${units[@]}"
