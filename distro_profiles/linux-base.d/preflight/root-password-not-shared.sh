set -eu
# `waagent -deprovision` locks root's password (it rewrites root's /etc/shadow line as
# root:*LOCK*:...; osutil's del_root_password) only with Provisioning.DeleteRootPassword=y.
# Every waagent.conf the distributions ship says y, but the agent's own default is n
# (common/conf.py), so a conf without the line keeps root's password, and every clone of
# the image would accept it. Asked before anything changes, not found on the clones.
field=$(awk -F: '$1 == "root" { print $2; exit }' /etc/shadow)
case "$field" in
  '!'* | '*'*) exit 0 ;;  # locked, or never set: nothing for a clone to inherit
  '') what="an empty password (a console login without one)" ;;
  *) what="a password" ;;
esac
# The agent's own reading of waagent.conf, its defaults included (only asked here: it
# starts Python on the target, about 0.2 s).
setting=$(waagent -show-configuration | sed -n 's/^Provisioning\.DeleteRootPassword = //p')
if [ "$setting" = True ]; then
  echo "root has $what; waagent's deprovision locks it (Provisioning.DeleteRootPassword=y)"
  exit 0
fi
echo "root has $what and waagent's deprovision keeps it (Provisioning.DeleteRootPassword is ${setting:-not shown}):" \
  "every clone would have it. Set Provisioning.DeleteRootPassword=y in /etc/waagent.conf," \
  "lock it (passwd -l root), or keep it on purpose with --var keep_root_password=true" >&2
exit 1
