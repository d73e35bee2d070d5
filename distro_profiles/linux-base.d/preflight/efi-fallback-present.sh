set -eu
# A clone starts with empty UEFI boot variables: no Boot#### entry names the distribution's
# loader, so the firmware boots the removable-media path \EFI\BOOT\BOOT<arch>.EFI of the
# disk (UEFI 2.10, 3.5.1.1 "Removable Media Boot Behavior"; Azure Gen2 and Hyper-V Gen2
# firmware do so). An install from ISO does not always write it: Debian's installer asks
# ("Force GRUB installation to the EFI removable media path?", default no). Microsoft's
# Ubuntu page copies EFI/ubuntu to EFI/boot for this reason (linux.md (d)).
require_even_on_bios={{ vars.require_efi_fallback }}
if [ ! -d /sys/firmware/efi ] && [ "$require_even_on_bios" != true ]; then
  echo "booted by BIOS: no UEFI fallback loader needed (--var require_efi_fallback=true checks anyway)"
  exit 0
fi
case $(uname -m) in
  x86_64) loader=BOOTX64.EFI ;;
  aarch64) loader=BOOTAA64.EFI ;;
  *)
    echo "no UEFI fallback loader name is known for $(uname -m): not checked"
    exit 0
    ;;
esac
# The ESP: the first of the places bootctl(1) looks (/boot/efi before /boot, whose efi/
# may be only the mount point) with a loader in an EFI/<folder>. FAT ignores case, and so
# does this.
esp=
for dir in /efi /boot/efi /boot; do
  if [ -n "$(find "$dir" -mindepth 3 -maxdepth 3 -ipath "$dir/efi/*/*.efi" -type f -print -quit 2>/dev/null)" ]; then
    esp=$dir
    break
  fi
done
if [ -z "$esp" ]; then
  echo "no EFI system partition with a boot loader is mounted at /efi, /boot/efi or /boot: mount it, so that its EFI/BOOT/$loader can be checked" >&2
  exit 1
fi
found=$(find "$esp" -mindepth 3 -maxdepth 3 -ipath "$esp/efi/boot/$loader" -type f -print -quit)
if [ -n "$found" ]; then
  echo "UEFI fallback loader present: $found"
  exit 0
fi
echo "$esp/EFI/BOOT/$loader is missing: a clone starts with no UEFI boot entries and would find no boot loader." \
  "On Debian and Ubuntu: grub-install --removable, or dpkg-reconfigure grub-efi-amd64 and answer yes to installing to the removable media path (kept up to date then);" \
  "elsewhere copy the distribution's EFI folder to EFI/BOOT with shim as $loader, as Microsoft's Ubuntu page does" >&2
exit 1
