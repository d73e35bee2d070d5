#!/bin/sh
# Packer's shell-local step: run `imageprep run` against the VM Packer built.
# imageprep's exit code is this script's, so any failure (see the README's exit-code
# table) fails the Packer build; result.json in $IMAGEPREP_RUN_DIR says what happened.
#
# The key: builders that make a temporary key pair (azure-arm, amazon-ebs, ...) hand it over
# in build.SSHPrivateKey. Packer leaves that variable empty when the builder was given
# ssh_private_key_file (the null builder always is), so the key file is used then.
set -eu

key_dir=$(mktemp -d)
trap 'rm -rf "$key_dir"' EXIT
if [ -n "${IMAGEPREP_SSH_PRIVATE_KEY:-}" ]; then
    key_file="$key_dir/id"
    (umask 077 && printf '%s\n' "$IMAGEPREP_SSH_PRIVATE_KEY" > "$key_file")
else
    key_file="$IMAGEPREP_SSH_KEY_FILE"
fi
unset IMAGEPREP_SSH_PRIVATE_KEY

"$IMAGEPREP" run \
    --target "ssh://$IMAGEPREP_USER@$IMAGEPREP_HOST:$IMAGEPREP_PORT" \
    --identity "$key_file" \
    --known-hosts "$IMAGEPREP_KNOWN_HOSTS" \
    --backup "$IMAGEPREP_BACKUP" \
    --run-dir "$IMAGEPREP_RUN_DIR"
