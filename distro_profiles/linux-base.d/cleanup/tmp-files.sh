set -eu
# Depth 1 only (as kubernetes-sigs/image-builder does); imageprep keeps its own
# files under /run. Sockets, the X11/ICE socket directories and systemd's
# PrivateTmp directories belong to running services (systemd removes the latter
# when they stop).
for dir in /tmp /var/tmp; do
  [ -d "$dir" ] || continue
  find "$dir" -mindepth 1 -maxdepth 1 ! -type s \
    ! -name .X11-unix ! -name .ICE-unix ! -name .XIM-unix ! -name .font-unix \
    ! -name .Test-unix ! -name 'systemd-private-*' -exec rm -rf -- {} +
done
