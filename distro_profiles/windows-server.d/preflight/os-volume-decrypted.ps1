$ErrorActionPreference = 'Stop'
trap { [Console]::Error.WriteLine('the check could not run: ' + $_.InvocationInfo.MyCommand.Name + ' failed: ' + $_.Exception.Message); exit 1 }
if (-not (Get-Command -Name Get-BitLockerVolume -ErrorAction SilentlyContinue)) {
  Write-Output 'the BitLocker feature is not installed: the OS volume is not BitLocker-encrypted'
  exit 0
}
$volume = Get-BitLockerVolume -MountPoint $env:SystemDrive
if ($volume.VolumeStatus -ne 'FullyDecrypted') {
  [Console]::Error.WriteLine('BitLocker: the OS volume ' + $env:SystemDrive + ' is ' + $volume.VolumeStatus + ' (protection ' + $volume.ProtectionStatus + '), which Sysprep refuses (0x80310039): run Disable-BitLocker -MountPoint ' + $env:SystemDrive + ' and wait for FullyDecrypted (suspending is not enough)')
  exit 1
}
Write-Output ('the OS volume ' + $env:SystemDrive + ' is FullyDecrypted')
