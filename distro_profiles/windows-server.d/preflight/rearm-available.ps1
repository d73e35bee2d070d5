$ErrorActionPreference = 'Stop'
trap { [Console]::Error.WriteLine('the check could not run: ' + $_.InvocationInfo.MyCommand.Name + ' failed: ' + $_.Exception.Message); exit 1 }
# GeneralizationState/CleanupState are undocumented: shown, not judged (windows.md §1.4).
$status = Get-ItemProperty -LiteralPath 'HKLM:\SYSTEM\Setup\Status\SysprepStatus' -ErrorAction SilentlyContinue
Write-Output ('SysprepStatus: GeneralizationState ' + $status.GeneralizationState + ', CleanupState ' + $status.CleanupState)
$skipRearm = (Get-ItemProperty -LiteralPath 'HKLM:\SOFTWARE\Microsoft\Windows NT\CurrentVersion\SoftwareProtectionPlatform' -ErrorAction SilentlyContinue).SkipRearm
$remaining = (Get-CimInstance -ClassName SoftwareLicensingService).RemainingWindowsReArmCount
if ($remaining -eq 0 -and $skipRearm -ne 1) {
  [Console]::Error.WriteLine('no Windows rearm is left (RemainingWindowsReArmCount 0), so Sysprep would fail in SLReArmWindows: set SkipRearm=1 (answer file or SoftwareProtectionPlatform key) or build from a fresh base image')
  exit 1
}
Write-Output ('rearms remaining: ' + $remaining + ', SkipRearm: ' + $skipRearm)
