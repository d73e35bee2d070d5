$ErrorActionPreference = 'Stop'
trap { [Console]::Error.WriteLine('the check could not run: ' + $_.InvocationInfo.MyCommand.Name + ' failed: ' + $_.Exception.Message); exit 1 }
# Every indicator of windows.md §2 "Pending reboot": Sysprep refuses to run with
# servicing unfinished (Sysprep_Clean_Validate_Opk).
$reasons = @()
foreach ($key in @(
  'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Component Based Servicing\RebootPending',
  'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Component Based Servicing\RebootInProgress',
  'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Component Based Servicing\PackagesPending',
  'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\WindowsUpdate\Auto Update\RebootRequired'
)) {
  if (Test-Path -LiteralPath $key) { $reasons += 'the key ' + $key + ' exists' }
}
# A domain join finishes at the next boot (Netlogon's JoinDomain/AvoidSpnSet keys).
foreach ($key in @(
  'HKLM:\SYSTEM\CurrentControlSet\Services\Netlogon\JoinDomain',
  'HKLM:\SYSTEM\CurrentControlSet\Services\Netlogon\AvoidSpnSet'
)) {
  if (Test-Path -LiteralPath $key) { $reasons += 'a domain join is pending (' + $key + ' exists)' }
}
# The servicing worker running means an update is being installed or staged now.
$tiWorker = @(Get-Process -Name TiWorker -ErrorAction SilentlyContinue)
if ($tiWorker.Count -gt 0) { $reasons += 'TiWorker.exe (Windows Modules Installer) is running: servicing is in progress' }
# Many machines always have file renames pending (drivers, AV updates), and
# Sysprep only warns about them ("WinMain: File operations pending"): a warning
# unless strict_pending_reboot is true.
$sessionManager = Get-ItemProperty -LiteralPath 'HKLM:\SYSTEM\CurrentControlSet\Control\Session Manager'
$renames = @()
if ($sessionManager.PendingFileRenameOperations) { $renames += 'Session Manager has PendingFileRenameOperations' }
if ($sessionManager.PendingFileRenameOperations2) { $renames += 'Session Manager has PendingFileRenameOperations2' }
if ({{ vars.strict_pending_reboot }} -eq 'true') { $reasons += $renames } else {
  foreach ($rename in $renames) { Write-Output ('warning: ' + $rename + ' (a reboot would apply them; set strict_pending_reboot=true to refuse)') }
}
$volatile = (Get-ItemProperty -LiteralPath 'HKLM:\SOFTWARE\Microsoft\Updates' -ErrorAction SilentlyContinue).UpdateExeVolatile
if ($volatile) { $reasons += 'HKLM:\SOFTWARE\Microsoft\Updates UpdateExeVolatile is ' + $volatile }
$activeName = (Get-ItemProperty -LiteralPath 'HKLM:\SYSTEM\CurrentControlSet\Control\ComputerName\ActiveComputerName').ComputerName
$newName = (Get-ItemProperty -LiteralPath 'HKLM:\SYSTEM\CurrentControlSet\Control\ComputerName\ComputerName').ComputerName
if ($activeName -ne $newName) { $reasons += 'the computer is being renamed from ' + $activeName + ' to ' + $newName }
$configMgr = Invoke-CimMethod -Namespace 'root\ccm\ClientSDK' -ClassName CCM_ClientUtilities -MethodName DetermineIfRebootPending -ErrorAction SilentlyContinue
if ($configMgr.RebootPending -or $configMgr.IsHardRebootPending) { $reasons += 'Configuration Manager reports a pending reboot' }
if ($reasons.Count -gt 0) {
  foreach ($reason in $reasons) { [Console]::Error.WriteLine('pending reboot: ' + $reason) }
  [Console]::Error.WriteLine('a reboot is pending (' + ($reasons -join '; ') + '): reboot the VM, wait until ImageState is IMAGE_STATE_COMPLETE and servicing has settled, then run again')
  exit 1
}
Write-Output 'no reboot pending'
