set -eu
# What grub-mkconfig will see: /etc/default/grub, then (Debian, Ubuntu) the
# drop-ins in /etc/default/grub.d, sourced by /bin/sh as update-grub does.
configured=$(sh -c 'set +eu
  . /etc/default/grub
  for f in /etc/default/grub.d/*.cfg; do if [ -e "$f" ]; then . "$f"; fi; done
  printf "%s %s|%s" "$GRUB_CMDLINE_LINUX" "$GRUB_CMDLINE_LINUX_DEFAULT" "${GRUB_TERMINAL-}"' 2>/dev/null)
cmdline=" ${configured%|*} " terminal=${configured##*|}
bad=""
for a in {{ vars.cmdline_add }}; do
  case "$cmdline" in *" $a "*) ;; *) bad="$bad missing:$a" ;; esac
done
for r in {{ vars.cmdline_remove }}; do
  case "$cmdline" in *" $r "*) bad="$bad present:$r" ;; esac
done
case " $terminal " in *" serial "*) ;; *) bad="$bad GRUB_TERMINAL=$terminal" ;; esac
if [ -n "$bad" ]; then
  echo "configured command line:$cmdline-$bad" >&2
  exit 1
fi
