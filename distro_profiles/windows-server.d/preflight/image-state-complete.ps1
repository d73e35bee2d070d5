$ErrorActionPreference = 'Stop'
trap { [Console]::Error.WriteLine('the check could not run: ' + $_.InvocationInfo.MyCommand.Name + ' failed: ' + $_.Exception.Message); exit 1 }
$state = (Get-ItemProperty -LiteralPath 'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Setup\State' -Name ImageState).ImageState
if ($state -like 'IMAGE_STATE_SPECIALIZE_RESEAL_*') {
  [Console]::Error.WriteLine('ImageState is ' + $state + ': the VM has not finished its own first boot, and Sysprep would never complete (the Packer endless loop); finish OOBE or reboot until ImageState is IMAGE_STATE_COMPLETE')
  exit 1
}
if ($state -like 'IMAGE_STATE_GENERALIZE_RESEAL_*') {
  [Console]::Error.WriteLine('ImageState is ' + $state + ': the VM is already generalized; capture it as it is, without booting it')
  exit 1
}
if ($state -ne 'IMAGE_STATE_COMPLETE') {
  [Console]::Error.WriteLine('ImageState is ' + $state + ', not IMAGE_STATE_COMPLETE: a Setup or Sysprep pass failed on this VM; start again from a deployable VM')
  exit 1
}
Write-Output ('ImageState: ' + $state)
