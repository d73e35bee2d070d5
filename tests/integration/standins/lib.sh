# Shared by the recording stand-ins (tests only; see README.md). Sourced, not run.
STANDIN_STATE=/var/lib/imageprep-standins

record() {  # record TOOL ARGS...: one line per call, fields separated by 0x1f
  mkdir -p "$STANDIN_STATE"
  local IFS=$'\x1f'
  printf '%s\n' "$*" >> "$STANDIN_STATE/calls.log"
}

installed_kernels() {  # kernels with a module tree and a vmlinuz in /boot
  local d k
  for d in /lib/modules/*/; do
    k=$(basename "$d")
    if [ -e "/boot/vmlinuz-$k" ]; then echo "$k"; fi
  done
}

# mkconfig OUT SOURCE_DROPINS: a stand-in grub.cfg from /etc/default/grub, sourced by
# /bin/sh as grub-mkconfig does (Debian's update-grub also sources grub.d/*.cfg).
mkconfig() {
  local out=$1 dropins=$2 vals k
  vals=$(DROPINS=$dropins sh -c '
    . /etc/default/grub
    if [ "$DROPINS" = 1 ]; then
      for f in /etc/default/grub.d/*.cfg; do if [ -e "$f" ]; then . "$f"; fi; done
    fi
    printf "%s\n" "${GRUB_CMDLINE_LINUX-}" "${GRUB_CMDLINE_LINUX_DEFAULT-}" \
      "${GRUB_TERMINAL-}" "${GRUB_SERIAL_COMMAND-}" "${GRUB_ENABLE_BLSCFG-}"') || {
    echo "/etc/default/grub or a drop-in failed to source" >&2
    return 1
  }
  local linux default terminal serial bls
  { read -r linux; read -r default; read -r terminal; read -r serial; read -r bls; } <<<"$vals"
  echo "Generating grub configuration file ..." >&2
  mkdir -p "$(dirname "$out")"
  {
    echo "# imageprep stand-in grub.cfg (not bootable), generated from /etc/default/grub"
    if [ -n "$serial" ]; then echo "$serial"; fi
    if [ -n "$terminal" ]; then
      echo "terminal_input $terminal"
      echo "terminal_output $terminal"
    fi
    if [ "$bls" = true ]; then
      echo "set kernelopts=\"root=UUID=00000000-stand-in ro $linux\""
      echo "blscfg"
    else
      for k in $(installed_kernels); do
        echo "menuentry 'Linux $k' {"
        echo "	linux /boot/vmlinuz-$k root=UUID=00000000-stand-in ro $linux $default"
        echo "}"
      done
    fi
  } > "$out"
  echo "done" >&2
}
