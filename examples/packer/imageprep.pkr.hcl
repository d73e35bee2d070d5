# Prepare a VM that Packer reaches over SSH, with imageprep as the "prepare" stage.
#
# Packer's null builder does not create a VM: it connects to an existing one with its SSH
# communicator. Replace `source "null"` with your real builder (azure-arm, qemu, ...) and
# keep the provisioner: it reads the host, port, user and private key of the machine Packer
# built from Packer's build variables, so imageprep talks to exactly that VM.
#
# Run with Packer >= 1.6.6 (tested with Debian's packer 1.6.6 in tests/unit/test_examples.py
# and tests/integration/test_packer_recipe.py):
#   packer build -var vm_host=10.0.0.5 -var vm_ssh_key_file=key \
#       -var known_hosts=golden.known_hosts -var backup=archive:./backups .
# Packer 1.6.6 knows neither `required_plugins` nor shell-local's `env`: this template uses
# neither, and needs no `packer init`.

variable "vm_host" {
  type = string
}

variable "vm_port" {
  type    = number
  default = 22
}

variable "vm_user" {
  type    = string
  default = "azureuser"
}

variable "vm_ssh_key_file" {
  type        = string
  description = "Private key file the SSH communicator logs in with."
}

variable "known_hosts" {
  type        = string
  description = "known_hosts file with the VM's host keys: imageprep verifies them."
}

variable "backup" {
  type        = string
  description = "imageprep --backup, e.g. archive:./backups or command:'az snapshot create ...'."
}

variable "run_dir" {
  type    = string
  default = "imageprep-run"
}

variable "imageprep" {
  type    = string
  default = "imageprep"
}

source "null" "golden" {
  communicator         = "ssh"
  ssh_host             = var.vm_host
  ssh_port             = var.vm_port
  ssh_username         = var.vm_user
  ssh_private_key_file = var.vm_ssh_key_file
}

build {
  sources = ["source.null.golden"]

  # A temporary private key reaches the script through its environment and is written to
  # a file only imageprep reads: never argv, so never visible in `ps` or the build log.
  provisioner "shell-local" {
    environment_vars = [
      "IMAGEPREP=${var.imageprep}",
      "IMAGEPREP_HOST=${build.Host}",
      "IMAGEPREP_PORT=${build.Port}",
      "IMAGEPREP_USER=${build.User}",
      "IMAGEPREP_SSH_PRIVATE_KEY=${build.SSHPrivateKey}",
      "IMAGEPREP_SSH_KEY_FILE=${var.vm_ssh_key_file}",
      "IMAGEPREP_KNOWN_HOSTS=${var.known_hosts}",
      "IMAGEPREP_BACKUP=${var.backup}",
      "IMAGEPREP_RUN_DIR=${var.run_dir}",
    ]
    script = "${path.root}/imageprep-prepare.sh"
  }
}
