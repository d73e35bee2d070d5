$ErrorActionPreference = 'Stop'
trap { [Console]::Error.WriteLine('the check could not run: ' + $_.InvocationInfo.MyCommand.Name + ' failed: ' + $_.Exception.Message); exit 1 }
$drive = $env:SystemDrive
if (Get-Command -Name Get-BitLockerVolume -ErrorAction SilentlyContinue) {
  $volume = Get-BitLockerVolume -MountPoint $drive
  $status = [string]$volume.VolumeStatus
  $protection = [string]$volume.ProtectionStatus
} else {
  # Get-BitLockerVolume comes with BitLocker's management tools (RSAT-Feature-Tools-BitLocker):
  # `Install-WindowsFeature BitLocker` without -IncludeManagementTools encrypts volumes all
  # the same. BitLocker's WMI provider is installed with the feature itself, so ask it:
  # no MicrosoftVolumeEncryption namespace means no BitLocker at all.
  $provider = @(Get-CimInstance -Namespace root/cimv2/Security -ClassName __NAMESPACE -Filter "Name='MicrosoftVolumeEncryption'")
  if ($provider.Count -eq 0) {
    Write-Output 'BitLocker is not installed (no BitLocker WMI provider): the OS volume is not BitLocker-encrypted'
    exit 0
  }
  $volume = Get-CimInstance -Namespace root/cimv2/Security/MicrosoftVolumeEncryption -ClassName Win32_EncryptableVolume -Filter "DriveLetter='$drive'"
  if (-not $volume) {
    [Console]::Error.WriteLine('BitLocker is installed but its WMI provider lists no volume ' + $drive + ', so whether it is encrypted is unknown: check it with manage-bde -status ' + $drive)
    exit 1
  }
  # learn.microsoft.com/windows/win32/secprov/getconversionstatus-win32-encryptablevolume:
  # ConversionStatus 0..5, which Get-BitLockerVolume shows as these VolumeStatus names.
  $conversion = Invoke-CimMethod -InputObject $volume -MethodName GetConversionStatus
  if ($conversion.ReturnValue -ne 0) {
    [Console]::Error.WriteLine('BitLocker: GetConversionStatus on ' + $drive + ' returned ' + $conversion.ReturnValue + ', so whether it is encrypted is unknown: check it with manage-bde -status ' + $drive)
    exit 1
  }
  $names = 'FullyDecrypted', 'FullyEncrypted', 'EncryptionInProgress', 'DecryptionInProgress', 'EncryptionPaused', 'DecryptionPaused'
  $status = $names | Select-Object -Index $conversion.ConversionStatus
  if (-not $status) { $status = 'ConversionStatus ' + $conversion.ConversionStatus }
  $protection = 'Off'
  if ($volume.ProtectionStatus -eq 1) { $protection = 'On' }
}
if ($status -ne 'FullyDecrypted') {
  [Console]::Error.WriteLine('BitLocker: the OS volume ' + $drive + ' is ' + $status + ' (protection ' + $protection + '), which Sysprep refuses (0x80310039): run Disable-BitLocker -MountPoint ' + $drive + ' (or manage-bde -off ' + $drive + ') and wait for FullyDecrypted (suspending is not enough)')
  exit 1
}
Write-Output ('the OS volume ' + $drive + ' is FullyDecrypted')
