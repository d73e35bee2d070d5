set -eu
cfg={{ vars.grub_cfg }}
if [ ! -f "$cfg" ]; then echo "$cfg not found" >&2; exit 1; fi
entries=$(grep -E '^[[:space:]]*linux(efi|16)?[[:space:]]' "$cfg" || true)
if [ -z "$entries" ]; then echo "$cfg has no linux entries" >&2; exit 1; fi
bad=""
while IFS= read -r line; do
  for a in {{ vars.cmdline_add }}; do
    case " $line " in *" $a "*) ;; *) bad="$bad [$line] lacks $a;" ;; esac
  done
done <<<"$entries"
if [ -n "$bad" ]; then
  echo "$cfg:$bad" >&2
  exit 1
fi
