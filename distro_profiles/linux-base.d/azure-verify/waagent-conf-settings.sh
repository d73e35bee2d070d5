set -eu
# Ask the agent itself how it parses the file, rather than grepping it.
shown=$(waagent -show-configuration)
bad=""
for kv in {{ vars.waagent_settings }}; do
  key=${kv%%=*} want=${kv#*=}
  case "$want" in y) want=True ;; n) want=False ;; esac
  have=$(printf '%s\n' "$shown" | sed -n "s/^$key = //p" | head -n 1)
  [ "$have" = "$want" ] || bad="$bad $key=$have(want $want)"
done
if [ -n "$bad" ]; then
  echo "waagent -show-configuration disagrees:$bad" >&2
  exit 1
fi
