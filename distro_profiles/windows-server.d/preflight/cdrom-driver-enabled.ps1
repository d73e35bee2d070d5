$ErrorActionPreference = 'Stop'
trap { [Console]::Error.WriteLine('the check could not run: ' + $_.InvocationInfo.MyCommand.Name + ' failed: ' + $_.Exception.Message); exit 1 }
# Azure hands the new VM its settings on a virtual DVD; with the cdrom driver
# disabled the VM stops at OOBE ("Generalize a VM" and "Prepare a Windows VHD",
# MS Learn).
$start = (Get-ItemProperty -LiteralPath 'HKLM:\SYSTEM\CurrentControlSet\Services\cdrom' -Name Start).Start
if ($start -ne 1) {
  [Console]::Error.WriteLine('the CD/DVD-ROM driver is disabled (HKLM\SYSTEM\CurrentControlSet\Services\cdrom Start = ' + $start + ', need 1): run Set-ItemProperty -Path HKLM:\SYSTEM\CurrentControlSet\Services\cdrom -Name Start -Value 1')
  exit 1
}
Write-Output 'the CD/DVD-ROM driver starts at boot (cdrom Start = 1)'
