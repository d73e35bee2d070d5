set -eu
known=" $(systemctl list-unit-files --no-legend --no-pager --type=service |
          awk '$2 != "alias" { printf "%s ", $1 }')"
bad=""
for want in {{ vars.cloud_init_units }}; do
  found=""
  IFS="|" read -r -a alts <<<"$want"
  for alt in "${alts[@]}"; do
    case "$known" in *" ${alt%\?} "*) found=${alt%\?}; break ;; esac
  done
  if [ -z "$found" ]; then
    [ "${want%\?}" != "$want" ] || bad="$bad $want(not installed)"
    continue
  fi
  state=$(systemctl is-enabled "$found" 2>&1) || bad="$bad $found($state)"
done
if [ -n "$bad" ]; then
  echo "cloud-init units not enabled:$bad" >&2
  exit 1
fi
