set -eu
for p in /proc/[0-9]*; do
  [ "${p#/proc/}" = "$$" ] && continue
  comm=$(cat "$p/comm" 2>/dev/null) || continue
  case "$comm" in
    dnf|yum|rpm|microdnf|dnf-automatic)
      echo "a package manager is running: $comm (pid ${p#/proc/}); wait for it to finish" >&2
      exit 1
      ;;
  esac
done
